package check

import (
	"net/http"
	"testing"
)

// TestStatusText: the reason phrases are net/http's, code for code.
func TestStatusText(t *testing.T) {
	n := 0
	for code := 0; code < 1000; code++ {
		if got, want := statusText(code), http.StatusText(code); got != want {
			t.Errorf("statusText(%d) = %q, net/http says %q", code, got, want)
		}
		if statusText(code) != "" {
			n++
		}
	}
	if n < 60 {
		t.Fatalf("only %d codes have a text", n)
	}
}
