package listener

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/protocol"
)

// TestStatusReportsHealing: a status answer carries the service's restart
// budget and its last restart (what check_selfheal reads); before any
// restart it carries the budget alone and its output is the action's.
func TestStatusReportsHealing(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "k.key")
	writeKeys(t, "worker1", key, "", "")
	c, err := Parse([]byte("agent: worker1\nkeys: [" + key + "]\nallow: [127.0.0.1]\nstate_dir: " + dir + "/s\n" +
		"budget: {max: 3, window: 1h, min_gap: 0s}\nservices:\n" +
		"  demo:\n    actions:\n      status: {argv: [/bin/echo, running]}\n      restart: {argv: [/bin/sh, -c, 'exit 4']}\n" +
		"  quiet:\n    actions:\n      restart: {argv: [/bin/true]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.StatusServices(); !slices.Equal(got, []string{"demo"}) {
		t.Fatalf("StatusServices = %q, want only the service with a status action", got)
	}
	svc := c.Services["demo"]
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	e := NewExecutor(c.StateDir, clock)
	job := func(v protocol.Verb, fault string) Job {
		return Job{Service: "demo", Verb: v, Fault: fault, Arrived: now, Action: svc.Actions[string(v)],
			Budget: svc.RestartBudget(), Backoff: svc.RestartBackoff(), LockWait: time.Second}
	}
	r := e.Run(t.Context(), job(protocol.VerbStatus, "-"))
	if r.Outcome != protocol.OutcomeOK || r.Output != "running" || r.LastRestart != nil ||
		r.Budget != (protocol.Budget{Used: 0, Max: 3, Window: time.Hour}) {
		t.Fatalf("status before a restart: %+v", r)
	}
	if r := e.Run(t.Context(), job(protocol.VerbRestart, "f1")); r.Outcome != protocol.OutcomeFailed {
		t.Fatalf("restart: %+v", r)
	}
	at := now
	now = now.Add(10 * time.Minute)
	r = e.Run(t.Context(), job(protocol.VerbStatus, "-"))
	want := protocol.LastRestart{Outcome: protocol.OutcomeFailed, At: at, Fault: "f1", LastHour: 1}
	if r.LastRestart == nil || *r.LastRestart != want || r.Output != "running" || r.Budget.Used != 1 || r.Budget.Max != 3 {
		t.Fatalf("status after a failed restart: %+v (last %+v)", r, r.LastRestart)
	}
	// An hour on, the restart is out of the hour and of the window, but
	// still the last one.
	now = at.Add(time.Hour)
	r = e.Run(t.Context(), job(protocol.VerbStatus, "-"))
	want.LastHour = 0
	if r.LastRestart == nil || *r.LastRestart != want || r.Budget.Used != 0 {
		t.Fatalf("status an hour later: %+v (last %+v)", r, r.LastRestart)
	}
}
