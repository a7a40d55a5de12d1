package listener

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/protocol"
)

func restartJob(fault string, arrived time.Time, b Budget) Job {
	return Job{Service: "demo", Verb: protocol.VerbRestart, Fault: fault, Arrived: arrived, Budget: b}
}

// ran records a restart for fault at t that ended d later with outcome ok.
func ran(s *serviceState, fault string, t time.Time, d time.Duration, b Budget) {
	j := restartJob(fault, t, b)
	s.begin(j, t)
	s.finish(j, t, t.Add(d), Result{Outcome: protocol.OutcomeOK, Output: "did " + fault})
}

func newState() *serviceState { return &serviceState{Last: map[protocol.Verb]*runRecord{}} }

// TestDecide walks the rules in order on a hand-moved clock: the fault's
// own record; a run not finished when the request arrived; min_gap; the
// budget; and how the budget frees up.
func TestDecide(t *testing.T) {
	b := Budget{Max: 2, Window: time.Hour, MinGap: 2 * time.Minute}
	t0 := time.Unix(1_764_024_000, 0)
	s := newState()
	if _, run := s.decide(restartJob("a", t0, b), t0); !run {
		t.Fatal("first restart not run")
	}
	ran(s, "a", t0, 10*time.Second, b)

	// A request that arrived while a's restart ran shares it.
	r, run := s.decide(restartJob("b", t0.Add(5*time.Second), b), t0.Add(11*time.Second))
	if run || r.Origin != protocol.OriginJoined || r.Output != "did a" || r.Budget.Used != 1 {
		t.Fatalf("arrived during the run: %+v %v", r, run)
	}
	// Its own fault, any time later: recorded, whatever min_gap says.
	r, run = s.decide(restartJob("a", t0.Add(59*time.Minute), b), t0.Add(59*time.Minute))
	if run || r.Origin != protocol.OriginRecorded || r.Output != "did a" {
		t.Fatalf("same fault: %+v %v", r, run)
	}
	// Another fault within min_gap: a's answer, recorded, not counted.
	r, run = s.decide(restartJob("c", t0.Add(time.Minute), b), t0.Add(time.Minute))
	if run || r.Origin != protocol.OriginRecorded || r.Output != "did a" || r.Budget.Used != 1 || r.Budget.RetryAfter != time.Minute {
		t.Fatalf("within min_gap: %+v %v", r, run)
	}
	// After min_gap: runs.
	t1 := t0.Add(3 * time.Minute)
	if _, run := s.decide(restartJob("c", t1, b), t1); !run {
		t.Fatal("after min_gap not run")
	}
	ran(s, "c", t1, time.Second, b)
	// Budget spent until a's restart leaves the window.
	t2 := t0.Add(10 * time.Minute)
	r, run = s.decide(restartJob("d", t2, b), t2)
	if run || r.Outcome != protocol.OutcomeSpent || r.Origin != protocol.OriginNone || r.Budget != (protocol.Budget{Used: 2, Max: 2, Window: time.Hour, RetryAfter: 50 * time.Minute}) {
		t.Fatalf("spent: %+v %v", r, run)
	}
	if !strings.Contains(r.Output, "next is allowed in 50m0s") {
		t.Fatalf("spent output %q", r.Output)
	}
	t3 := t0.Add(time.Hour + time.Second)
	r, run = s.decide(restartJob("d", t3, b), t3)
	if !run || len(s.Restarts) != 1 {
		t.Fatalf("an hour later: %+v %v, %d restarts in the window", r, run, len(s.Restarts))
	}
	// Other verbs: no budget, no fault; only a run in progress is shared.
	st := Job{Service: "demo", Verb: protocol.VerbStop, Fault: "a", Arrived: t3}
	if r, run := s.decide(st, t3); !run || r.Budget.Max != 0 {
		t.Fatalf("stop: %+v %v", r, run)
	}
}

