package breaker

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

var t0 = time.Unix(1_764_024_000, 0)

// ask is one request of a table: at t0+at, key needs a restart for fault.
type ask struct {
	at         time.Duration
	key, fault string
	allow      bool
	state      State
	count      int
	retry      time.Duration // -1: not checked
}

// TestStep walks the state machine with Threshold 2, Window 5m, Quiet 2m.
func TestStep(t *testing.T) {
	cfg := Config{Threshold: 2}
	m := time.Minute
	for _, tc := range []struct {
		name string
		asks []ask
	}{
		{"at the threshold everything runs", []ask{
			{0, "a", "1", true, Closed, 1, 0},
			{1, "b", "1", true, Closed, 2, 0},
			{2, "a", "2", true, Closed, 2, 0}, // a new fault of a counted key is no new key
		}},
		{"the third key opens; it and later ones are held", []ask{
			{0, "a", "1", true, Closed, 1, 0},
			{1, "b", "1", true, Closed, 2, 0},
			{10 * time.Second, "c", "1", false, Open, 3, 2 * m},
			{20 * time.Second, "d", "1", false, Open, 4, 2 * m},
			// Admitted stays admitted; held stays held while not quiet.
			{30 * time.Second, "a", "1", true, Open, 4, 110 * time.Second},
			{40 * time.Second, "c", "1", false, Open, 4, 100 * time.Second},
		}},
		{"the same request again is not a new failure", []ask{
			{0, "a", "1", true, Closed, 1, 0},
			{0, "b", "1", true, Closed, 2, 0},
			{0, "c", "1", false, Open, 3, 2 * m},
			{90 * time.Second, "c", "1", false, Open, 3, 30 * time.Second},
			// Quiet passed since c: the next one is the trial.
			{2 * m, "c", "1", true, Trial, 3, 2 * m},
			{2*m + time.Second, "c", "1", true, Trial, 3, -1},
		}},
		{"a new failure during the trial re-opens", []ask{
			{0, "a", "1", true, Closed, 1, 0},
			{0, "b", "1", true, Closed, 2, 0},
			{0, "c", "1", false, Open, 3, 2 * m},
			{0, "d", "1", false, Open, 4, 2 * m},
			{3 * m, "d", "1", true, Trial, 4, 2 * m},
			{3*m + time.Second, "c", "1", false, Trial, 4, 2*m - time.Second}, // one trial only
			{4 * m, "c", "2", false, Open, 4, 2 * m},
			// a and b aged out; c and d kept asking, so they are still
			// counted, and c's first fault asking again is no new failure.
			{5*m + 59*time.Second, "c", "1", false, Open, 2, time.Second},
			{6 * m, "c", "1", true, Trial, 2, 2 * m},
		}},
		{"quiet after the trial closes and forgets", []ask{
			{0, "a", "1", true, Closed, 1, 0},
			{0, "b", "1", true, Closed, 2, 0},
			{0, "c", "1", false, Open, 3, 2 * m},
			{2 * m, "e", "1", true, Trial, 4, 2 * m}, // a new key may be the trial
			{4 * m, "c", "1", true, Closed, 1, 0},
			{4 * m, "d", "1", true, Closed, 2, 0},
			{4 * m, "f", "1", false, Open, 3, 2 * m},
		}},
		{"failures older than the window are not counted", []ask{
			{0, "a", "1", true, Closed, 1, 0},
			{1 * m, "b", "1", true, Closed, 2, 0},
			{5 * m, "c", "1", true, Closed, 2, 0},
			{5*m + time.Second, "d", "1", false, Open, 3, 2 * m},
		}},
		{"a time in the future is read as now", []ask{
			{2 * time.Hour, "a", "1", true, Closed, 1, 0},
			{2 * time.Hour, "b", "1", true, Closed, 2, 0},
			{2 * time.Hour, "c", "1", false, Open, 3, 2 * m},
			// The clock went back two hours: not quiet for two hours more.
			{0, "d", "1", false, Open, 4, 2 * m},
			{2 * m, "d", "1", true, Trial, 4, 2 * m},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s Snapshot
			for i, a := range tc.asks {
				var v Verdict
				s, v = Step(s, t0.Add(a.at), a.key, a.fault, cfg)
				if v.Allow != a.allow || v.State != a.state || v.Count != a.count || (a.retry >= 0 && v.RetryAfter != a.retry) {
					t.Fatalf("ask %d (%s %s at %s): %+v, want allow %v state %s count %d retry %s", i, a.key, a.fault, a.at, v, a.allow, a.state, a.count, a.retry)
				}
				if (v.State == Closed) != v.Since.IsZero() {
					t.Fatalf("ask %d: since %s in state %s", i, v.Since, v.State)
				}
			}
		})
	}
}

