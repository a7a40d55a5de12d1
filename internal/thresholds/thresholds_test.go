package thresholds

import (
	"errors"
	"math"
	"testing"

	"github.com/selfheal/selfheal/internal/nagios"
)

// TestVectors runs every vector from the Nagios facts sheet plus edges.
func TestVectors(t *testing.T) {
	tests := []struct {
		rng     string
		alert   []float64
		noAlert []float64
	}{
		{"10", []float64{-0.001, -1, 10.0001, 11, math.Inf(1)}, []float64{0, 5, 10}},
		{"10:", []float64{9.999, 0, -5, math.Inf(-1)}, []float64{10, 11, math.Inf(1)}},
		{"~:10", []float64{10.001, 11, math.Inf(1)}, []float64{10, 0, -1000, math.Inf(-1)}},
		{"10:20", []float64{9.9, 20.1, 0, -1}, []float64{10, 15, 20}},
		{"@10:20", []float64{10, 15, 20}, []float64{9.9, 20.1, -1}},
		{"@~:10", []float64{10, 0, -1, math.Inf(-1)}, []float64{10.001, 11}},
		// Edge cases.
		{"0", []float64{-0.5, 0.5}, []float64{0}},
		{":10", []float64{-1, 11}, []float64{0, 10}},
		{"-10:-5", []float64{-11, -4}, []float64{-10, -7, -5}},
		{"~:", nil, []float64{math.Inf(-1), 0, math.Inf(1)}},
		{"@5", []float64{0, 5, 2.5}, []float64{-0.1, 5.1}},
		{"0.5:1.5", []float64{0.4, 1.6}, []float64{0.5, 1.5}},
		{" 10 ", []float64{11}, []float64{10}},
		{"10:10", []float64{9, 11}, []float64{10}},
	}
	for _, tt := range tests {
		t.Run(tt.rng, func(t *testing.T) {
			r, err := Parse(tt.rng)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			for _, x := range tt.alert {
				if !r.Alert(x) {
					t.Errorf("%v: want alert", x)
				}
			}
			for _, x := range tt.noAlert {
				if r.Alert(x) {
					t.Errorf("%v: want no alert", x)
				}
			}
			if r.Alert(math.NaN()) != true {
				t.Errorf("NaN must alert")
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, s := range []string{
		"", " ", "@", ":", "abc", "10:5", "-5", "1e3", "0x10", "10:20:30", "~", "@~",
		"NaN", "Inf", "10:abc", "--1", "1-", "1.2.3", "~:~", "@:", "10;20",
		"1234567890123456789012345678901234567890123456789012345678901234567890",
		"9" + string(make([]byte, 400)),
	} {
		if r, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) = %+v, want error", s, r)
		} else if !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) error %v does not wrap ErrSyntax", s, err)
		}
	}
}

func TestString(t *testing.T) {
	tests := map[string]string{
		"10": "10", "0:10": "10", ":10": "10", "10:": "10:", "~:10": "~:10",
		"10:20": "10:20", "@10:20": "@10:20", "@~:10": "@~:10", "@10": "@0:10",
		"0.50": "0.5", "-1:": "-1:", "~:": "~:", "0:": "0:", "+5": "5",
	}
	for in, want := range tests {
		r, err := Parse(in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", in, err)
		}
		if got := r.String(); got != want {
			t.Errorf("Parse(%q).String() = %q, want %q", in, got, want)
		}
	}
}

// TestCriticalBeforeWarning guards against go-nagios' bug: a value that
// breaks both ranges must be CRITICAL, whatever the ranges look like.
func TestCriticalBeforeWarning(t *testing.T) {
	tests := []struct {
		warn, crit string
		x          float64
		want       nagios.State
	}{
		{"10", "20", 5, nagios.OK},
		{"10", "20", 15, nagios.Warning},
		{"10", "20", 25, nagios.Critical},
		{"10", "20", -1, nagios.Critical}, // below 0 breaks both
		{"@0:100", "@50:60", 55, nagios.Critical},
		{"@0:100", "@50:60", 10, nagios.Warning},
		{"~:10", "", 11, nagios.Warning},
		{"", "10:", 5, nagios.Critical},
		{"", "", 1e9, nagios.OK},
	}
	for _, tt := range tests {
		p, err := ParsePair(tt.warn, tt.crit)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Evaluate(tt.x); got != tt.want {
			t.Errorf("warn %q crit %q x %v = %v, want %v", tt.warn, tt.crit, tt.x, got, tt.want)
		}
	}
	if _, err := ParsePair("10", "x"); err == nil {
		t.Error("ParsePair with a bad critical range must fail")
	}
	if (Pair{}).Set() || !(Pair{Warn: new(Range)}).Set() {
		t.Error("Set is wrong")
	}
	if s := (Pair{}).WarnString() + (Pair{}).CritString(); s != "" {
		t.Errorf("empty pair renders %q", s)
	}
}

// TestLevelString: the labels check_worker prints for Evaluate's results.
func TestLevelString(t *testing.T) {
	for l, want := range map[nagios.State]string{nagios.OK: "OK", nagios.Warning: "WARNING", nagios.Critical: "CRITICAL", 7: "UNKNOWN"} {
		if l.String() != want {
			t.Errorf("%d: %q", l, l.String())
		}
	}
}

// FuzzParse: Parse never panics, and whatever it accepts renders to a
// string that parses back to the same range.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"10", "10:", "~:10", "10:20", "@10:20", "@~:10", ":5", "-1:1", "0.5", "@", "~:", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			return
		}
		if r.Start > r.End || math.IsNaN(r.Start) || math.IsNaN(r.End) {
			t.Fatalf("Parse(%q) accepted a bad range %+v", s, r)
		}
		back, err := Parse(r.String())
		if err != nil {
			t.Fatalf("Parse(%q).String() = %q does not parse: %v", s, r.String(), err)
		}
		if back.Start != r.Start || back.End != r.End || back.Inside != r.Inside {
			t.Fatalf("round trip of %q via %q: %+v != %+v", s, r.String(), back, r)
		}
	})
}
