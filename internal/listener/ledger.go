package listener

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/protocol"
)

// The ledger is what makes the agent the authority on restarts: per
// service, the faults it restarted for, the restart times inside the
// budget window and the last run of each verb, in the journal
// state_dir/services/<service>.json. Every reader and writer holds the
// flock state_dir/services/<service>.lock, and holds it while the
// service's action runs, so the records and the runs are one sequence
// across goroutines and processes (inetd included).
//
// The journal is JSON lines, replayed in order on open:
//
//	{"op":"state","faults":[…],"restarts":[…],"last":{…}}
//	    the whole state (serviceState); a line without "op" is one too
//	    (the single-object file of the version before the journal)
//	{"op":"begin","verb":"restart","fault":F,"at":T}
//	    a restart starts: T counts against the budget, F is pending
//	{"op":"end","verb":V,"run":{"fault":F,"start":…,"end":…,"state":"done","outcome":…,"exit":…,"dur_us":…,"output":…}}
//	    a run's outcome: the last run of V and, for a restart, F's record
//
// A begin line is appended with one write and made durable (fdatasync)
// before the restart runs: that is the guarantee. An end line is appended
// without a sync: a crashed agent loses nothing (the page cache has it); a
// power loss can lose it, and a begin without its end reads as a restart
// its agent did not survive (failed, not run again), the safe direction.
//
// The journal is created, and rewritten as one state line once more than
// compactLines lines or compactBytes (or the state line's size, if
// larger) follow the state line, by temp file, fsync, rename and fsync of
// the directory. So its first line is always whole, and a later line cut
// short (no newline) or holding a NUL is a write a crash lost: it and what
// follows are dropped, and the next write rewrites the journal. Any other
// line that cannot be read refuses the service rather than forget.
//
// Times are the agent's wall clock. One dated after now (the clock went
// back) is read as now and written back so, so that it ages from then on
// instead of blocking restarts for as long as the clock was off; the
// answer that found it says the clock moved. A run whose end was so read
// is never joined by a later request (it was over when that arrived).
//
// A process keeps each service's state between opens while the journal is
// the file it left (same device, inode, size and ctime), so a serve agent
// does not parse it per request; a write by anyone else (an inetd
// sibling, an operator) makes the next open read it.

const (
	ledgerDir       = "services"
	maxFaultRecords = 64
	// maxChain bounds the restart times kept for the back-off: beyond
	// log2(max_gap/min_gap)+1 restarts the spacing is capped anyway, and
	// 32 covers 1 s doubling to a week.
	maxChain = 32
	// maxStateFile bounds the read: a state line (64 faults and the last
	// run of each verb with 4 KiB of output each, MaxBudget restart
	// times) and at most as much again of appended lines are well under it.
	maxStateFile = 4 << 20
	compactLines = 256
	compactBytes = 64 << 10
	// crashedOutput answers a restart whose record is still pending when
	// the lock is free: the agent that ran it died (the kernel drops a dead
	// process's flock). It is not run again for that fault.
	crashedOutput = "agent stopped during this restart; not run again"
	// faultRecordTTL ends a fault record's authority: a request whose
	// fault id matches a record older than this is a new fault that
	// reuses the id (Nagios' problem ids restart after its retention is
	// reset; two setups can share small numbers). A day is far beyond any
	// retry or duplicate (seconds to minutes) and beyond the budget
	// window's default (1h), so it never lets a fault restart twice that
	// was ever going to be asked about again for the same outage.
	faultRecordTTL = 24 * time.Hour
	// sinceSlack: a fault that began within it after a restart ended is
	// read as one that restart covered. It absorbs a fault start given in
	// whole seconds (Nagios) and a split brain's two endpoints seeing one
	// fault apart (~0.5 s measured); a new fault begins only after a
	// recovery the engine saw, which takes a check after the restart.
	sinceSlack = time.Second
)

const (
	statePending = "pending"
	stateDone    = "done"
)

// The journal's line kinds.
const (
	opState = "state"
	opBegin = "begin"
	opEnd   = "end"
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
	// Clamped: End was in the future (the clock went back) and was read
	// as the time of that read, so it says nothing about later arrivals.
	Clamped bool `json:"clamped,omitempty"`
	outcomeRecord
}

