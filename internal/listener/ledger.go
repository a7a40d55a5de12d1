package listener

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/protocol"
)

// The ledger is what makes the agent the authority on restarts: per
// service, the faults it restarted for, the restart times inside the
// budget window and the last run of each verb, in
// state_dir/services/<service>.json. Every reader and writer holds the
// flock state_dir/services/<service>.lock, and holds it while the
// service's action runs, so the records and the runs are one sequence
// across goroutines and processes (inetd included). A record is written
// (fsync'ed, renamed) before the restart it protects runs.
//
// Times are the agent's wall clock. One dated after now (the clock went
// back) is read as now and written back so, so that it ages from then on
// instead of blocking restarts for as long as the clock was off.

const (
	ledgerDir       = "services"
	maxFaultRecords = 64
	// maxStateFile bounds the read: 64 faults and the last run of each
	// verb with 4 KiB of output each, and MaxBudget restart times, are
	// well under it.
	maxStateFile = 4 << 20
	// crashedOutput answers a restart whose record is still pending when
	// the lock is free: the agent that ran it died (the kernel drops a dead
	// process's flock). It is not run again for that fault.
	crashedOutput = "agent stopped during this restart; not run again"
)

const (
	statePending = "pending"
	stateDone    = "done"
)

// outcomeRecord is a recorded answer.
type outcomeRecord struct {
	State   string           `json:"state"`
	Outcome protocol.Outcome `json:"outcome,omitempty"`
	Exit    int              `json:"exit"`
	DurUS   int64            `json:"dur_us"`
	Output  string           `json:"output,omitempty"`
}

func recordOf(r Result) outcomeRecord {
	return outcomeRecord{State: stateDone, Outcome: r.Outcome, Exit: r.ExitCode, DurUS: r.Duration.Microseconds(), Output: r.Output}
}

func (o outcomeRecord) result(origin protocol.Origin) Result {
	return Result{Outcome: o.Outcome, Origin: origin, ExitCode: o.Exit, Duration: time.Duration(o.DurUS) * time.Microsecond, Output: o.Output}
}

// crashed turns a pending record into the answer for a run its agent did
// not survive.
func (o *outcomeRecord) crashed() bool {
	if o.State == stateDone {
		return false
	}
	*o = outcomeRecord{State: stateDone, Outcome: protocol.OutcomeFailed, Exit: -1, Output: crashedOutput}
	return true
}

type faultRecord struct {
	Fault string        `json:"fault"`
	Verb  protocol.Verb `json:"verb"`
	At    time.Time     `json:"at"`
	outcomeRecord
}

type runRecord struct {
	Fault string    `json:"fault,omitempty"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end,omitzero"`
	outcomeRecord
}

// serviceState is one service's state file.
type serviceState struct {
	Faults   []faultRecord                `json:"faults"`
	Restarts []time.Time                  `json:"restarts"`
	Last     map[protocol.Verb]*runRecord `json:"last"`
}

// ledger is the state_dir/services directory.
type ledger struct{ dir string }

func newLedger(stateDir string) *ledger { return &ledger{dir: filepath.Join(stateDir, ledgerDir)} }

func (l *ledger) path(service string) string { return filepath.Join(l.dir, service+".json") }

// entry is one service's state, read under its lock.
type entry struct {
	l       *ledger
	service string
	st      serviceState
	dirty   bool // changed by the load (a crash, a clock step): save it
	unlock  func() error
}

// errLockBusy: another process held the service's lock for the whole wait.
var errLockBusy = errors.New("the service's lock is held by another process")

// open takes the service's lock (waiting at most until ctx ends; waiting
// is reported through waiting, once) and reads its state. Pending records
// are the runs of a dead agent; times after now are now, the clock read
// once the lock is held (before, a run that ended while we waited would
// look like the future).
func (l *ledger) open(ctx context.Context, service string, now func() time.Time, waiting func()) (*entry, error) {
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		return nil, fmt.Errorf("state_dir: %w", err)
	}
	lockPath := filepath.Join(l.dir, service+".lock")
	try, cancel := context.WithTimeout(ctx, 0)
	unlock, err := fsutil.Lock(try, lockPath, 0o600, 5*time.Millisecond)
	cancel()
	if err != nil && waiting != nil && ctx.Err() == nil && isBusy(err) {
		waiting()
		unlock, err = fsutil.Lock(ctx, lockPath, 0o600, 5*time.Millisecond)
	}
	if err != nil {
		if isBusy(err) {
			return nil, errLockBusy
		}
		return nil, fmt.Errorf("service lock: %w", err)
	}
	e := &entry{l: l, service: service, unlock: unlock}
	if err := e.load(now()); err != nil {
		unlock()
		return nil, err
	}
	return e, nil
}

func isBusy(err error) bool { return errors.Is(err, syscall.EWOULDBLOCK) }

func (e *entry) load(now time.Time) error {
	p := e.l.path(e.service)
	removeTemps(p) // left by a writer killed mid-write; we hold the lock
	b, _, err := fsutil.ReadRegular(p, maxStateFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
		b = nil
	case err != nil:
		return fmt.Errorf("state file: %w", err)
	}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &e.st); err != nil {
			return fmt.Errorf("state file %s is not valid (%v): fix or remove it", p, err)
		}
	}
	if e.st.Last == nil {
		e.st.Last = map[protocol.Verb]*runRecord{}
	}
	clamp := func(t *time.Time) {
		if t.After(now) {
			*t, e.dirty = now, true
		}
	}
	for i := range e.st.Faults {
		f := &e.st.Faults[i]
		clamp(&f.At)
		if f.crashed() {
			e.dirty = true
		}
	}
	for _, r := range e.st.Last {
		clamp(&r.Start)
		clamp(&r.End)
		if r.crashed() {
			e.dirty = true
		}
	}
	for i := range e.st.Restarts {
		clamp(&e.st.Restarts[i])
	}
	slices.SortFunc(e.st.Restarts, func(a, b time.Time) int { return a.Compare(b) })
	return nil
}

