package listener

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/protocol"
)

// TestFaultRunsOnce: a restart runs at most once per fault. A retry (new
// nonce, same fault) gets the first answer, origin recorded, whatever it
// was; concurrent requests for one fault share one run.
func TestFaultRunsOnce(t *testing.T) {
	h := newHarness(t, opts{})
	first, err := h.doFault(protocol.VerbRestart, "demo", "4711")
	if err != nil || first.Outcome != protocol.OutcomeOK || first.Origin != protocol.OriginRun || first.Budget.Used != 1 {
		t.Fatalf("first: %+v %v", first, err)
	}
	again, err := h.doFault(protocol.VerbRestart, "demo", "4711")
	if err != nil || again.Outcome != protocol.OutcomeOK || again.Origin != protocol.OriginRecorded ||
		again.ExitCode != 0 || again.Output != "did restart" || again.Duration != first.Duration.Truncate(time.Microsecond) || again.Budget.Used != 1 {
		t.Fatalf("same fault again: %+v %v (first %+v)", again, err, first)
	}
	if h.marks("demo") != 1 {
		t.Fatalf("%d runs for one fault", h.marks("demo"))
	}
	// A failed restart is recorded too: the fault does not get a second
	// try (a new fault does).
	if rep, err := h.doFault(protocol.VerbRestart, "fail", "f9"); err != nil || rep.Outcome != protocol.OutcomeFailed || rep.Origin != protocol.OriginRun {
		t.Fatalf("failing: %+v %v", rep, err)
	}
	if rep, err := h.doFault(protocol.VerbRestart, "fail", "f9"); err != nil || rep.Outcome != protocol.OutcomeFailed || rep.Origin != protocol.OriginRecorded || rep.ExitCode != 4 {
		t.Fatalf("failing, same fault: %+v %v", rep, err)
	}
	// Eight at once for one fault of the slow service: one run.
	var wg sync.WaitGroup
	reps := make([]protocol.Reply, 8)
	for i := range reps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if reps[i], err = h.doFault(protocol.VerbRestart, "slow", "f1"); err != nil {
				t.Error(err)
			}
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for h.srv.Executor().Joined() < 7 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	os.WriteFile(filepath.Join(h.dir, "release"), nil, 0o600)
	wg.Wait()
	origins := map[protocol.Origin]int{}
	for _, r := range reps {
		if r.Outcome != protocol.OutcomeOK {
			t.Fatalf("slow: %+v", r)
		}
		origins[r.Origin]++
	}
	if h.marks("slow") != 1 || origins[protocol.OriginRun] != 1 {
		t.Fatalf("slow ran %d times, origins %v", h.marks("slow"), origins)
	}
	// The audit log says who ran and who got the record (in either order:
	// the agent answers first and audits after).
	recs := h.restartRecords("demo", 2)
	if recs[1].Ran() {
		recs[0], recs[1] = recs[1], recs[0]
	}
	if !recs[0].Ran() || recs[1].Origin != "recorded" || recs[1].Fault != "4711" || recs[0].Agent != "worker1" ||
		recs[1].BudgetUsed == nil || *recs[1].BudgetUsed != 1 || *recs[1].BudgetMax != 10000 {
		t.Fatalf("audit:\n%s\n%s", recs[0].Raw, recs[1].Raw)
	}
}

