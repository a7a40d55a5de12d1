package listener

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/selfheal/selfheal/internal/breaker"
	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/proc"
	"github.com/selfheal/selfheal/internal/protocol"
	"github.com/selfheal/selfheal/internal/textsafe"
)

// pipeWait is how long the agent waits for an action's output pipe after
// the action exited. A start script that daemonises a worker without
// redirecting its stdio would otherwise hold the reply forever.
const pipeWait = 2 * time.Second

// Job is one verified request for a service's action.
type Job struct {
	Service string
	Verb    protocol.Verb
	Fault   string    // "-" when the request names none
	Arrived time.Time // when it was verified, on the agent's clock
	// Since is when the fault began, on the agent's clock (FaultStart);
	// zero: the request does not say.
	Since   time.Time
	Action  Action
	Budget  Budget // the service's restart budget
	Backoff Backoff
	// Breaker is the host's mass-failure breaker; nil: off.
	Breaker *HostBreaker
	// LockWait bounds the wait for the service's lock while another
	// process (an inetd sibling) holds it. Within one process requests
	// queue without a bound of their own: each run ahead is bounded.
	LockWait time.Duration
}

// Result is the agent's answer to a Job.
type Result struct {
	Outcome  protocol.Outcome
	Origin   protocol.Origin
	ExitCode int
	Duration time.Duration
	Output   string
	Budget   protocol.Budget // restarts only
	// Detail says, for the audit log and the reply's note, how an answer
	// that did not run came about, or what went wrong with the records.
	Detail string
	// Age: for an answer from the records (recorded, joined), how long
	// ago the run that answered began.
	Age time.Duration
	// Breaker is the breaker's verdict when it held this restart back or
	// admitted it as its trial (for the audit log).
	Breaker *breaker.Verdict
	// LastRestart is, in a status answer, the service's last restart (nil:
	// none recorded); the reply adds it as the output's last line.
	LastRestart *protocol.LastRestart
}

// HostBreaker is the agent's breaker: its state file in state_dir, and
// the number of services it was sized by (for the message).
type HostBreaker struct {
	Store    breaker.Store
	Services int
	// Memory, when set (serve mode), answers instead of Store's file.
	Memory *breaker.Memory
}

// breakerWait bounds the wait for the breaker's lock: its holders only
// read and write one small file.
const breakerWait = 5 * time.Second

// admit asks the breaker whether j's restart may run. A breaker that
// cannot answer (its file unreadable, its lock stuck) fails open: a
// broken breaker must not stop healing; the error is logged and audited.
// With try, it only asks what the breaker would answer, counting nothing
// (a query).
func (e *Executor) admit(j Job, now time.Time, note func(string), try bool) gate {
	return func(b protocol.Budget) (Result, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), breakerWait)
		defer cancel()
		var v breaker.Verdict
		var err error
		switch m := j.Breaker.Memory; {
		case try && m != nil:
			v, err = m.Try(ctx, now, j.Service, j.Fault)
		case try:
			v, err = j.Breaker.Store.Try(ctx, now, j.Service, j.Fault)
		case m != nil:
			v, err = m.Admit(ctx, now, j.Service, j.Fault)
		default:
			v, err = j.Breaker.Store.Admit(ctx, now, j.Service, j.Fault)
		}
		if err != nil {
			if e.onBreakerError != nil {
				e.onBreakerError(j.Service, err)
			}
			note("breaker failed open (restart allowed): " + err.Error())
			return Result{}, true
		}
		if v.Allow {
			if v.State != breaker.Closed {
				note("breaker trial: the one restart allowed while it is open")
			}
			return Result{Breaker: &v}, true
		}
		cfg := j.Breaker.Store.Config
		window, quiet := shortDur(cmp.Or(cfg.Window, breaker.DefaultWindow)), shortDur(cmp.Or(cfg.Quiet, breaker.DefaultQuiet))
		msg := fmt.Sprintf("%d of %d services needed a restart within %s: the cause is likely shared; ", v.Count, j.Breaker.Services, window)
		if v.State == breaker.Trial {
			msg += fmt.Sprintf("held back while a trial restart shows whether it is over (the breaker closes %s after it if no new failure arrives)", quiet)
		} else {
			msg += fmt.Sprintf("held back, the breaker closes %s after the last new failure", quiet)
		}
		if v.ClockMoved >= time.Second {
			msg += fmt.Sprintf("; a breaker time is dated %s in the future: the clock moved back; counted as now", shortDur(v.ClockMoved))
		}
		b.RetryAfter = v.RetryAfter
		r := notRun(protocol.OutcomeBreaker, msg, msg+"; held: "+strings.Join(v.Keys, " "))
		r.Budget, r.Breaker = b, &v
		return r, false
	}
}