// TestDecideClockWentBack: a restart dated in the future (the clock was
// stepped back by a day) counts as now, so it frees the budget one window
// after the step, not a day and a window later.
func TestDecideClockWentBack(t *testing.T) {
	dir := t.TempDir()
	b := Budget{Max: 1, Window: time.Hour, MinGap: 0}
	now := time.Unix(1_764_024_000, 0)
	future := now.Add(24 * time.Hour)
	l := newLedger(dir)
	e, err := l.open(t.Context(), "demo", func() time.Time { return future }, nil)
	if err != nil {
		t.Fatal(err)
	}
	ran(&e.st, "a", future, time.Second, b)
	if err := e.save(); err != nil {
		t.Fatal(err)
	}
	e.close()

	e, err = l.open(t.Context(), "demo", func() time.Time { return now }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !e.dirty || e.st.Restarts[0] != now || e.st.Last[protocol.VerbRestart].End != now {
		t.Fatalf("future times not read as now: %+v", e.st)
	}
	r, run := e.st.decide(restartJob("b", now, b), now)
	if run || r.Outcome != protocol.OutcomeSpent || r.Budget.RetryAfter != time.Hour {
		t.Fatalf("right after the step: %+v %v", r, run)
	}
	// The clamp is written back, so it ages from the step on.
	if err := e.save(); err != nil {
		t.Fatal(err)
	}
	e.close()
	later := now.Add(time.Hour + time.Second)
	e, err = l.open(t.Context(), "demo", func() time.Time { return later }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	if _, run := e.st.decide(restartJob("b", later, b), later); !run {
		t.Fatal("still blocked a window after the step")
	}
}

// TestLedgerFiles: the lock is exclusive across opens (and processes), a
// writer's left-over temp file is removed but not another service's state,
// and an unreadable state file refuses rather than forgets.
func TestLedgerFiles(t *testing.T) {
	dir := t.TempDir()
	l := newLedger(dir)
	now := time.Now()
	e, err := l.open(t.Context(), "x", time.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	waited := false
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := l.open(ctx, "x", time.Now, func() { waited = true }); err != errLockBusy || !waited {
		t.Fatalf("second open while locked: %v (waited %v)", err, waited)
	}
	ran(&e.st, "f", now, time.Second, DefaultBudget)
	if err := e.save(); err != nil {
		t.Fatal(err)
	}
	e.close()
	svc := filepath.Join(dir, ledgerDir)
	// x.json.tmp-123 is a killed writer's; x.json.tmp-a is another
	// service's state file base (service "x.json.tmp-a").
	for _, n := range []string{"x.json.tmp-123", "x.json.tmp-a.json"} {
		os.WriteFile(filepath.Join(svc, n), []byte("{}"), 0o600)
	}
	e, err = l.open(t.Context(), "x", time.Now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f := e.st.fault("f"); f == nil || f.Outcome != protocol.OutcomeOK {
		t.Fatalf("record not read back: %+v", e.st)
	}
	e.close()
	if _, err := os.Stat(filepath.Join(svc, "x.json.tmp-123")); !os.IsNotExist(err) {
		t.Fatal("left-over temp file kept")
	}
	if _, err := os.Stat(filepath.Join(svc, "x.json.tmp-a.json")); err != nil {
		t.Fatal("another service's state file removed")
	}
	os.WriteFile(filepath.Join(svc, "x.json"), []byte("{not json"), 0o600)
	if _, err := l.open(t.Context(), "x", time.Now, nil); err == nil || !strings.Contains(err.Error(), "fix or remove it") {
		t.Fatalf("corrupt state file: %v", err)
	}
}

// TestFaultRecordsBounded: the state keeps the last 64 faults.
func TestFaultRecordsBounded(t *testing.T) {
	s := newState()
	b := Budget{Max: MaxBudget, Window: time.Hour}
	t0 := time.Unix(1_764_024_000, 0)
	for i := range 100 {
		ran(s, fmt.Sprintf("f%d", i), t0.Add(time.Duration(i)*time.Second), 0, b)
	}
	if len(s.Faults) != maxFaultRecords || s.Faults[0].Fault != "f36" || s.fault("f99") == nil || s.fault("f35") != nil {
		t.Fatalf("%d faults kept, last at %s", len(s.Faults), s.Faults[len(s.Faults)-1].At)
	}
}

// BenchmarkLedgerRestart: what the records cost one restart: take the
// lock, read the state, decide, write the pending record (fsync), write
// the outcome (fsync), release. state_dir is the test's temp dir, so its
// file system decides the fsync cost.
func BenchmarkLedgerRestart(b *testing.B) {
	l := newLedger(b.TempDir())
	budget := Budget{Max: MaxBudget, Window: time.Second}
	i := 0
	for b.Loop() {
		i++
		e, err := l.open(context.Background(), "demo", time.Now, nil)
		if err != nil {
			b.Fatal(err)
		}
		now := time.Now()
		j := restartJob(fmt.Sprintf("f%d", i), now, budget)
		if _, run := e.st.decide(j, now); !run {
			b.Fatal("not run")
		}
		e.st.begin(j, now)
		if err := e.save(); err != nil {
			b.Fatal(err)
		}
		e.st.finish(j, now, time.Now(), Result{Outcome: protocol.OutcomeOK, Output: "restarted"})
		if err := e.save(); err != nil {
			b.Fatal(err)
		}
		e.close()
	}
}