// removeTemps deletes the temp files fsutil.WriteAtomic leaves for path
// when killed (path + ".tmp-" + digits). Only digits: a longer service
// name could otherwise match another service's state file.
func removeTemps(path string) {
	m, _ := filepath.Glob(path + ".tmp-*")
	for _, p := range m {
		if rest := strings.TrimPrefix(p, path+".tmp-"); rest != "" && strings.Trim(rest, "0123456789") == "" {
			os.Remove(p)
		}
	}
}

// save writes the state durably: temp file, fsync, rename, fsync of the
// directory.
func (e *entry) save() error {
	err := fsutil.WriteAtomic(e.l.path(e.service), 0o600, func(w io.Writer) error {
		return json.NewEncoder(w).Encode(&e.st)
	})
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	e.dirty = false
	return nil
}

func (e *entry) close() { e.unlock() }

// prune forgets restarts outside b's window and beyond MaxBudget.
func (s *serviceState) prune(b Budget, now time.Time) {
	i := 0
	for i < len(s.Restarts) && !s.Restarts[i].After(now.Add(-b.Window)) {
		i++
	}
	i = max(i, len(s.Restarts)-MaxBudget)
	s.Restarts = s.Restarts[i:]
}

// budget is b as spent so far (restarts already pruned to b's window).
func (s *serviceState) budget(b Budget, now time.Time) protocol.Budget {
	used := len(s.Restarts)
	var retry time.Duration
	if used > 0 && b.MinGap > 0 {
		retry = s.Restarts[used-1].Add(b.MinGap).Sub(now)
	}
	if used >= b.Max {
		retry = max(retry, s.Restarts[used-b.Max].Add(b.Window).Sub(now))
	}
	return protocol.Budget{Used: used, Max: b.Max, Window: b.Window, RetryAfter: max(retry, 0)}
}

func (s *serviceState) fault(id string) *faultRecord {
	for i := range s.Faults {
		if s.Faults[i].Fault == id {
			return &s.Faults[i]
		}
	}
	return nil
}

// decide answers j from the records, or reports that it must run. In
// order: this fault's restart already ran; a run of the same verb had not
// finished when j arrived (j shares it); a restart ran less than min_gap
// ago (any fault: a split brain gives one real fault two ids); the budget
// is spent.
func (s *serviceState) decide(j Job, now time.Time) (Result, bool) {
	restart := j.Verb == protocol.VerbRestart
	var b protocol.Budget
	if restart {
		s.prune(j.Budget, now)
		b = s.budget(j.Budget, now)
		if f := s.fault(j.Fault); f != nil && j.Fault != "-" {
			r := f.result(protocol.OriginRecorded)
			r.Budget, r.Detail = b, fmt.Sprintf("fault %s: restarted at %s", f.Fault, f.At.Format(time.RFC3339))
			return r, false
		}
	}
	if last := s.Last[j.Verb]; last != nil && last.State == stateDone && last.End.After(j.Arrived) {
		r := last.result(protocol.OriginJoined)
		r.Budget, r.Detail = b, fmt.Sprintf("shared the %s that started at %s", j.Verb, last.Start.Format(time.RFC3339Nano))
		return r, false
	}
	if !restart {
		return Result{}, true
	}
	if last := s.Last[protocol.VerbRestart]; last != nil && j.Budget.MinGap > 0 && now.Sub(last.Start) < j.Budget.MinGap {
		r := last.result(protocol.OriginRecorded)
		ago := now.Sub(last.Start).Truncate(time.Second)
		r.Budget, r.Detail = b, fmt.Sprintf("a restart ran %s ago (min_gap %s): its answer, not counted", ago, j.Budget.MinGap)
		return r, false
	}
	if b.Used >= b.Max {
		msg := fmt.Sprintf("restart budget spent: %d restarts in %s; the next is allowed in %s", b.Used, j.Budget.Window, b.RetryAfter.Round(time.Second))
		return Result{Outcome: protocol.OutcomeSpent, Origin: protocol.OriginNone, ExitCode: -1, Budget: b, Output: msg, Detail: msg}, false
	}
	return Result{}, true
}

// begin records, before a restart runs, its time and its fault, pending.
func (s *serviceState) begin(j Job, now time.Time) {
	s.Restarts = append(s.Restarts, now)
	s.Last[protocol.VerbRestart] = &runRecord{Fault: j.Fault, Start: now, outcomeRecord: outcomeRecord{State: statePending, Exit: -1}}
	if j.Fault == "-" {
		return
	}
	if len(s.Faults) >= maxFaultRecords {
		s.Faults = slices.Delete(s.Faults, 0, len(s.Faults)-maxFaultRecords+1)
	}
	s.Faults = append(s.Faults, faultRecord{Fault: j.Fault, Verb: j.Verb, At: now, outcomeRecord: outcomeRecord{State: statePending, Exit: -1}})
}

// finish records a run's outcome.
func (s *serviceState) finish(j Job, start, end time.Time, r Result) {
	rec := recordOf(r)
	s.Last[j.Verb] = &runRecord{Fault: j.Fault, Start: start, End: end, outcomeRecord: rec}
	if j.Verb != protocol.VerbRestart || j.Fault == "-" {
		return
	}
	if f := s.fault(j.Fault); f != nil {
		f.outcomeRecord = rec
	}
}