// serviceState is one service's records.
type serviceState struct {
	Faults   []faultRecord `json:"faults"`
	Restarts []time.Time   `json:"restarts"`
	// Chain: the last restart times whatever the window, for the back-off.
	Chain []time.Time                  `json:"chain,omitempty"`
	Last  map[protocol.Verb]*runRecord `json:"last"`
	// noted: decide recorded a fault without a run (a restart joined by
	// another fault's request); the caller saves the state.
	noted bool
}

// journalLine is one line of the journal; Op says which fields it has.
type journalLine struct {
	Op       string                       `json:"op,omitempty"`
	Faults   []faultRecord                `json:"faults,omitempty"`   // state
	Restarts []time.Time                  `json:"restarts,omitempty"` // state
	Chain    []time.Time                  `json:"chain,omitempty"`    // state
	Last     map[protocol.Verb]*runRecord `json:"last,omitempty"`     // state
	Verb     protocol.Verb                `json:"verb,omitempty"`     // begin, end
	Fault    string                       `json:"fault,omitempty"`    // begin
	At       time.Time                    `json:"at,omitzero"`        // begin
	Run      *runRecord                   `json:"run,omitempty"`      // end
}

// apply replays one line.
func (s *serviceState) apply(l *journalLine) error {
	switch l.Op {
	case "", opState:
		*s = serviceState{Faults: l.Faults, Restarts: l.Restarts, Chain: l.Chain, Last: map[protocol.Verb]*runRecord{}}
		if s.Chain == nil { // written before the back-off: its restarts are the chain's best guess
			s.Chain = slices.Clone(l.Restarts[max(0, len(l.Restarts)-maxChain):])
		}
		for v, r := range l.Last {
			if r != nil {
				s.Last[v] = r
			}
		}
	case opBegin:
		if l.Verb != protocol.VerbRestart || l.Fault == "" || l.At.IsZero() {
			return errors.New("a begin line needs verb restart, a fault and a time")
		}
		s.begin(Job{Verb: l.Verb, Fault: l.Fault}, l.At)
	case opEnd:
		if l.Verb == "" || l.Run == nil {
			return errors.New("an end line needs a verb and a run")
		}
		s.ended(l.Verb, l.Run)
	default:
		return fmt.Errorf("unknown op %q", l.Op)
	}
	return nil
}

// ledger is the state_dir/services directory, and the states this
// process left there.
type ledger struct {
	dir   string
	mu    sync.Mutex
	cache map[string]*snapshot
	swept map[string]dirStamp // the directory when each service's temp files were last looked for
	reads int                 // journals read and parsed (tests)
}

// dirStamp changes when a file is created in or removed from the
// directory.
type dirStamp struct {
	ino   uint64
	mtime syscall.Timespec
}

// snapshot is a service's state as this process last left its journal.
type snapshot struct {
	key               fileKey
	st                serviceState
	size, head, lines int64
	compact           bool
}

// fileKey tells whether a journal is still the one a snapshot was taken
// of: every write appends (a new size and ctime) or rewrites (a new
// inode; one that reused the number would also need the same size and
// ctime).
type fileKey struct {
	dev, ino uint64
	size     int64
	ctime    syscall.Timespec
}

func keyOf(fi os.FileInfo) (fileKey, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileKey{}, false
	}
	return fileKey{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, ctime: st.Ctim}, true
}

func newLedger(stateDir string) *ledger {
	return &ledger{dir: filepath.Join(stateDir, ledgerDir), cache: map[string]*snapshot{}, swept: map[string]dirStamp{}}
}

func (l *ledger) path(service string) string { return filepath.Join(l.dir, service+".json") }

// take hands over service's snapshot if the journal is still k.
func (l *ledger) take(service string, k fileKey) *snapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.cache[service]
	delete(l.cache, service)
	if s == nil || s.key != k {
		l.reads++
		return nil
	}
	return s
}

func (l *ledger) put(service string, s *snapshot) {
	l.mu.Lock()
	l.cache[service] = s
	l.mu.Unlock()
}

