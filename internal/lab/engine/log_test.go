package engine

import (
	"testing"
)

func TestParseLogLine(t *testing.T) {
	tests := []struct {
		line   string
		ok     bool
		typ    string
		fields []string
	}{
		{"[1764023000] SERVICE ALERT: worker1;worker;CRITICAL;HARD;3;CRITICAL - down", true, "SERVICE ALERT",
			[]string{"worker1", "worker", "CRITICAL", "HARD", "3", "CRITICAL - down"}},
		{"[1764023001] SERVICE EVENT HANDLER: worker1;worker;CRITICAL;HARD;3;selfheal-handle-worker", true,
			"SERVICE EVENT HANDLER", []string{"worker1", "worker", "CRITICAL", "HARD", "3", "selfheal-handle-worker"}},
		{"[1764023002] Nagios 4.4.6 starting... (PID=12)", true, "", nil},
		{"no timestamp here", false, "", nil},
		{"[abc] SERVICE ALERT: x;y", false, "", nil},
	}
	for _, tt := range tests {
		e, ok := ParseLogLine(tt.line)
		if ok != tt.ok {
			t.Errorf("%q: ok = %v", tt.line, ok)
			continue
		}
		if !ok {
			continue
		}
		if e.Type != tt.typ || len(e.Fields) != len(tt.fields) {
			t.Errorf("%q: type %q fields %q", tt.line, e.Type, e.Fields)
			continue
		}
		for i := range tt.fields {
			if e.Fields[i] != tt.fields[i] {
				t.Errorf("%q: field %d = %q, want %q", tt.line, i, e.Fields[i], tt.fields[i])
			}
		}
	}
	e, _ := ParseLogLine(tests[0].line)
	if !Alert("worker1", "worker", "CRITICAL", "HARD")(e) || Alert("worker1", "worker", "OK", "")(e) {
		t.Error("Alert matcher wrong")
	}
}