// Executor runs allow-listed actions under the service's records (see
// ledger.go): one action at a time per service, in this process and
// across processes; identical concurrent requests share one run; restarts
// obey the fault records and the budget.
type Executor struct {
	mu       sync.Mutex
	inflight map[string]*call
	locks    map[string]*sync.Mutex
	wg       sync.WaitGroup
	runs     atomic.Int64
	joined   atomic.Int64
	ledger   *ledger
	now      func() time.Time
	// onWait, when set, hears that a service's lock is held by another
	// process and this request waits for it.
	onWait func(service string)
	// onBreakerError, when set, hears that the breaker failed open.
	onBreakerError func(service string, err error)
	// trust is whom the files an action runs must belong to; judged
	// again before every run (judgeAction).
	trust fsutil.Trust
	// onDistrust, when set, hears that an action was refused because its
	// files fail the trust rule.
	onDistrust func(service string, verb protocol.Verb, err error)
	// hard is cancelled when a drain runs out of time: running actions are
	// then killed like a timeout, and queued ones do not start.
	hard       context.Context
	cancelHard context.CancelFunc
}

type call struct {
	done  chan struct{}
	res   Result
	fault string // the fault of the request that made the call
}

// NewExecutor returns an idle executor keeping its records under
// stateDir. now nil is time.Now.
func NewExecutor(stateDir string, now func() time.Time) *Executor {
	if now == nil {
		now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Executor{inflight: map[string]*call{}, locks: map[string]*sync.Mutex{}, ledger: newLedger(stateDir), now: now,
		trust: fsutil.Self(), hard: ctx, cancelHard: cancel}
}

// Runs counts actions actually started; Joined counts callers that waited
// on another caller's call in this process. Tests and the benchmark use
// them.
func (e *Executor) Runs() int64   { return e.runs.Load() }
func (e *Executor) Joined() int64 { return e.joined.Load() }

// Run answers j, running its action if the records say so, and waits for
// the answer or for ctx, whichever comes first; a run, once started, is
// bounded by its own timeout, not by the caller. A request for a service
// and verb that already has a call in progress here waits for it, and
// shares its run (origin joined); if that call ran nothing (an answer
// from the records), the request is decided on its own.
func (e *Executor) Run(ctx context.Context, j Job) Result {
	key := j.Service + "\x00" + string(j.Verb)
	e.mu.Lock()
	// A restart for another fault is not shared in memory: it waits, then
	// the records answer it (joined) and remember its fault, so that its
	// own retry is answered the same way.
	if c := e.inflight[key]; c != nil && (j.Verb != protocol.VerbRestart || j.Fault == "-" || j.Fault == c.fault) {
		e.joined.Add(1)
		e.mu.Unlock()
		select {
		case <-c.done:
		case <-ctx.Done():
			return gaveUp()
		}
		if c.res.Origin == protocol.OriginRun {
			r := c.res
			r.Origin, r.Detail = protocol.OriginJoined, "shared a run in progress"
			return r
		}
		e.mu.Lock()
	}
	c := &call{done: make(chan struct{}), fault: j.Fault}
	registered := e.inflight[key] == nil
	if registered {
		e.inflight[key] = c
	}
	l := e.locks[j.Service]
	if l == nil {
		l = &sync.Mutex{}
		e.locks[j.Service] = l
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		l.Lock()
		res := e.execute(j)
		l.Unlock()
		if registered {
			e.mu.Lock()
			delete(e.inflight, key)
			e.mu.Unlock()
		}
		c.res = res
		close(c.done)
	}()
	e.mu.Unlock()
	select {
	case <-c.done:
		return c.res
	case <-ctx.Done():
		return gaveUp()
	}
}

// gaveUp answers a caller that stopped waiting. busy is retryable: the
// retry shares the run or gets its recorded answer.
func gaveUp() Result {
	return Result{Outcome: protocol.OutcomeBusy, Origin: protocol.OriginNone, ExitCode: -1, Output: "gave up waiting for the action"}
}

func notRun(o protocol.Outcome, output, detail string) Result {
	return Result{Outcome: o, Origin: protocol.OriginNone, ExitCode: -1, Output: output, Detail: detail}
}

// execute decides j under the service's lock and runs it if need be. The
// restart's time and fault are on disk before the action starts, and the
// lock is held until its outcome is written.
func (e *Executor) execute(j Job) Result {
	if e.hard.Err() != nil {
		return notRun(protocol.OutcomeBusy, "agent shutting down: not run", "shutting down")
	}
	// The trust rule, again, before the records are touched: a refused
	// action leaves no fault record, uses no budget and tells the breaker
	// nothing. Who could change a file that passes cannot, by the rule,
	// so the moment between this check and the exec is not a race.
	if err := judgeAction(e.trust, "service "+j.Service+" action "+string(j.Verb), j.Action.Argv); err != nil {
		if e.onDistrust != nil {
			e.onDistrust(j.Service, j.Verb, err)
		}
		return notRun(protocol.OutcomeDenied, "refused: a file this action runs fails the agent's trust rule (see its audit log); not run",
			"refused, not run: "+err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), j.LockWait)
	defer cancel()
	var onWait func()
	if e.onWait != nil {
		onWait = func() { e.onWait(j.Service) }
	}
	ent, err := e.ledger.open(ctx, j.Service, e.now, onWait)
	if errors.Is(err, errLockBusy) {
		return notRun(protocol.OutcomeBusy, "another action of this service is still running", fmt.Sprintf("%v for %s", err, j.LockWait))
	}
	if err != nil {
		return notRun(protocol.OutcomeFailed, "the agent cannot read its records for this service: not run", err.Error())
	}
	defer ent.close()
	now := e.now()
	var notes []string
	note := func(s string) { notes = append(notes, s) }
	if n := ent.clockNote(); n != "" {
		note(n)
	}
	var admit gate
	var verdict *breaker.Verdict
	if j.Verb == protocol.VerbRestart && j.Breaker != nil {
		ask := e.admit(j, now, note, false)
		admit = func(b protocol.Budget) (Result, bool) {
			r, ok := ask(b)
			verdict = r.Breaker
			return r, ok
		}
	}
	res, run := ent.st.decideWith(j, now, admit)
	// What the clock or the breaker did is said in the audit line, and in
	// the reply of an answer that ran nothing for a reason of time.
	addNotes := func(res *Result) {
		if len(notes) == 0 {
			return
		}
		all := strings.Join(notes, "; ")
		res.Detail = strings.TrimPrefix(res.Detail+"; "+all, "; ")
		if !run && res.Origin != protocol.OriginJoined && ent.future >= time.Second {
			res.Output = strings.TrimPrefix(res.Output+"\n"+ent.clockNote(), "\n")
		}
	}
	if !run {
		if ent.dirty || ent.st.noted {
			ent.st.noted = false
			if err := ent.save(); err != nil {
				res.Detail += "; " + err.Error()
			}
		}
		addNotes(&res)
		return res
	}
	if e.hard.Err() != nil {
		return notRun(protocol.OutcomeBusy, "agent shutting down: not run", "shutting down")
	}
	if j.Verb == protocol.VerbRestart {
		if err := ent.begin(j, now); err != nil {
			return notRun(protocol.OutcomeFailed, "the agent cannot record the restart: not run", err.Error())
		}
	}
	pre := res.Detail // why no record answered, when one matched
	res = e.runAction(j.Action)
	end := e.now()
	res.Origin, res.Detail = protocol.OriginRun, pre
	err = ent.finish(j, now, end, res)
	if j.Verb == protocol.VerbRestart {
		res.Budget = ent.st.budget(j.Budget, j.Backoff, end)
	}
	if j.Verb == protocol.VerbStatus && j.Budget.Max > 0 {
		// A status answer says how the service stands for healing too
		// (check_selfheal reads it): its budget and its last restart.
		ent.st.prune(j.Budget, end)
		res.Budget, res.LastRestart = ent.st.budget(j.Budget, j.Backoff, end), ent.st.lastRestart(end)
	}
	if err != nil {
		res.Detail = strings.TrimPrefix(res.Detail+"; outcome not recorded: "+err.Error(), "; ")
	}
	if verdict != nil && verdict.State != breaker.Closed {
		res.Breaker = verdict
	}
	addNotes(&res)
	return res
}

// queryWait bounds a query's wait for the service's lock: a run in
// progress holds it, and the query then answers busy (retried by the
// client) rather than hold its connection for the run.
const queryWait = 3 * time.Second

// Query answers j, a restart, with what Run would answer now, and runs
// nothing: the records are read under the service's lock and decided as
// for a restart (fault record, a run in progress, min_gap, the breaker,
// the back-off, the budget), then dropped, and the breaker is only
// asked. Nothing is written: no fault record, budget, back-off or
// breaker count changes. A restart that would run is answered ok with
// origin "-" and the budget as it stands; one the trust rule would refuse,
// the signed denied.
func (e *Executor) Query(ctx context.Context, j Job) Result {
	if e.hard.Err() != nil {
		return notRun(protocol.OutcomeBusy, "agent shutting down", "shutting down")
	}
	// A restart whose files fail the trust rule would be refused before
	// the records are read: the query is answered so, in the same words.
	if err := judgeAction(e.trust, "service "+j.Service+" action "+string(j.Verb), j.Action.Argv); err != nil {
		return notRun(protocol.OutcomeDenied, "refused: a file this action runs fails the agent's trust rule (see its audit log); a restart would not run",
			"refused, would not run: "+err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, queryWait)
	defer cancel()
	ent, err := e.ledger.open(ctx, j.Service, e.now, nil)
	if errors.Is(err, errLockBusy) {
		return notRun(protocol.OutcomeBusy, "an action of this service is running now: a restart would wait for it", err.Error())
	}
	if err != nil {
		return notRun(protocol.OutcomeFailed, "the agent cannot read its records for this service: a restart would not run", err.Error())
	}
	ent.discard = true
	defer ent.close()
	now := e.now()
	var notes []string
	note := func(s string) { notes = append(notes, s) }
	if n := ent.clockNote(); n != "" {
		note(n)
	}
	var admit gate
	if j.Breaker != nil {
		admit = e.admit(j, now, note, true)
	}
	res, run := ent.st.decideWith(j, now, admit)
	if run {
		b := ent.st.budget(j.Budget, j.Backoff, now)
		msg := "a restart would run now"
		if b.Max > 0 {
			msg += fmt.Sprintf(" (restart %d of %d in %s)", b.Used+1, b.Max, shortDur(j.Budget.Window))
		}
		res = Result{Outcome: protocol.OutcomeOK, Origin: protocol.OriginNone, ExitCode: -1, Budget: b,
			Detail: strings.TrimPrefix(res.Detail+"; "+msg, "; ")}
	}
	if len(notes) > 0 {
		res.Detail = strings.TrimPrefix(res.Detail+"; "+strings.Join(notes, "; "), "; ")
	}
	return res
}

// Inflight is the number of distinct actions running or queued.
func (e *Executor) Inflight() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.inflight)
}

