// Package breaker is the mass-failure circuit breaker of the agent and of
// the handler: when more than Threshold distinct keys (services) need a
// restart within Window, the cause is likely shared (a database, the
// network, a full disk) and restarting each of them only adds load; the
// breaker holds the restarts back until the failures stop arriving.
//
// The state machine (Step; Store adds only the file):
//
//	closed → open    the (Threshold+1)-th distinct key within Window arrives:
//	                 it and every later one is held; the earlier ones were
//	                 admitted
//	open → trial     Quiet has passed since the last new failure (a new key,
//	                 or a new fault of a key): the next request is admitted,
//	                 as the one trial
//	trial → open     a new failure arrives
//	trial → closed   Quiet passes after the trial with no new failure; the
//	                 failures counted before are forgotten
//
// The same (key, fault) asked again is one failure, not two; once
// admitted it stays admitted. Kubernetes' cluster controllers
// (MachineHealthCheck maxUnhealthy, the node controller's unhealthy-zone
// threshold) are the only peers that stop remediating like this; none of
// them closes by itself after a trial.
package breaker

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Defaults: five minutes is long enough to see a storm build (checks run
// every minute or so, and a retry interval of one), two of quiet short
// enough that healing resumes within a couple of check intervals after
// the shared cause went away.
const (
	DefaultWindow = 5 * time.Minute
	DefaultQuiet  = 2 * time.Minute
	// MaxFailures bounds the (key, fault) pairs kept; the oldest go first.
	// Far above any threshold: the count it may undercount is already open.
	MaxFailures = 1024
	// MaxFaultsPerKey bounds the faults kept per key: older ones go first.
	MaxFaultsPerKey = 4
	// MaxVerdictKeys bounds Verdict.Keys.
	MaxVerdictKeys = 32
)

// Config tunes one breaker. Zero Window and Quiet take the defaults.
type Config struct {
	Window    time.Duration // failures are counted over this (default 5m)
	Threshold int           // open when MORE than Threshold distinct keys need a restart within Window
	// Quiet: once no new failure arrived for Quiet, allow one trial
	// restart; Quiet after the trial with no new failure, close (default 2m).
	Quiet time.Duration
}

func (c Config) withDefaults() Config {
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Quiet == 0 {
		c.Quiet = DefaultQuiet
	}
	return c
}

// Validate reports a config Step cannot use (after the defaults).
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Threshold < 1:
		return fmt.Errorf("breaker threshold %d: must be at least 1 (open when more than that many need a restart)", c.Threshold)
	case c.Window < 0:
		return fmt.Errorf("breaker window %s: must be positive", c.Window)
	case c.Quiet < 0:
		return fmt.Errorf("breaker quiet %s: must be positive", c.Quiet)
	}
	return nil
}

// State is the breaker's state.
type State string

const (
	Closed State = "closed"
	Open   State = "open"
	Trial  State = "trial"
)

func (s State) valid() bool { return s == Closed || s == Open || s == Trial }

// Verdict is the breaker's answer to one request.
type Verdict struct {
	Allow bool
	State State // after this request
	Count int   // distinct keys that needed a restart within Window (this one included)
	Keys  []string
	// Since is when the breaker opened (zero when closed); a trial and a
	// re-opening keep it: it says how long healing has been held back.
	Since time.Time
	// RetryAfter, when open: until the trial may run; in trial: until the
	// breaker may close.
	RetryAfter time.Duration
	// ClockMoved is how far in the future the latest time in the state
	// was (the clock went back); such times are read as now.
	ClockMoved time.Duration
}

// Failure is one (key, fault) that needed a restart.
type Failure struct {
	Key      string    `json:"key"`
	Fault    string    `json:"fault"`
	At       time.Time `json:"at"`   // when it first asked: a new failure then
	Last     time.Time `json:"last"` // when it last asked: it still needs a restart
	Admitted bool      `json:"admitted,omitempty"`
}

// Snapshot is a breaker's whole state: what Store keeps in its file.
type Snapshot struct {
	State   State     `json:"state"`
	Since   time.Time `json:"since,omitzero"`
	LastNew time.Time `json:"last_new,omitzero"` // the last new failure
	TrialAt time.Time `json:"trial_at,omitzero"` // the trial's admission
	// Failures that asked within Window, oldest first, at most
	// MaxFailures. A held one that keeps asking stays (still failing, and
	// not a new failure).
	Failures []Failure `json:"failures,omitempty"`
}

// check reports a snapshot no Step could have written.
func (s Snapshot) check() error {
	if !s.State.valid() {
		return fmt.Errorf("unknown state %q", s.State)
	}
	if (s.State == Closed) != s.Since.IsZero() {
		return errors.New("state and since disagree")
	}
	if s.State == Trial && s.TrialAt.IsZero() {
		return errors.New("a trial without its time")
	}
	for _, f := range s.Failures {
		if f.Key == "" || f.At.IsZero() || f.Last.Before(f.At) {
			return errors.New("a failure without its key or time")
		}
	}
	return nil
}