// TestStepDetails: keys oldest first and capped, since kept across a
// trial, the clock's move reported, the input snapshot untouched, a look
// recording nothing.
func TestStepDetails(t *testing.T) {
	cfg := Config{Threshold: 40}
	var s Snapshot
	for i := range 45 {
		s, _ = Step(s, t0.Add(time.Duration(i)*time.Second), fmt.Sprintf("k%02d", i), "f", cfg)
	}
	before := slices.Clone(s.Failures)
	next, v := Step(s, t0.Add(time.Minute), "k00", "f", cfg)
	if !v.Allow || v.State != Open || v.Count != 45 || len(v.Keys) != MaxVerdictKeys || v.Keys[0] != "k00" || v.Keys[31] != "k31" {
		t.Fatalf("verdict %+v", v)
	}
	if !v.Since.Equal(t0.Add(40 * time.Second)) {
		t.Fatalf("opened at %s, want the 41st key's time", v.Since)
	}
	if !slices.Equal(s.Failures, before) || len(next.Failures) != 45 {
		t.Fatal("Step changed its input")
	}
	// look: what a new key would get, nothing recorded.
	if lv := look(next, t0.Add(time.Minute), cfg); lv.Allow || lv.Count != 46 || lv.State != Open {
		t.Fatalf("look while open: %+v", lv)
	}
	trial := look(next, t0.Add(44*time.Second+DefaultQuiet), cfg)
	if !trial.Allow || trial.State != Trial || !trial.Since.Equal(v.Since) {
		t.Fatalf("look once quiet: %+v", trial)
	}
	closed, _ := Step(Snapshot{}, t0, "a", "f", Config{Threshold: 1})
	if lv := look(closed, t0, Config{Threshold: 1}); lv.Allow || lv.Count != 2 {
		t.Fatalf("look at the threshold: %+v", lv)
	}
	if lv := look(closed, t0, Config{Threshold: 2}); !lv.Allow || lv.State != Closed || len(closed.Failures) != 1 {
		t.Fatalf("look below the threshold: %+v", lv)
	}
	// The clock moved back an hour.
	if _, v := Step(next, t0.Add(-time.Hour), "k00", "f", cfg); v.ClockMoved != time.Hour+time.Minute { // k00 last asked at t0+1m
		t.Fatalf("clock moved %s", v.ClockMoved)
	}
	// Bounded: a key keeps its last MaxFaultsPerKey faults, and the
	// oldest failures go beyond MaxFailures.
	one := Snapshot{}
	for i := range 10 {
		one, _ = Step(one, t0, "k", fmt.Sprint(i), Config{Threshold: 1})
	}
	if len(one.Failures) != MaxFaultsPerKey || one.Failures[0].Fault != fmt.Sprint(10-MaxFaultsPerKey) {
		t.Fatalf("%d faults kept for one key, first %+v", len(one.Failures), one.Failures[0])
	}
	big := Snapshot{}
	for i := range MaxFailures + 10 {
		big, _ = Step(big, t0, fmt.Sprint("k", i), "1", Config{Threshold: 1})
	}
	if len(big.Failures) != MaxFailures || big.Failures[0].Key != "k10" {
		t.Fatalf("%d failures kept, first %+v", len(big.Failures), big.Failures[0])
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{Threshold: 1}, true},
		{Config{Threshold: 0}, false},
		{Config{Threshold: 3, Window: -time.Second}, false},
		{Config{Threshold: 3, Quiet: -time.Second}, false},
	} {
		if err := c.cfg.Validate(); (err == nil) != c.ok {
			t.Errorf("%+v: %v", c.cfg, err)
		}
	}
}

// look is Step for a key that never asked, its snapshot dropped: what a
// new service would get.
func look(s Snapshot, now time.Time, cfg Config) Verdict {
	_, v := Step(s, now, "never-asked", "1", cfg)
	return v
}