// KillAll makes running actions time out now, and queued ones not start
// (used when a drain overruns).
func (e *Executor) KillAll() { e.cancelHard() }

// Wait waits for every started action to finish, up to ctx.
func (e *Executor) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *Executor) runAction(a Action) Result {
	e.runs.Add(1)
	start := time.Now()
	out := &tailBuffer{max: protocol.MaxOutput - 64}
	cmd := &exec.Cmd{Path: a.Argv[0], Args: a.Argv, Dir: a.Dir, Env: a.env, Stdout: out, Stderr: out}
	// Its own process group, so a timeout reaches its children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: a.cred}
	cmd.WaitDelay = pipeWait
	if err := cmd.Start(); err != nil {
		return Result{Outcome: protocol.OutcomeFailed, ExitCode: -1, Duration: time.Since(start), Output: sanitize("cannot start action: " + err.Error())}
	}
	pgid := cmd.Process.Pid
	// Wait in this goroutine; a timer (or a drain that ran out of time)
	// kills the group from another, and Wait then returns.
	var timedOut atomic.Bool
	var why atomic.Value
	killed := make(chan struct{})
	kill := func(reason string) func() {
		return func() {
			if timedOut.CompareAndSwap(false, true) {
				why.Store(reason)
				go func() {
					defer close(killed)
					killGroup(pgid, a.KillGrace)
				}()
			}
		}
	}
	timer := time.AfterFunc(a.Timeout, kill(fmt.Sprintf("timed out after %s", a.Timeout)))
	stopHard := context.AfterFunc(e.hard, kill("killed: the agent is shutting down"))
	err := cmd.Wait()
	timer.Stop()
	stopHard()
	if timedOut.Load() {
		<-killed // the whole group is gone (or SIGKILLed) before we answer
	}
	res := Result{Duration: time.Since(start), Output: out.String(), ExitCode: -1}
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	switch {
	case timedOut.Load():
		res.Outcome = protocol.OutcomeTimeout
		res.Output = sanitize(why.Load().(string) + "; process group killed\n" + res.Output)
	case err == nil:
		res.Outcome = protocol.OutcomeOK
	default:
		res.Outcome = protocol.OutcomeFailed
		var ee *exec.ExitError
		if !errors.As(err, &ee) && !errors.Is(err, exec.ErrWaitDelay) {
			res.Output = sanitize(res.Output + "\n" + err.Error())
		} else if errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success() {
			// Exited 0 but a child kept its stdout open: the action did
			// its work; the docs say how to detach properly.
			res.Outcome = protocol.OutcomeOK
		}
	}
	return res
}