// sweep deletes the temp files a killed writer left for service's journal
// if the directory changed since it last looked: reading the directory on
// every request would cost more than the rest of the records (42 µs with
// 50 services). A stamp less than racyStamp old is not trusted (a file
// system's timestamps may be that coarse), so the next open looks again.
func (l *ledger) sweep(service string) {
	var st syscall.Stat_t
	if syscall.Stat(l.dir, &st) != nil {
		return
	}
	stamp := dirStamp{ino: st.Ino, mtime: st.Mtim}
	if time.Since(time.Unix(st.Mtim.Unix())) < racyStamp {
		stamp = dirStamp{}
	}
	l.mu.Lock()
	seen := stamp != dirStamp{} && l.swept[service] == stamp
	l.swept[service] = stamp
	l.mu.Unlock()
	if !seen {
		removeTemps(l.path(service))
	}
}

const racyStamp = 100 * time.Millisecond

// entry is one service's state, read under its lock.
type entry struct {
	l       *ledger
	service string
	st      serviceState
	f       *os.File      // the journal, open for appending; nil until it exists
	size    int64         // where the next line goes: the end of the last whole line
	head    int64         // the bytes up to the end of the state line
	lines   int64         // lines after it
	dirty   bool          // changed by the load (a crash, a clock step): save it
	future  time.Duration // how far in the future the latest restart time was (the clock went back)
	compact bool          // the next write rewrites the journal (missing, a lost write at its end, long, dirty)
	broken  bool          // a write failed: the file may not say what st says
	discard bool          // st was changed for an answer only (a query): not kept for the next open
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
	// state_dir itself is checked and only the agent can write it, but the
	// services folder is never trusted through a symlink either: the files
	// in it are opened O_NOFOLLOW or created O_EXCL, and this covers the
	// folder.
	if fi, err := os.Lstat(l.dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("state_dir: %s is not a directory (a symlink is refused)", l.dir)
	}
	d, lockName, err := fsutil.OpenParent(filepath.Join(l.dir, service+".lock"))
	if err != nil {
		return nil, fmt.Errorf("service lock: %w", err)
	}
	defer d.Close()
	try, cancel := context.WithTimeout(ctx, 0)
	unlock, err := d.Lock(try, lockName, 0o600, 5*time.Millisecond)
	cancel()
	if err != nil && waiting != nil && ctx.Err() == nil && isBusy(err) {
		waiting()
		unlock, err = d.Lock(ctx, lockName, 0o600, 5*time.Millisecond)
	}
	if err != nil {
		if isBusy(err) {
			return nil, errLockBusy
		}
		return nil, fmt.Errorf("service lock: %w", err)
	}
	e := &entry{l: l, service: service, unlock: unlock}
	if err := e.load(now()); err != nil {
		e.broken = true
		e.close()
		return nil, err
	}
	return e, nil
}

func isBusy(err error) bool { return errors.Is(err, syscall.EWOULDBLOCK) }