// TestMinGap: a restart for another fault less than min_gap after the last
// one gets that restart's answer, not counted, when the fault began before
// it finished (a split brain's other id); a fault that began after it
// waits for the gap. Other verbs are never budgeted.
func TestMinGap(t *testing.T) {
	h := newHarness(t, opts{budget: &rig.Budget{Max: 3, Window: "1h", MinGap: "2m"}})
	_, now, advance := fakeClockServer(t, h)
	c := clockClient(t, h, now)
	send := func(fault string, since time.Time) protocol.Reply {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		rep, err := c.Send(ctx, protocol.Call{Verb: protocol.VerbRestart, Service: "demo", Fault: fault, Since: since})
		if err != nil || !rep.Extended {
			t.Fatalf("restart %s: %+v %v", fault, rep, err)
		}
		return rep
	}
	began := now().Add(-3 * time.Second)
	if rep := send("1764024000.1", began); rep.Origin != protocol.OriginRun {
		t.Fatalf("first: %+v", rep)
	}
	advance(5 * time.Second)
	// The other HA endpoint saw the same failure half a second later.
	rep := send("1764024000.6", began.Add(500*time.Millisecond))
	if rep.Outcome != protocol.OutcomeOK || rep.Origin != protocol.OriginRecorded || rep.Output != "did restart" ||
		rep.Budget.Used != 1 || rep.Budget.Max != 3 || rep.Budget.Window != time.Hour || rep.Budget.RetryAfter != 115*time.Second ||
		rep.Age != 5*time.Second || !strings.Contains(rep.Note, "the same fault under another id") {
		t.Fatalf("second fault within min_gap: %+v", rep)
	}
	// A fault id that was only answered from the gap is not recorded as run.
	recs := h.restartRecords("demo", 2)
	if recs[0].Fault == "1764024000.6" {
		recs[0], recs[1] = recs[1], recs[0]
	}
	if !recs[0].Ran() || recs[1].Origin != "recorded" || !strings.Contains(recs[1].Raw, "the same fault under another id") {
		t.Fatalf("audit: %s", recs[1].Raw)
	}
	// A crash 25 s after the restart finished: a new fault, deferred to
	// the gap's end, never "ok"; asked again then, it runs.
	advance(25 * time.Second)
	crash := now().Add(-5 * time.Second)
	rep = send("1764024099.2", crash)
	if rep.Outcome != protocol.OutcomeBackoff || rep.Origin != protocol.OriginNone || rep.Budget.RetryAfter != 90*time.Second ||
		!strings.Contains(rep.Note, "began 25s after the last restart") || !strings.Contains(rep.Note, "a new fault") || h.marks("demo") != 1 {
		t.Fatalf("new fault within min_gap: %+v", rep)
	}
	advance(90 * time.Second)
	if rep := send("1764024099.2", crash); rep.Origin != protocol.OriginRun || h.marks("demo") != 2 {
		t.Fatalf("the new fault after the gap: %+v", rep)
	}
	// stop and start: serialised, never budgeted.
	for _, v := range []protocol.Verb{protocol.VerbStop, protocol.VerbStart, protocol.VerbStop} {
		if rep, err := c.Do(context.Background(), v, "demo", "-"); err != nil || rep.Outcome != protocol.OutcomeOK || rep.Origin != protocol.OriginRun || rep.Budget.Max != 0 {
			t.Fatalf("%s: %+v %v", v, rep, err)
		}
	}
	if h.marks("demo") != 5 {
		t.Fatalf("marks %d, want 2 restarts + 3 others", h.marks("demo"))
	}
}

// TestBudgetSpent: beyond max restarts in the window the answer is a
// signed spent with when the budget frees up; nothing runs.
func TestBudgetSpent(t *testing.T) {
	h := newHarness(t, opts{budget: &rig.Budget{Max: 2, Window: "1h", MinGap: "0s"}})
	for i, f := range []string{"f1", "f2"} {
		if rep, err := h.doFault(protocol.VerbRestart, "demo", f); err != nil || rep.Origin != protocol.OriginRun || rep.Budget.Used != i+1 {
			t.Fatalf("%s: %+v %v", f, rep, err)
		}
	}
	rep, err := h.doFault(protocol.VerbRestart, "demo", "f3")
	if err != nil || rep.Outcome != protocol.OutcomeSpent || rep.Agent != "worker1" || rep.Origin != protocol.OriginNone ||
		rep.Budget.Used != 2 || rep.Budget.Max != 2 || rep.Budget.RetryAfter < 59*time.Minute || rep.Budget.RetryAfter > time.Hour {
		t.Fatalf("third fault: %+v %v", rep, err)
	}
	// Not recorded as run: the same fault asks again and is spent again,
	// and manual restarts (their own fault ids) draw on the same budget.
	manual, _ := protocol.NewManualFault(time.Now())
	for _, f := range []string{"f3", manual} {
		if rep, err := h.doFault(protocol.VerbRestart, "demo", f); err != nil || rep.Outcome != protocol.OutcomeSpent {
			t.Fatalf("%s: %+v %v", f, rep, err)
		}
	}
	// A fault that did run still gets its answer.
	if rep, err := h.doFault(protocol.VerbRestart, "demo", "f1"); err != nil || rep.Outcome != protocol.OutcomeOK || rep.Origin != protocol.OriginRecorded {
		t.Fatalf("f1 again: %+v %v", rep, err)
	}
	if h.marks("demo") != 2 {
		t.Fatalf("%d runs, budget 2", h.marks("demo"))
	}
	recs := h.restartRecords("demo", 6)
	if c := rig.CountRestarts(recs); c.Run != 2 || c.Spent != 3 || c.Recorded != 1 {
		t.Fatalf("audit counts %s", c)
	}
	for _, r := range recs {
		if r.Outcome == "spent" && !strings.Contains(r.Raw, `"reason":"restart budget spent: 2 restarts in 1h0m0s`) {
			t.Fatalf("spent line: %s", r.Raw)
		}
	}
}

