package status

import (
	"strconv"
	"testing"
)

// cw is check_worker's perfdata as it prints it (labels sorted, quoted).
func cw(self, dep int) string {
	return "'critical_dependency'=" + strconv.Itoa(dep) + ";;;0; 'critical_self'=" + strconv.Itoa(self) +
		";;;0; 'size'=288B;;;0; 'time'=0.001000s;;;0;10"
}

func TestScopeFromPerfdata(t *testing.T) {
	tests := []struct {
		name      string
		perf      string
		self, dep int
		ok        bool
	}{
		{"check_worker, dependency only", cw(0, 1), 0, 1, true},
		{"check_worker, own fault", cw(1, 0), 1, 0, true},
		{"check_worker, both", cw(2, 3), 2, 3, true},
		{"check_worker, all well", cw(0, 0), 0, 0, true},
		{"bare labels (Icinga 2, or quotes stripped by Nagios)", "critical_dependency=1;;;0 critical_self=0;;;0 time=0.1s;;;0;10", 0, 1, true},
		{"value only", "critical_self=0 critical_dependency=4", 0, 4, true},
		{"tabs and line breaks between tokens", "\tcritical_self=0\ncritical_dependency=1\r\n", 0, 1, true},
		{"other labels with quotes and spaces", "'queue depth'=3;;;0; 'it''s'=1 critical_self=0 critical_dependency=1", 0, 1, true},
		{"counter-like labels of a worker are not counters", "critical_self_2=0;;;; critical_self=1;;;0; critical_dependency=0;;;0; xcritical_self=0", 1, 0, true},
		{"large but bounded", "critical_self=0 critical_dependency=999999", 0, 999999, true},

		{"empty", "", 0, 0, false},
		{"another plugin", "'time'=0.01s;;;0; 'size'=100B;;;0;", 0, 0, false},
		{"self missing", "critical_dependency=1", 0, 0, false},
		{"dependency missing", "critical_self=0", 0, 0, false},
		{"self twice", "critical_self=1 critical_dependency=1 critical_self=0", 0, 0, false},
		{"self twice, same value", "critical_self=0 critical_dependency=1 'critical_self'=0", 0, 0, false},
		{"dependency twice", "critical_self=0 critical_dependency=1 critical_dependency=1", 0, 0, false},
		{"case variant", "critical_self=0 critical_dependency=1 CRITICAL_SELF=0", 0, 0, false},
		{"case variant alone", "Critical_Self=0 critical_dependency=1", 0, 0, false},
		{"negative", "critical_self=-1 critical_dependency=1", 0, 0, false},
		{"plus sign", "critical_self=+0 critical_dependency=1", 0, 0, false},
		{"fraction", "critical_self=0.0 critical_dependency=1", 0, 0, false},
		{"exponent", "critical_self=0e0 critical_dependency=1", 0, 0, false},
		{"unit", "critical_self=0c critical_dependency=1", 0, 0, false},
		{"leading zero", "critical_self=00 critical_dependency=1", 0, 0, false},
		{"too long", "critical_self=0 critical_dependency=1000000", 0, 0, false},
		{"empty value", "critical_self= critical_dependency=1", 0, 0, false},
		{"no value", "critical_self critical_dependency=1", 0, 0, false},
		{"tail with a unit", "critical_self=0;1s critical_dependency=1", 0, 0, false},
		{"too many fields", "critical_self=0;;;0;;; critical_dependency=1", 0, 0, false},
		{"truncated in a quote", "critical_self=0 critical_dependency=1 'time", 0, 0, false},
		{"truncated after the label", "critical_self=0 critical_dependency=1 'time'", 0, 0, false},
		{"truncated in the label", "critical_self=0 critical_dependency=1 tim", 0, 0, false},
		{"a stray word", "critical_self=0 critical_dependency=1 WORKER", 0, 0, false},
		{"plugin text, not perfdata", "WORKER CRITICAL - x critical_self=0 critical_dependency=1", 0, 0, false},
		{"quoted label hides a counter", "'x critical_self=0 y'=1 critical_self=1 critical_dependency=1", 1, 1, true},
		{"quote in a bare label", "x'critical_self=0 critical_self=1 critical_dependency=1", 0, 0, false},
		{"quote in a value", "critical_self=0' critical_dependency=1", 0, 0, false},
		{"two = in a token", "a=critical_self=0 critical_self=1 critical_dependency=1", 0, 0, false},
		{"empty quoted label", "''=1 critical_self=0 critical_dependency=1", 0, 0, false},
		{"empty bare label", "=1 critical_self=0 critical_dependency=1", 0, 0, false},
		{"text after a closing quote", "'a'b=1 critical_self=0 critical_dependency=1", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			self, dep, ok := ScopeFromPerfdata(tt.perf)
			if ok != tt.ok || self != tt.self || dep != tt.dep {
				t.Fatalf("ScopeFromPerfdata(%q) = %d, %d, %v; want %d, %d, %v", tt.perf, self, dep, ok, tt.self, tt.dep, tt.ok)
			}
			want := tt.ok && tt.self == 0 && tt.dep > 0
			if got := DependencyOnly(tt.perf); got != want {
				t.Fatalf("DependencyOnly(%q) = %v, want %v", tt.perf, got, want)
			}
		})
	}
}

func TestDependencyOnly(t *testing.T) {
	for perf, want := range map[string]bool{
		cw(0, 1): true, cw(0, 7): true,
		cw(1, 1): false, cw(1, 0): false, cw(0, 0): false,
		"": false, "garbage": false, "critical_dependency=1": false,
	} {
		if got := DependencyOnly(perf); got != want {
			t.Errorf("DependencyOnly(%q) = %v, want %v", perf, got, want)
		}
	}
}

// FuzzScopeFromPerfdata: never panics; what it accepts has non-negative
// counters; a second counter token appended anywhere it parses makes it !ok,
// so no text added to a good string can replace a counter.
func FuzzScopeFromPerfdata(f *testing.F) {
	f.Add(cw(0, 1))
	f.Add(cw(3, 0))
	f.Add("critical_self=0 critical_dependency=1")
	f.Add("'a b'=1 'it''s'=2;3;4;0;9 critical_self=0;;;0; critical_dependency=1;;;0;")
	f.Add("'critical_self=0")
	f.Add("critical_self=0;;;0;; critical_dependency=01")
	f.Add("")
	f.Fuzz(func(t *testing.T, perf string) {
		self, dep, ok := ScopeFromPerfdata(perf)
		if !ok {
			if self != 0 || dep != 0 || DependencyOnly(perf) {
				t.Fatalf("!ok with %d, %d", self, dep)
			}
			return
		}
		if self < 0 || dep < 0 {
			t.Fatalf("accepted negative counters %d, %d", self, dep)
		}
		for _, extra := range []string{" critical_self=0", " 'critical_self'=0;;;0;", " critical_dependency=1"} {
			if _, _, ok := ScopeFromPerfdata(perf + extra); ok {
				t.Fatalf("%q with %q appended is still ok", perf, extra)
			}
		}
		if DependencyOnly(perf) != (self == 0 && dep > 0) {
			t.Fatal("DependencyOnly disagrees with ScopeFromPerfdata")
		}
	})
}