// Step records that key needs a restart for fault at now and says whether
// it may run; s is not modified. It is Store.Admit without the file.
func Step(s Snapshot, now time.Time, key, fault string, cfg Config) (Snapshot, Verdict) {
	cfg = cfg.withDefaults()
	s.Failures = slices.Clone(s.Failures)
	if s.State == "" {
		s.State = Closed
	}
	var v Verdict
	v.ClockMoved = settle(&s, now, cfg)

	i := slices.IndexFunc(s.Failures, func(f Failure) bool { return f.Key == key && f.Fault == fault })
	fresh := i < 0
	quiet := now.Sub(s.LastNew) >= cfg.Quiet // measured before this request counts
	if fresh {
		// A key keeps its last MaxFaultsPerKey faults: the count is of
		// keys, a late retry of a recent fault is still no new failure,
		// and the state stays as small as the services are many (a hot
		// path: the agent admits every restart through it).
		if countKey(s.Failures, key) >= MaxFaultsPerKey {
			j := slices.IndexFunc(s.Failures, func(f Failure) bool { return f.Key == key })
			s.Failures = slices.Delete(s.Failures, j, j+1)
		}
		s.Failures = append(s.Failures, Failure{Key: key, Fault: fault, At: now, Last: now})
		if len(s.Failures) > MaxFailures {
			s.Failures = slices.Delete(s.Failures, 0, len(s.Failures)-MaxFailures)
		}
		i = len(s.Failures) - 1
		s.LastNew = now
	} else {
		s.Failures[i].Last = now
	}
	keys := distinct(s.Failures)
	v.Count = len(keys)

	switch {
	case !fresh && s.Failures[i].Admitted:
		v.Allow = true
	case s.State == Closed && v.Count <= cfg.Threshold:
		v.Allow = true
	case s.State == Closed:
		s.State, s.Since = Open, now
	case s.State == Open && quiet:
		v.Allow = true
		s.State, s.TrialAt = Trial, now
	case s.State == Trial && fresh:
		s.State, s.TrialAt = Open, time.Time{}
	}
	if v.Allow {
		s.Failures[i].Admitted = true
	}
	describe(&v, s, now, cfg, keys)
	return s, v
}

// describe fills in what a verdict says about the state it leaves.
func describe(v *Verdict, s Snapshot, now time.Time, cfg Config, keys []string) {
	switch s.State {
	case Open:
		v.RetryAfter = s.LastNew.Add(cfg.Quiet).Sub(now)
	case Trial:
		v.RetryAfter = Later(s.TrialAt, s.LastNew).Add(cfg.Quiet).Sub(now)
	}
	v.RetryAfter = max(v.RetryAfter, 0)
	v.State, v.Since = s.State, s.Since
	v.Keys = keys[:min(len(keys), MaxVerdictKeys)]
}

// settle applies what time alone does: times in the future are now
// (returning how far the latest was), failures older than Window are
// dropped, and a trial Quiet old with no new failure closes the breaker.
func settle(s *Snapshot, now time.Time, cfg Config) time.Duration {
	var moved time.Duration
	clamp := func(t *time.Time) {
		if t.After(now) {
			moved = max(moved, t.Sub(now))
			*t = now
		}
	}
	clamp(&s.Since)
	clamp(&s.LastNew)
	clamp(&s.TrialAt)
	for i := range s.Failures {
		clamp(&s.Failures[i].At)
		clamp(&s.Failures[i].Last)
	}
	s.Failures = slices.DeleteFunc(s.Failures, func(f Failure) bool { return !f.Last.After(now.Add(-cfg.Window)) })
	if s.State == Trial && now.Sub(Later(s.TrialAt, s.LastNew)) >= cfg.Quiet {
		*s = Snapshot{State: Closed}
	}
	return moved
}

// Later is the later of a and b (time.Time has no max).
func Later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// distinct lists the failures' keys, each once, oldest first.
func distinct(fs []Failure) []string {
	var keys []string
	seen := make(map[string]bool, len(fs))
	for _, f := range fs {
		if !seen[f.Key] {
			seen[f.Key] = true
			keys = append(keys, f.Key)
		}
	}
	return keys
}

// Now is the breaker's state at now with nothing counted: Count is the
// distinct keys within Window, RetryAfter as a request would see it.
func Now(s Snapshot, now time.Time, cfg Config) Verdict {
	cfg = cfg.withDefaults()
	s.Failures = slices.Clone(s.Failures)
	if s.State == "" {
		s.State = Closed
	}
	var v Verdict
	v.ClockMoved = settle(&s, now, cfg)
	keys := distinct(s.Failures)
	v.Count, v.Allow = len(keys), s.State == Closed
	describe(&v, s, now, cfg, keys)
	return v
}

func countKey(fs []Failure, key string) int {
	n := 0
	for _, f := range fs {
		if f.Key == key {
			n++
		}
	}
	return n
}