// TestRecordsSurviveRestart: the fault records and the budget are on disk:
// a restarted agent answers a known fault from them and counts what ran
// before it stopped.
func TestRecordsSurviveRestart(t *testing.T) {
	h := newHarness(t, opts{budget: &rig.Budget{Max: 1, Window: "1h", MinGap: "0s"}})
	if rep, err := h.doFault(protocol.VerbRestart, "demo", "f1"); err != nil || rep.Origin != protocol.OriginRun {
		t.Fatalf("first: %+v %v", rep, err)
	}
	h.shutdown()
	h.start()
	if rep, err := h.doFault(protocol.VerbRestart, "demo", "f1"); err != nil || rep.Outcome != protocol.OutcomeOK || rep.Origin != protocol.OriginRecorded {
		t.Fatalf("f1 after an agent restart: %+v %v", rep, err)
	}
	if rep, err := h.doFault(protocol.VerbRestart, "demo", "f2"); err != nil || rep.Outcome != protocol.OutcomeSpent || rep.Budget.Used != 1 {
		t.Fatalf("f2 after an agent restart: %+v %v", rep, err)
	}
	if h.marks("demo") != 1 {
		t.Fatalf("%d runs", h.marks("demo"))
	}
	fi, err := os.Stat(filepath.Join(h.dir, "state", "services", "demo.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v", fi, err)
	}
}

// TestPendingFromCrash: a fault record still pending when the lock is free
// is a restart its agent did not survive: the answer is failed, and it is
// not run again. The record counts against the budget.
func TestPendingFromCrash(t *testing.T) {
	h := newHarness(t, opts{budget: &rig.Budget{Max: 2, Window: "1h", MinGap: "0s"}})
	h.shutdown()
	at := time.Now().Add(-time.Minute).UTC()
	st := serviceState{
		Faults:   []faultRecord{{Fault: "f7", Verb: protocol.VerbRestart, At: at, outcomeRecord: outcomeRecord{State: statePending, Exit: -1}}},
		Restarts: []time.Time{at},
		Last:     map[protocol.Verb]*runRecord{protocol.VerbRestart: {Fault: "f7", Start: at, outcomeRecord: outcomeRecord{State: statePending, Exit: -1}}},
	}
	b, _ := json.Marshal(st)
	dir := filepath.Join(h.dir, "state", "services")
	os.MkdirAll(dir, 0o700)
	if err := os.WriteFile(filepath.Join(dir, "demo.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	h.start()
	rep, err := h.doFault(protocol.VerbRestart, "demo", "f7")
	if err != nil || rep.Outcome != protocol.OutcomeFailed || rep.Origin != protocol.OriginRecorded || rep.ExitCode != -1 ||
		rep.Output != crashedOutput || rep.Budget.Used != 1 {
		t.Fatalf("the crashed fault: %+v %v", rep, err)
	}
	if h.marks("demo") != 0 {
		t.Fatal("the crashed restart ran again")
	}
	// The repair is on disk.
	b, _ = os.ReadFile(filepath.Join(dir, "demo.json"))
	if strings.Contains(string(b), statePending) || !strings.Contains(string(b), crashedOutput) {
		t.Fatalf("state file after the repair: %s", b)
	}
	if rep, err := h.doFault(protocol.VerbRestart, "demo", "f8"); err != nil || rep.Origin != protocol.OriginRun || rep.Budget.Used != 2 {
		t.Fatalf("a new fault: %+v %v", rep, err)
	}
}
