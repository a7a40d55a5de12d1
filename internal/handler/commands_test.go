package handler

import "testing"

func TestWantJSON(t *testing.T) {
	for _, tc := range []struct {
		logFile    string
		asked, tty bool
		want       bool
		why        string
	}{
		{"", false, true, false, "a person at a terminal reads the human line"},
		{"", true, true, true, "--json asks for it at a terminal"},
		{"", false, false, true, "a pipe or file: an engine or a collector reads it"},
		{"", true, false, true, "asked, and not a terminal"},
		{"/var/log/x.log", false, true, true, "--log-file: always there"},
		{"/var/log/x.log", false, false, true, "--log-file: always there"},
	} {
		if got := wantJSON(tc.logFile, tc.asked, tc.tty); got != tc.want {
			t.Errorf("wantJSON(%q, %v, %v) = %v, want %v: %s", tc.logFile, tc.asked, tc.tty, got, tc.want, tc.why)
		}
	}
}
