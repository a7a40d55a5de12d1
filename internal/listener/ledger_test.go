package listener

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
	// Another fault within min_gap that began before a's restart ended
	// (a split brain's other id): a's answer, recorded, not counted.
	dup := restartJob("c", t0.Add(time.Minute), b)
	dup.Since = t0.Add(-time.Second)
	r, run = s.decide(dup, t0.Add(time.Minute))
	if run || r.Origin != protocol.OriginRecorded || r.Output != "did a" || r.Budget.Used != 1 || r.Budget.RetryAfter != time.Minute ||
		r.Age != time.Minute {
		t.Fatalf("within min_gap: %+v %v", r, run)
	}
	// One that began after it ended, or that does not say when: a new
	// fault for all the agent knows, which waits for the gap.
	for _, since := range []time.Time{t0.Add(30 * time.Second), {}} {
		j := restartJob("d", t0.Add(time.Minute), b)
		j.Since = since
		r, run = s.decide(j, t0.Add(time.Minute))
		if run || r.Outcome != protocol.OutcomeBackoff || r.Origin != protocol.OriginNone || r.Budget.RetryAfter != time.Minute {
			t.Fatalf("new fault within min_gap (since %v): %+v %v", since, r, run)
		}
	}
	// c was answered by a's restart: its retry gets the same answer.
	if r, run := s.decide(restartJob("c", t0.Add(90*time.Second), b), t0.Add(90*time.Second)); run || r.Output != "did a" {
		t.Fatalf("retry of the duplicate: %+v %v", r, run)
	}
	// After min_gap: runs.
	t1 := t0.Add(3 * time.Minute)
	if _, run := s.decide(restartJob("e", t1, b), t1); !run {
		t.Fatal("after min_gap not run")
	}
	ran(s, "e", t1, time.Second, b)
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
// after the step, not a day and a window later. Alike whether the state
// comes from the journal (another process wrote it) or from this
// process's last open of it.
func TestDecideClockWentBack(t *testing.T) {
	for _, sameProcess := range []bool{true, false} {
		t.Run(fmt.Sprintf("same process %v", sameProcess), func(t *testing.T) {
			dir := t.TempDir()
			b := Budget{Max: 1, Window: time.Hour, MinGap: 0}
			now := time.Unix(1_764_024_000, 0)
			future := now.Add(24 * time.Hour)
			l := newLedger(dir)
			open := func(at time.Time) *entry {
				t.Helper()
				if !sameProcess {
					l = newLedger(dir)
				}
				e, err := l.open(t.Context(), "demo", func() time.Time { return at }, nil)
				if err != nil {
					t.Fatal(err)
				}
				return e
			}
			e := open(future)
			ran(&e.st, "a", future, time.Second, b)
			if err := e.save(); err != nil {
				t.Fatal(err)
			}
			e.close()

			e = open(now)
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
			e = open(later)
			defer e.close()
			if _, run := e.st.decide(restartJob("b", later, b), later); !run {
				t.Fatal("still blocked a window after the step")
			}
			if wantReads := map[bool]int{true: 0, false: 1}[sameProcess]; l.reads != wantReads {
				t.Fatalf("journal read %d times by the last ledger, want %d", l.reads, wantReads)
			}
		})
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
	ran(&e.st, "f", now, time.Second, DefaultBudget())
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

// TestSweepAfterChange: the directory is searched for left-over temp
// files only when it changed since the last search, and always while its
// timestamp is too recent to tell.
func TestSweepAfterChange(t *testing.T) {
	dir := t.TempDir()
	l := newLedger(dir)
	svc := filepath.Join(dir, ledgerDir)
	openClose := func() {
		t.Helper()
		e, err := l.open(t.Context(), "x", time.Now, nil)
		if err != nil {
			t.Fatal(err)
		}
		e.close()
	}
	left := func() bool { _, err := os.Stat(filepath.Join(svc, "x.json.tmp-7")); return err == nil }
	openClose()
	quiet := time.Now().Add(-time.Hour)
	os.Chtimes(svc, quiet, quiet)
	openClose() // a stamp old enough to trust
	os.WriteFile(filepath.Join(svc, "x.json.tmp-7"), nil, 0o600)
	os.Chtimes(svc, quiet, quiet) // as if the change went unnoticed
	openClose()
	if !left() {
		t.Fatal("the directory was read although its stamp did not change")
	}
	os.WriteFile(filepath.Join(svc, "y"), nil, 0o600) // a change
	openClose()
	if left() {
		t.Fatal("left-over temp file kept after the directory changed")
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

// journalOps lists the ops of the journal's lines ("state" for a line
// without one), failing on a line that is not JSON.
func journalOps(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line == "" {
			continue
		}
		var l journalLine
		if !strings.HasSuffix(line, "\n") || json.Unmarshal([]byte(line), &l) != nil {
			t.Fatalf("journal line %q", line)
		}
		ops = append(ops, cmp.Or(l.Op, opState))
	}
	return ops
}

// restartIn runs the records' side of one restart of fault at now in a
// fresh open of l: decide, begin, finish (unless crash: the agent dies
// while the action runs), close.
func restartIn(t *testing.T, l *ledger, fault string, now time.Time, b Budget, crash bool) {
	t.Helper()
	e, err := l.open(t.Context(), "demo", func() time.Time { return now }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	j := restartJob(fault, now, b)
	if r, run := e.st.decide(j, now); !run {
		t.Fatalf("%s not run: %+v", fault, r)
	}
	if err := e.begin(j, now); err != nil {
		t.Fatal(err)
	}
	if !crash {
		if err := e.finish(j, now, now.Add(time.Second), Result{Outcome: protocol.OutcomeOK, Output: "did " + fault}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestJournal: the first restart creates the journal whole (one state
// line, by rename); later ones append a begin line, on disk before the
// action runs, and an end line. Another process (a fresh ledger) reads
// the same records back; one that died after its begin line left a
// restart that answers "agent stopped", counts against the budget, and is
// written back repaired.
func TestJournal(t *testing.T) {
	dir := t.TempDir()
	b := Budget{Max: 3, Window: time.Hour}
	t0 := time.Unix(1_764_024_000, 0)
	path := filepath.Join(dir, ledgerDir, "demo.json")
	restartIn(t, newLedger(dir), "f1", t0, b, false)
	if ops := journalOps(t, path); !slices.Equal(ops, []string{opState, opEnd}) {
		t.Fatalf("after the first restart: %v", ops)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("journal: %v %v", fi, err)
	}
	// The begin line is on disk while the action runs.
	l := newLedger(dir)
	e, err := l.open(t.Context(), "demo", func() time.Time { return t0.Add(time.Minute) }, nil)
	if err != nil {
		t.Fatal(err)
	}
	j := restartJob("f2", t0.Add(time.Minute), b)
	if err := e.begin(j, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if ops := journalOps(t, path); !slices.Equal(ops, []string{opState, opEnd, opBegin}) {
		t.Fatalf("while f2 runs: %v", ops)
	}
	if err := e.finish(j, t0.Add(time.Minute), t0.Add(2*time.Minute), Result{Outcome: protocol.OutcomeFailed, ExitCode: 3, Output: "did f2"}); err != nil {
		t.Fatal(err)
	}
	e.close()
	restartIn(t, l, "f3", t0.Add(3*time.Minute), b, true)
	if ops := journalOps(t, path); !slices.Equal(ops, []string{opState, opEnd, opBegin, opEnd, opBegin}) {
		t.Fatalf("after f3's agent died: %v", ops)
	}

	now := t0.Add(4 * time.Minute)
	e, err = newLedger(dir).open(t.Context(), "demo", func() time.Time { return now }, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		fault   string
		outcome protocol.Outcome
		exit    int
		output  string
	}{{"f1", protocol.OutcomeOK, 0, "did f1"}, {"f2", protocol.OutcomeFailed, 3, "did f2"}, {"f3", protocol.OutcomeFailed, -1, crashedOutput}} {
		r, run := e.st.decide(restartJob(c.fault, now, b), now)
		if run || r.Origin != protocol.OriginRecorded || r.Outcome != c.outcome || r.ExitCode != c.exit || r.Output != c.output || r.Budget.Used != 3 {
			t.Fatalf("%s read back: %+v %v", c.fault, r, run)
		}
	}
	if r, run := e.st.decide(restartJob("f4", now, b), now); run || r.Outcome != protocol.OutcomeSpent {
		t.Fatalf("f4 with 3 restarts in the window: %+v %v", r, run)
	}
	if !e.dirty {
		t.Fatal("the crashed restart is not marked for writing back")
	}
	if err := e.save(); err != nil {
		t.Fatal(err)
	}
	e.close()
	b2, _ := os.ReadFile(path)
	if ops := journalOps(t, path); !slices.Equal(ops, []string{opState}) || strings.Contains(string(b2), statePending) || !strings.Contains(string(b2), crashedOutput) {
		t.Fatalf("after the repair: %v\n%s", ops, b2)
	}
}

// TestJournalLostWrite: a line a crash cut short, or the zeros a lost
// write leaves, at the end of the journal are dropped, and the next write
// rewrites the journal without them; a line that cannot be read anywhere
// else refuses the service; so does a symlink in the journal's place.
func TestJournalLostWrite(t *testing.T) {
	b := Budget{Max: 10, Window: time.Hour}
	t0 := time.Unix(1_764_024_000, 0)
	setup := func(t *testing.T) (string, *ledger, string) {
		dir := t.TempDir()
		restartIn(t, newLedger(dir), "f1", t0, b, false)
		restartIn(t, newLedger(dir), "f2", t0.Add(time.Minute), b, false)
		path := filepath.Join(dir, ledgerDir, "demo.json")
		if ops := journalOps(t, path); !slices.Equal(ops, []string{opState, opEnd, opBegin, opEnd}) {
			t.Fatalf("journal: %v", ops)
		}
		whole, _ := os.ReadFile(path)
		return dir, newLedger(dir), string(whole)
	}
	lines := func(s string) []string { return strings.SplitAfter(strings.TrimSuffix(s, "\n"), "\n") }
	for _, c := range []struct {
		name   string
		tail   func(whole string) string // the journal's new content
		f2Done bool
	}{
		{"end line cut short", func(w string) string { l := lines(w); return strings.Join(l[:3], "") + l[3][:20] }, false},
		{"begin line cut short", func(w string) string { l := lines(w); return strings.Join(l[:2], "") + l[2][:30] }, false},
		{"zeros", func(w string) string { l := lines(w); return strings.Join(l[:2], "") + strings.Repeat("\x00", 300) }, false},
		{"zeros then a line", func(w string) string { l := lines(w); return strings.Join(l[:2], "") + "\x00\x00\n" + l[2] }, false},
		{"only the newline lost", func(w string) string { return strings.TrimSuffix(w, "\n") }, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, l, whole := setup(t)
			path := filepath.Join(dir, ledgerDir, "demo.json")
			os.WriteFile(path, []byte(c.tail(whole)), 0o600)
			now := t0.Add(2 * time.Minute)
			e, err := l.open(t.Context(), "demo", func() time.Time { return now }, nil)
			if err != nil {
				t.Fatal(err)
			}
			if r, run := e.st.decide(restartJob("f1", now, b), now); run || r.Output != "did f1" {
				t.Fatalf("f1: %+v %v", r, run)
			}
			// f2's lines were the lost ones: its restart either did not
			// start (no begin line) or reads as one that did not finish.
			if f := e.st.fault("f2"); c.f2Done != (f != nil && f.Output == "did f2") || f != nil && !c.f2Done && f.Output != crashedOutput {
				t.Fatalf("f2: %+v", f)
			}
			e.close() // in this process, the next open finds the state kept
			restartIn(t, l, "f3", now, b, false)
			if ops := journalOps(t, path); !slices.Equal(ops, []string{opState, opEnd}) {
				t.Fatalf("after the next restart: %v", ops)
			}
		})
	}
	for _, c := range []struct{ name, content, want string }{
		{"a bad line before others", "line 3 is not valid", ""},
		{"an unknown op", "line 5 is not valid", `{"op":"frobnicate"}` + "\n"},
		{"an end line without its run", "line 5 is not valid", `{"op":"end","verb":"restart"}` + "\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, l, whole := setup(t)
			path := filepath.Join(dir, ledgerDir, "demo.json")
			bad := whole + c.want
			if c.want == "" {
				w := lines(whole)
				bad = w[0] + w[1] + "{garbage\n" + strings.Join(w[2:], "")
			}
			os.WriteFile(path, []byte(bad), 0o600)
			if _, err := l.open(t.Context(), "demo", time.Now, nil); err == nil || !strings.Contains(err.Error(), c.content) || !strings.Contains(err.Error(), "fix or remove it") {
				t.Fatalf("open: %v", err)
			}
		})
	}
	t.Run("symlink", func(t *testing.T) {
		dir, l, whole := setup(t)
		path := filepath.Join(dir, ledgerDir, "demo.json")
		target := filepath.Join(dir, "elsewhere")
		os.WriteFile(target, []byte(whole), 0o600)
		os.Remove(path)
		os.Symlink(target, path)
		if _, err := l.open(t.Context(), "demo", time.Now, nil); err == nil || !strings.Contains(err.Error(), "symlink") {
			t.Fatalf("open: %v", err)
		}
		if b, _ := os.ReadFile(target); string(b) != whole {
			t.Fatal("the symlink's target changed")
		}
	})
}

// TestJournalCompacts: the journal is rewritten as one state line once
// long, so it stays short however many restarts there are; what is live
// (the window's restart times, the last 64 faults) survives the rewrite.
func TestJournalCompacts(t *testing.T) {
	dir := t.TempDir()
	b := Budget{Max: MaxBudget, Window: time.Hour}
	t0 := time.Unix(1_764_024_000, 0)
	l := newLedger(dir)
	path := filepath.Join(dir, ledgerDir, "demo.json")
	longest := 0
	for i := range 300 {
		restartIn(t, l, fmt.Sprintf("f%d", i), t0.Add(time.Duration(i)*time.Second), b, false)
		longest = max(longest, len(journalOps(t, path)))
	}
	if longest > compactLines+2 {
		t.Fatalf("the journal grew to %d lines", longest)
	}
	// An hour after the first: the restarts before the window are gone.
	now := t0.Add(time.Hour + 50*time.Second)
	e, err := newLedger(dir).open(t.Context(), "demo", func() time.Time { return now }, nil)
	if err != nil {
		t.Fatal(err)
	}
	j := restartJob("f299", now, b)
	if r, run := e.st.decide(j, now); run || r.Output != "did f299" || r.Budget.Used != 249 || len(e.st.Faults) != maxFaultRecords {
		t.Fatalf("read back: %+v %v, %d faults", r, run, len(e.st.Faults))
	}
	if err := e.save(); err != nil {
		t.Fatal(err)
	}
	e.close()
	var st journalLine
	if raw, _ := os.ReadFile(path); json.Unmarshal(raw, &st) != nil || len(st.Restarts) != 249 || len(st.Faults) != maxFaultRecords {
		t.Fatalf("the rewrite keeps %d restart times and %d faults", len(st.Restarts), len(st.Faults))
	}
}

// TestLedgerCache: a process does not read again a journal that is still
// the one it left, and reads it again when another process (an inetd
// sibling) wrote to it, so that both answer from the same records.
func TestLedgerCache(t *testing.T) {
	dir := t.TempDir()
	b := Budget{Max: 10, Window: time.Hour}
	t0 := time.Unix(1_764_024_000, 0)
	serve, inetd := newLedger(dir), newLedger(dir)
	restartIn(t, serve, "f1", t0, b, false)
	restartIn(t, serve, "f2", t0.Add(time.Minute), b, false)
	if serve.reads != 0 { // f1 created the journal: serve knows what it holds
		t.Fatalf("serve read the journal %d times", serve.reads)
	}
	restartIn(t, inetd, "f3", t0.Add(2*time.Minute), b, false)
	now := t0.Add(3 * time.Minute)
	e, err := serve.open(t.Context(), "demo", func() time.Time { return now }, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, run := e.st.decide(restartJob("f3", now, b), now)
	e.close()
	if run || r.Origin != protocol.OriginRecorded || r.Output != "did f3" || r.Budget.Used != 3 || serve.reads != 1 {
		t.Fatalf("serve after inetd's restart: %+v %v, %d reads", r, run, serve.reads)
	}
}

// BenchmarkLedgerRestart: what the records cost one restart: take the
// lock, read the state (in this process: check that the journal is the
// one it left), decide, append the pending record (fdatasync), append the
// outcome, release. state_dir is the test's temp dir, so its file system
// decides the sync's cost.
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
		if err := e.begin(j, now); err != nil {
			b.Fatal(err)
		}
		if err := e.finish(j, now, time.Now(), Result{Outcome: protocol.OutcomeOK, Output: "restarted"}); err != nil {
			b.Fatal(err)
		}
		e.close()
	}
}

// TestLedgerRefusesSymlinkedServices: a services folder that is a symlink
// is refused, and nothing is written where it points.
func TestLedgerRefusesSymlinkedServices(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	elsewhere := filepath.Join(t.TempDir(), "elsewhere")
	for _, d := range []string{state, elsewhere} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(elsewhere, filepath.Join(state, ledgerDir)); err != nil {
		t.Fatal(err)
	}
	l := newLedger(state)
	if _, err := l.open(context.Background(), "demo", time.Now, nil); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("open through a symlinked services folder: %v", err)
	}
	if ents, _ := os.ReadDir(elsewhere); len(ents) != 0 {
		t.Fatalf("wrote through the symlink: %v", ents)
	}
}