// killGroup sends SIGTERM to the group, waits up to grace for every member
// to go, then SIGKILLs what is left and waits (bounded) until it is gone.
func killGroup(pgid int, grace time.Duration) {
	proc.Escalation{Grace: grace, KillWait: groupKillWait, Poll: 20 * time.Millisecond}.
		TerminateGroup(context.Background(), pgid)
}

// groupKillWait bounds the wait after SIGKILL: the reply must not hang on
// a member stuck in the kernel (D state).
const groupKillWait = 2 * time.Second

// tailBuffer keeps the last max bytes written and counts the rest, so an
// action printing 1 GB costs 4 KiB of memory.
type tailBuffer struct {
	mu    sync.Mutex
	max   int
	buf   []byte
	total int64
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total += int64(len(p))
	if len(p) >= t.max {
		t.buf = append(t.buf[:0], p[len(p)-t.max:]...)
		return len(p), nil
	}
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := sanitize(string(t.buf))
	if dropped := t.total - int64(len(t.buf)); dropped > 0 {
		s = fmt.Sprintf("[%d bytes of output dropped]\n", dropped) + s
	}
	return s
}

// sanitize keeps printable UTF-8, newlines and tabs; every other byte or
// rune (escape sequences, NUL, CR, bidi overrides, invalid UTF-8) becomes
// '?' (textsafe.Text). Trailing newlines go: the reply adds its own.
func sanitize(s string) string {
	return strings.TrimRight(textsafe.Text.Clean(s), "\n")
}
