package handler

import (
	"errors"
	"fmt"
	"time"
)

// Budget bounds automatic restarts per host and service: at most Max in
// any Window, and never two within MinGap. Every attempted restart counts,
// including failed ones and manual ones sent with `handle_worker send`:
// each of them touched the worker.
type Budget struct {
	Max    int
	Window time.Duration
	MinGap time.Duration
}

// Defaults, explained in docs/event-handler.md: 3 per hour is monit's
// "3 restarts within 5 cycles" stretched to Nagios' pace (a HARD state
// takes minutes, not seconds), and 2 minutes is enough for a restarted
// worker to come up and be re-checked before another restart is allowed.
var DefaultBudget = Budget{Max: 3, Window: time.Hour, MinGap: 2 * time.Minute}

// Validate reports a budget that cannot work.
func (b Budget) Validate() error {
	switch {
	case b.Max < 1:
		return errors.New("--max-restarts must be at least 1")
	case b.Window <= 0:
		return errors.New("--window must be positive")
	case b.MinGap < 0:
		return errors.New("--min-gap must not be negative")
	case b.MinGap > b.Window:
		return fmt.Errorf("--min-gap %s is longer than --window %s", b.MinGap, b.Window)
	}
	return nil
}

// Verdict is the budget's answer for one moment.
type Verdict struct {
	Allowed bool
	Used    int           // restarts within the window
	Wait    time.Duration // until the next restart would be allowed (when refused)
	Reason  string        // human, when refused
	Kind    string        // "exhausted" or "min-gap" when refused
}

// Check decides whether one more restart fits. A record in the future
// (the clock went back) counts as recent: the safe side.
func (b Budget) Check(recs []Record, now time.Time) Verdict {
	var used int
	var oldestIn, newest time.Time
	for _, r := range recs {
		if now.Sub(r.At) >= b.Window {
			continue
		}
		used++
		if oldestIn.IsZero() || r.At.Before(oldestIn) {
			oldestIn = r.At
		}
		if r.At.After(newest) {
			newest = r.At
		}
	}
	if used >= b.Max {
		return Verdict{Used: used, Kind: "exhausted", Wait: oldestIn.Add(b.Window).Sub(now),
			Reason: fmt.Sprintf("restart budget exhausted: %d restarts in the last %s (max %d)", used, b.Window, b.Max)}
	}
	if !newest.IsZero() && now.Sub(newest) < b.MinGap {
		ago := now.Sub(newest)
		if ago < 0 {
			ago = 0
		}
		return Verdict{Used: used, Kind: "min-gap", Wait: newest.Add(b.MinGap).Sub(now),
			Reason: fmt.Sprintf("last restart only %s ago (min gap %s)", ago.Round(time.Second), b.MinGap)}
	}
	return Verdict{Allowed: true, Used: used}
}

// prune drops records that can no longer affect a decision and caps the
// list, oldest first out.
func (b Budget) prune(recs []Record, now time.Time) []Record {
	keep := b.Window
	if b.MinGap > keep {
		keep = b.MinGap
	}
	out := recs[:0:0]
	for _, r := range recs {
		if now.Sub(r.At) < keep {
			out = append(out, r)
		}
	}
	if len(out) > maxRecords {
		out = out[len(out)-maxRecords:]
	}
	return out
}
