package nagios

import "testing"

func TestStringAndExitCode(t *testing.T) {
	for _, tc := range []struct {
		s     State
		label string
		code  int
	}{
		{OK, "OK", 0}, {Warning, "WARNING", 1}, {Critical, "CRITICAL", 2}, {Unknown, "UNKNOWN", 3},
		{State(7), "UNKNOWN", 3}, {State(-1), "UNKNOWN", 3},
	} {
		if got := tc.s.String(); got != tc.label {
			t.Errorf("State(%d).String() = %q, want %q", int(tc.s), got, tc.label)
		}
		if got := tc.s.ExitCode(); got != tc.code {
			t.Errorf("State(%d).ExitCode() = %d, want %d", int(tc.s), got, tc.code)
		}
	}
}

func TestWorst(t *testing.T) {
	// CRITICAL > WARNING > UNKNOWN > OK, whichever side each is on.
	for _, tc := range []struct{ a, b, want State }{
		{OK, OK, OK},
		{OK, Unknown, Unknown},
		{Unknown, Warning, Warning},
		{Warning, Unknown, Warning},
		{Warning, Critical, Critical},
		{Critical, Unknown, Critical},
		{Critical, OK, Critical},
		{OK, State(9), State(9)},
		{Warning, State(9), Warning},
	} {
		if got := Worst(tc.a, tc.b); got != tc.want {
			t.Errorf("Worst(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want State
		ok   bool
	}{
		{"OK", OK, true}, {" warning ", Warning, true}, {"Critical", Critical, true}, {"unknown", Unknown, true},
		{"", Unknown, false}, {"CRIT", Unknown, false}, {"2", Unknown, false},
	} {
		got, ok := Parse(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Parse(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
