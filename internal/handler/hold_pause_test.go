package handler_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/handler"
	"github.com/selfheal/selfheal/internal/lab/rig/rigtest"
	"github.com/selfheal/selfheal/internal/nodestate"
)

func pauseStore(t *testing.T) nodestate.Store {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return nodestate.Store{Dir: dir}
}

func setPause(t *testing.T, s nodestate.Store, now time.Time, p nodestate.Pause, remove bool) int {
	t.Helper()
	n, err := s.SetPause(context.Background(), now, p, remove)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRunPaused: a pause holds the restart back until it ends by itself
// (the handler's clock) or is resumed; a pause of another service does
// not.
func TestRunPaused(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	e.cfg.Facts = handler.NoFacts
	s := nodestate.Store{Dir: e.state}
	now := e.clk.Now()
	until := now.Add(5 * time.Minute) // within the agent's replay window of 10m
	setPause(t, s, now, nodestate.Pause{Host: "web1", Service: "Other", Reason: "not this one", By: "bob", At: now, Until: until}, false)
	expect(t, e.run("CRITICAL", "HARD", 3, "1"), 0, "ok in")

	setPause(t, s, now, nodestate.Pause{Host: "web1", Reason: "kernel patch", By: "alice", At: now, Until: until}, false)
	r := e.run("CRITICAL", "HARD", 3, "2")
	expect(t, r, 1, "web1/Worker CRITICAL HARD 3: auto-healing paused (host web1) by alice until "+until.UTC().Format(time.RFC3339)+
		": kernel patch; `handle_worker resume` lets it heal")
	if l.Actions(t) != 1 || r.Hold.Rule != "pause" {
		t.Fatalf("%d actions, hold %+v", l.Actions(t), r.Hold)
	}
	// --ignore pause: the pause is not read.
	e.cfg.Judgment.Ignore = map[nodestate.Rule]bool{nodestate.RulePause: true}
	expect(t, e.run("CRITICAL", "HARD", 3, "3"), 0, "ok in")
	e.cfg.Judgment.Ignore = nil
	e.clk.Advance(5*time.Minute - time.Second)
	expect(t, e.run("CRITICAL", "HARD", 3, "4"), 1, "auto-healing paused (host web1)")
	e.clk.Advance(time.Second)
	// Ended by itself: the same fault is healed.
	expect(t, e.run("CRITICAL", "HARD", 3, "4"), 0, "ok in")
	if l.Actions(t) != 3 {
		t.Fatalf("%d actions, want 3", l.Actions(t))
	}
}