// openJournal opens the journal for reading and appending, never through
// a symlink and never blocking (a FIFO is refused once open).
func openJournal(p string) (*os.File, os.FileInfo, error) {
	f, err := os.OpenFile(p, os.O_RDWR|os.O_APPEND|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, nil, fmt.Errorf("%s is a symlink: refusing to follow it", p)
	}
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", p)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

func (e *entry) load(now time.Time) error {
	p := e.l.path(e.service)
	e.l.sweep(e.service) // we hold the lock: no live writer owns them
	f, fi, err := openJournal(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		e.compact = true // created whole by the first write
	case err != nil:
		return fmt.Errorf("state file: %w", err)
	default:
		e.f = f
		k, ok := keyOf(fi)
		if s := e.l.take(e.service, k); ok && s != nil {
			e.st, e.size, e.head, e.lines, e.compact = s.st, s.size, s.head, s.lines, s.compact
			break
		}
		b, err := io.ReadAll(io.LimitReader(f, maxStateFile+1))
		if err != nil {
			return fmt.Errorf("state file: %w", err)
		}
		if len(b) > maxStateFile {
			return fmt.Errorf("state file %s is larger than %d bytes: fix or remove it", p, maxStateFile)
		}
		if err := e.replay(b, p); err != nil {
			return err
		}
		slices.SortFunc(e.st.Restarts, func(a, b time.Time) int { return a.Compare(b) })
		slices.SortFunc(e.st.Chain, func(a, b time.Time) int { return a.Compare(b) })
	}
	if e.st.Last == nil {
		e.st.Last = map[protocol.Verb]*runRecord{}
	}
	e.normalize(now)
	if e.dirty || e.size == 0 || e.long() { // an empty file is rewritten whole too
		e.compact = true
	}
	return nil
}

// replay rebuilds the state from the journal b.
func (e *entry) replay(b []byte, path string) error {
	for n, off := 1, 0; off < len(b); n++ {
		line := b[off:]
		i := bytes.IndexByte(line, '\n')
		whole := i >= 0
		if whole {
			line = line[:i]
		}
		// The first line is whole (written by rename); a later one cut
		// short or holding a NUL is a write a crash lost.
		lost := off > 0 && (!whole || bytes.IndexByte(line, 0) >= 0)
		var jl journalLine
		var err error
		blank := len(bytes.TrimSpace(line)) == 0
		if !blank {
			if err = json.Unmarshal(line, &jl); err == nil {
				err = e.st.apply(&jl)
			}
		}
		switch {
		case err != nil && lost:
			e.compact = true
			return nil
		case err != nil:
			return fmt.Errorf("state file %s line %d is not valid (%v): fix or remove it", path, n, err)
		case !whole:
			e.compact = true // read, but nothing may be appended to it
			return nil
		}
		off += i + 1
		e.size = int64(off)
		switch {
		case blank:
		case jl.Op == "" || jl.Op == opState:
			e.head, e.lines = e.size, 0
		default:
			e.lines++
		}
	}
	return nil
}

// normalize reads pending records as crashed and times after now as now.
func (e *entry) normalize(now time.Time) {
	e.future = 0
	clamp := func(t *time.Time) bool {
		if !t.After(now) {
			return false
		}
		*t, e.dirty = now, true
		return true
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
		if clamp(&r.End) {
			r.Clamped = true
		}
		if r.crashed() {
			e.dirty = true
		}
	}
	// Sorted: only a suffix can be in the future.
	for _, ts := range [][]time.Time{e.st.Restarts, e.st.Chain} {
		for i := len(ts) - 1; i >= 0 && ts[i].After(now); i-- {
			e.future = max(e.future, ts[i].Sub(now)) // the message's: when restarts were
			clamp(&ts[i])
		}
	}
}

// clockNote says, for an answer, that a record was dated in the future.
func (e *entry) clockNote() string {
	if e.future < time.Second {
		return ""
	}
	return fmt.Sprintf("the last restart is dated %s in the future: the clock moved back; counted as now", shortDur(e.future))
}

// shortDur is d to the second without zero tails: 2h, 5m12s, 8m.
func shortDur(d time.Duration) string {
	s := d.Round(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// long: enough was appended after the state line to rewrite the journal.
func (e *entry) long() bool {
	return e.lines > compactLines || e.size-e.head > max(compactBytes, e.head)
}

// removeTemps deletes the temp files a killed writeFileAtomic left for
// path (fsutil's Dir.RemoveTemps: only path + ".tmp-" + digits, so a
// longer service name's state file is never taken).
func removeTemps(path string) {
	if d, name, err := fsutil.OpenParent(path); err == nil {
		d.RemoveTemps(name)
		d.Close()
	}
}

// writeFileAtomic replaces path with data, mode 0600, durably (fsutil's
// Dir.WriteFileAtomic).
func writeFileAtomic(path string, data []byte) error {
	d, name, err := fsutil.OpenParent(path)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.WriteFileAtomic(name, data, 0o600)
}

// marshalLine is l as one line, its newline included. Not HTML-escaped:
// the file is read by the agent and by jq, and <>& would cost 6 bytes.
func marshalLine(l *journalLine) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(l); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// save rewrites the journal as one state line, durably: temp file, fsync,
// rename, fsync of the directory. Later lines are appended to the new
// file.
func (e *entry) save() error {
	line, err := marshalLine(&journalLine{Op: opState, Faults: e.st.Faults, Restarts: e.st.Restarts, Chain: e.st.Chain, Last: e.st.Last})
	if err == nil {
		err = writeFileAtomic(e.l.path(e.service), line)
	}
	if err != nil {
		e.broken = true
		return fmt.Errorf("state file: %w", err)
	}
	if e.f != nil {
		e.f.Close()
	}
	e.f, e.size, e.head, e.lines, e.dirty = nil, int64(len(line)), int64(len(line)), 0, false
	f, _, err := openJournal(e.l.path(e.service))
	if err != nil {
		// The state is on disk; the next write rewrites it again.
		e.broken = true
		return nil
	}
	e.f, e.compact = f, false
	return nil
}

// append adds l at the journal's end with one write and, if durable, an
// fdatasync: then l and every line before it are on disk (the journal's
// name has been since it was created, by a rename and an fsync of the
// directory). Where the journal is due for a rewrite, the rewrite, which
// holds l's effect, takes l's place. A line that failed is cut off again,
// so that a retry finds nothing recorded, as nothing ran; if even that
// fails, the next reader drops the torn line or, if it got to the disk
// whole, reads the restart as one its agent did not survive: never twice.
func (e *entry) append(l *journalLine, durable bool) error {
	if e.compact || e.f == nil {
		return e.save()
	}
	line, err := marshalLine(l)
	if err != nil {
		e.broken = true
		return fmt.Errorf("state file: %w", err)
	}
	n, err := e.f.Write(line)
	if err == nil && durable {
		err = syscall.Fdatasync(int(e.f.Fd()))
	}
	if err != nil {
		e.broken = true
		if n > 0 && e.f.Truncate(e.size) != nil {
			e.compact = true
		}
		return fmt.Errorf("state file: %w", err)
	}
	e.size += int64(n)
	e.lines++
	if e.long() {
		e.compact = true
	}
	return nil
}

// begin records, durably and before j's restart runs, its time and its
// fault, pending.
func (e *entry) begin(j Job, now time.Time) error {
	e.st.begin(j, now)
	return e.append(&journalLine{Op: opBegin, Verb: j.Verb, Fault: j.Fault, At: now}, true)
}

// finish records a run's outcome (not synced: see the doc comment).
func (e *entry) finish(j Job, start, end time.Time, r Result) error {
	e.st.finish(j, start, end, r)
	return e.append(&journalLine{Op: opEnd, Verb: j.Verb, Run: e.st.Last[j.Verb]}, false)
}

// close releases the lock, keeping the state for the next open unless a
// write failed.
func (e *entry) close() {
	if e.f != nil {
		if fi, err := e.f.Stat(); err == nil && !e.broken && !e.dirty {
			if k, ok := keyOf(fi); ok {
				if !e.discard {
					e.l.put(e.service, &snapshot{key: k, st: e.st, size: e.size, head: e.head, lines: e.lines, compact: e.compact})
				}
			}
		}
		e.f.Close()
	}
	e.unlock()
}

// prune forgets restarts outside b's window and beyond MaxBudget.
func (s *serviceState) prune(b Budget, now time.Time) {
	i := 0
	for i < len(s.Restarts) && !s.Restarts[i].After(now.Add(-b.Window)) {
		i++
	}
	i = max(i, len(s.Restarts)-MaxBudget)
	s.Restarts = s.Restarts[i:]
}

// budget is b as spent so far (restarts already pruned to b's window);
// RetryAfter is when the next restart may run: min_gap, the back-off
// spacing, the window.
func (s *serviceState) budget(b Budget, bo Backoff, now time.Time) protocol.Budget {
	used := len(s.Restarts)
	var retry time.Duration
	if used > 0 && b.MinGap > 0 {
		retry = s.Restarts[used-1].Add(b.MinGap).Sub(now)
	}
	if _, gap, last := s.backoff(b, bo, now); gap > 0 {
		retry = max(retry, last.Add(gap).Sub(now))
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

// backoff is the service's current chain: its length k (0: none, reset
// after reset_after without a restart), the spacing its next restart must
// keep after the last one, min(min_gap × 2^(k-1), max_gap), and that
// last one. Without back-off (bo zero, or max_gap at most min_gap) the
// spacing is 0: min_gap alone applies.
func (s *serviceState) backoff(b Budget, bo Backoff, now time.Time) (k int, gap time.Duration, last time.Time) {
	n := len(s.Chain)
	if n == 0 || b.MinGap <= 0 || bo.MaxGap <= b.MinGap || now.Sub(s.Chain[n-1]) >= bo.ResetAfter {
		return 0, 0, time.Time{}
	}
	k = 1
	for i := n - 1; i > 0 && s.Chain[i].Sub(s.Chain[i-1]) < bo.ResetAfter; i-- {
		k++
	}
	gap = b.MinGap
	for range k - 1 {
		if gap >= bo.MaxGap {
			break
		}
		gap *= 2
	}
	return k, min(gap, bo.MaxGap), s.Chain[n-1]
}

// decide answers j from the records, or reports that it must run. In
// order: this fault's restart already ran (a record younger than
// faultRecordTTL that does not predate the fault); a run of the same verb
// had not finished when j arrived (j shares it); a restart ran less than
// min_gap ago: if this fault began before it finished, it is the same
// fault seen under another id (a split brain) and gets its answer; if it
// began later, or the request does not say, it waits for the gap
// (backoff); then, for a restart that would run, gate (the host's
// breaker; nil: none) may hold it; the back-off spacing has not passed,
// or the budget is spent (whichever frees up later; spent on a tie).
func (s *serviceState) decide(j Job, now time.Time) (Result, bool) { return s.decideWith(j, now, nil) }

// gate holds a restart back (false) with its answer; b is the budget
// as it stands, for the reply.
type gate func(b protocol.Budget) (Result, bool)

// FaultStart is when a fault began on the agent's clock: age (how long
// before the request was made, on the client's clock, in milliseconds;
// -1: not given) before its arrival. The clocks' offset does not enter;
// the transit makes the start look later (a new fault, the safe side).
func FaultStart(ageMS int64, arrived time.Time) time.Time {
	if ageMS < 0 {
		return time.Time{}
	}
	return arrived.Add(-time.Duration(ageMS) * time.Millisecond)
}

// staleFor says why f cannot answer j (its authority ended, or it
// predates j's fault), or "".
func (f *faultRecord) staleFor(j Job, now time.Time) string {
	if age := now.Sub(f.At); age > faultRecordTTL {
		return fmt.Sprintf("the record of fault %s is %s old (more than %s): a new fault that reuses its id", f.Fault, shortDur(age), shortDur(faultRecordTTL))
	}
	if !j.Since.IsZero() && j.Since.After(f.At.Add(sinceSlack)) {
		return fmt.Sprintf("fault %s began %s after its recorded restart (at %s): a new fault that reuses its id",
			f.Fault, shortDur(j.Since.Sub(f.At)), f.At.UTC().Format(time.RFC3339))
	}
	return ""
}

func (s *serviceState) decideWith(j Job, now time.Time, admit gate) (Result, bool) {
	restart := j.Verb == protocol.VerbRestart
	var b protocol.Budget
	var notes []string // why a record did not answer, for the answer that did
	if restart {
		s.prune(j.Budget, now)
		b = s.budget(j.Budget, j.Backoff, now)
		if f := s.fault(j.Fault); f != nil && j.Fault != "-" {
			if why := f.staleFor(j, now); why != "" {
				notes = append(notes, why)
			} else {
				r := f.result(protocol.OriginRecorded)
				r.Budget, r.Age = b, max(now.Sub(f.At), 0)
				r.Detail = fmt.Sprintf("fault %s was restarted %s ago (at %s): %s",
					f.Fault, shortDur(r.Age), f.At.UTC().Format(time.RFC3339), orPending(f.outcomeRecord))
				return r, false
			}
		}
	}
	withNotes := func(r Result) Result {
		if len(notes) > 0 {
			r.Detail = strings.Join(append(notes, r.Detail), "; ")
		}
		return r
	}
	if last := s.Last[j.Verb]; last != nil && last.State == stateDone && last.End.After(j.Arrived) && !last.Clamped {
		r := last.result(protocol.OriginJoined)
		r.Budget, r.Age = b, max(now.Sub(last.Start), 0)
		r.Detail = fmt.Sprintf("shared the %s that started at %s", j.Verb, last.Start.UTC().Format(time.RFC3339Nano))
		if restart && j.Fault != "-" && j.Fault != last.Fault {
			// This fault was answered by another fault's restart: record
			// it, so that its retry gets the same answer rather than a
			// restart of its own.
			s.addFault(faultRecord{Fault: j.Fault, Verb: j.Verb, At: last.Start, outcomeRecord: last.outcomeRecord})
			s.noted = true
		}
		return withNotes(r), false
	}
	if !restart {
		return Result{}, true
	}
	if last := s.Last[protocol.VerbRestart]; last != nil && j.Budget.MinGap > 0 && now.Sub(last.Start) < j.Budget.MinGap {
		if r, ok := s.withinGap(j, last, b, now); ok {
			return withNotes(r), false
		}
	}
	if admit != nil {
		if r, ok := admit(b); !ok {
			return withNotes(r), false
		}
	}
	var spentUntil time.Duration
	if b.Used >= b.Max {
		spentUntil = s.Restarts[b.Used-b.Max].Add(j.Budget.Window).Sub(now)
	}
	k, gap, last := s.backoff(j.Budget, j.Backoff, now)
	if wait := last.Add(gap).Sub(now); gap > 0 && wait > 0 && (b.Used < b.Max || wait > spentUntil) {
		msg := fmt.Sprintf("back-off: after %d restarts in a row (less than %s apart) the next waits %s; allowed in %s",
			k, shortDur(j.Backoff.ResetAfter), shortDur(gap), shortDur(wait))
		b.RetryAfter = max(b.RetryAfter, wait)
		return withNotes(Result{Outcome: protocol.OutcomeBackoff, Origin: protocol.OriginNone, ExitCode: -1, Budget: b, Output: msg, Detail: msg}), false
	}
	if b.Used >= b.Max {
		msg := fmt.Sprintf("restart budget spent: %d restarts in %s; the next is allowed in %s", b.Used, j.Budget.Window, b.RetryAfter.Round(time.Second))
		return withNotes(Result{Outcome: protocol.OutcomeSpent, Origin: protocol.OriginNone, ExitCode: -1, Budget: b, Output: msg, Detail: msg}), false
	}
	if len(notes) > 0 {
		return Result{Detail: strings.Join(notes, "; ")}, true
	}
	return Result{}, true
}

// withinGap answers a restart that arrives less than min_gap after the
// last one began. A fault that began before that restart finished (with
// sinceSlack) is the one it covered, seen under another id (a split
// brain's other endpoint): its answer, origin recorded, not counted, and
// the fault is recorded so that its retries get the same. A fault that
// began later is a new crash, and one whose start the request does not
// give may be: neither is told "ok"; both wait for the gap (backoff,
// retry-after its end), so that a client that holds the fault and asks
// again then gets its own restart. ok false: the gap does not decide.
func (s *serviceState) withinGap(j Job, last *runRecord, b protocol.Budget, now time.Time) (Result, bool) {
	end := last.End
	if last.State != stateDone || end.IsZero() {
		end = last.Start
	}
	wait := last.Start.Add(j.Budget.MinGap).Sub(now)
	lastFault := cmp.Or(last.Fault, "-")
	if !j.Since.IsZero() && !j.Since.After(end.Add(sinceSlack)) {
		r := last.result(protocol.OriginRecorded)
		r.Budget, r.Age = b, max(now.Sub(last.Start), 0)
		r.Detail = fmt.Sprintf("fault %s began %s the restart for fault %s (at %s) finished: the same fault under another id; that restart's answer (%s), not counted",
			j.Fault, beforeAfter(end.Sub(j.Since)), lastFault, last.Start.UTC().Format(time.RFC3339), orPending(last.outcomeRecord))
		if j.Fault != "-" && j.Fault != last.Fault {
			s.addFault(faultRecord{Fault: j.Fault, Verb: j.Verb, At: last.Start, outcomeRecord: last.outcomeRecord})
			s.noted = true
		}
		return r, true
	}
	// The next restart waits for the gap and for the back-off spacing
	// (already in b.RetryAfter): the note gives the later of the two.
	b.RetryAfter = max(b.RetryAfter, wait)
	rule := "min_gap " + shortDur(j.Budget.MinGap)
	if b.RetryAfter > wait {
		rule += " and the back-off"
	}
	var msg string
	if j.Since.IsZero() {
		msg = fmt.Sprintf("a restart ran %s ago (fault %s, %s); the request does not say when fault %s began, so whether it covered this is unknown; %s: allowed in %s",
			shortDur(now.Sub(last.Start)), lastFault, orPending(last.outcomeRecord), j.Fault, rule, shortDur(b.RetryAfter))
	} else {
		msg = fmt.Sprintf("fault %s began %s after the last restart (fault %s, %s) ended: a new fault; %s: allowed in %s",
			j.Fault, shortDur(j.Since.Sub(end)), lastFault, orPending(last.outcomeRecord), rule, shortDur(b.RetryAfter))
	}
	return Result{Outcome: protocol.OutcomeBackoff, Origin: protocol.OriginNone, ExitCode: -1, Budget: b, Output: msg, Detail: msg}, true
}

// beforeAfter is "12s before" for d > 0, "3s after" for d < 0.
func beforeAfter(d time.Duration) string {
	if d < 0 {
		return shortDur(-d) + " after"
	}
	return shortDur(d) + " before"
}

// orPending names a record's outcome ("pending" while it runs).
func orPending(o outcomeRecord) string {
	if o.State != stateDone {
		return "still running"
	}
	return string(o.Outcome)
}

// begin records, before a restart runs, its time and its fault, pending.
func (s *serviceState) begin(j Job, now time.Time) {
	s.Restarts = append(s.Restarts, now)
	if n := len(s.Restarts); n > 1 && s.Restarts[n-2].After(now) { // the clock went back
		slices.SortFunc(s.Restarts, func(a, b time.Time) int { return a.Compare(b) })
	}
	s.Chain = append(s.Chain, now)
	if n := len(s.Chain); n > 1 && s.Chain[n-2].After(now) {
		slices.SortFunc(s.Chain, func(a, b time.Time) int { return a.Compare(b) })
	}
	s.Chain = s.Chain[max(0, len(s.Chain)-maxChain):]
	s.Last[protocol.VerbRestart] = &runRecord{Fault: j.Fault, Start: now, outcomeRecord: outcomeRecord{State: statePending, Exit: -1}}
	if j.Fault == "-" {
		return
	}
	s.addFault(faultRecord{Fault: j.Fault, Verb: j.Verb, At: now, outcomeRecord: outcomeRecord{State: statePending, Exit: -1}})
}

// addFault keeps f as the newest of the last maxFaultRecords fault
// records, in place of an older record of the same id (one whose
// authority ended).
func (s *serviceState) addFault(f faultRecord) {
	s.Faults = slices.DeleteFunc(s.Faults, func(o faultRecord) bool { return o.Fault == f.Fault })
	if len(s.Faults) >= maxFaultRecords {
		s.Faults = slices.Delete(s.Faults, 0, len(s.Faults)-maxFaultRecords+1)
	}
	s.Faults = append(s.Faults, f)
}

// lastRestart is the last restart and the restarts within the hour
// before now (from the back-off's chain, which keeps them whatever the
// budget window); nil when there is none.
func (s *serviceState) lastRestart(now time.Time) *protocol.LastRestart {
	last := s.Last[protocol.VerbRestart]
	if last == nil {
		return nil
	}
	r := &protocol.LastRestart{Outcome: last.Outcome, At: last.Start, Fault: cmp.Or(last.Fault, "-")}
	if last.State != stateDone {
		r.Outcome = "pending"
	}
	for _, t := range s.Chain {
		if now.Sub(t) < time.Hour {
			r.LastHour++
		}
	}
	return r
}

// finish records a run's outcome.
func (s *serviceState) finish(j Job, start, end time.Time, r Result) {
	s.ended(j.Verb, &runRecord{Fault: j.Fault, Start: start, End: end, outcomeRecord: recordOf(r)})
}

// ended records run as the last of verb and, for a restart, as its
// fault's outcome.
func (s *serviceState) ended(verb protocol.Verb, run *runRecord) {
	s.Last[verb] = run
	if verb != protocol.VerbRestart || run.Fault == "-" {
		return
	}
	if f := s.fault(run.Fault); f != nil {
		f.outcomeRecord = run.outcomeRecord
	}
}
