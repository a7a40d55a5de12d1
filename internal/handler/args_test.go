package handler

import (
	"strings"
	"testing"
)

func TestParsePort(t *testing.T) {
	for in, want := range map[string]int{"": 5690, " ": 5690, "5690": 5690, "1": 1, "65535": 65535, " 80 ": 80} {
		if got, err := parsePort(in); err != nil || got != want {
			t.Errorf("parsePort(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "65536", "-1", "x", "$_HOSTLISTENER_PORT$"} {
		if _, err := parsePort(in); err == nil || !strings.Contains(err.Error(), "--port") {
			t.Errorf("parsePort(%q): %v, want an error naming --port", in, err)
		}
	}
}
