package listener

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/selfheal/selfheal/internal/proc"
	"github.com/selfheal/selfheal/internal/protocol"
	"github.com/selfheal/selfheal/internal/textsafe"
)

// pipeWait is how long the agent waits for an action's output pipe after
// the action exited. A start script that daemonises a worker without
// redirecting its stdio would otherwise hold the reply forever.
const pipeWait = 2 * time.Second

// Result is what one run of an action produced.
type Result struct {
	Outcome  protocol.Outcome
	ExitCode int
	Duration time.Duration
	Output   string
	Joined   bool // this caller shared another caller's run
}

// Executor runs allow-listed actions: identical concurrent requests share
// one run, and different actions on one service run one after another.
type Executor struct {
	mu       sync.Mutex
	inflight map[string]*call
	locks    map[string]*sync.Mutex
	wg       sync.WaitGroup
	runs     atomic.Int64
	joined   atomic.Int64
	// hard is cancelled when a drain runs out of time: running actions are
	// then killed like a timeout.
	hard       context.Context
	cancelHard context.CancelFunc
}

type call struct {
	done chan struct{}
	res  Result
}

// NewExecutor returns an idle executor.
func NewExecutor() *Executor {
	ctx, cancel := context.WithCancel(context.Background())
	return &Executor{inflight: map[string]*call{}, locks: map[string]*sync.Mutex{}, hard: ctx, cancelHard: cancel}
}

// Runs counts actions actually started; Joined counts callers that shared
// a run. Tests and the benchmark use them.
func (e *Executor) Runs() int64   { return e.runs.Load() }
func (e *Executor) Joined() int64 { return e.joined.Load() }

// Run runs (or joins) service's verb action and waits for its result, or
// for ctx, whichever comes first; the action itself is bounded by its own
// timeout, not by the caller.
func (e *Executor) Run(ctx context.Context, service string, verb protocol.Verb, a Action) Result {
	key := service + "\x00" + string(verb)
	e.mu.Lock()
	c, joined := e.inflight[key]
	if !joined {
		c = &call{done: make(chan struct{})}
		e.inflight[key] = c
		l := e.locks[service]
		if l == nil {
			l = &sync.Mutex{}
			e.locks[service] = l
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			l.Lock()
			res := e.runAction(a)
			l.Unlock()
			e.mu.Lock()
			delete(e.inflight, key)
			e.mu.Unlock()
			c.res = res
			close(c.done)
		}()
	} else {
		e.joined.Add(1)
	}
	e.mu.Unlock()
	select {
	case <-c.done:
		r := c.res
		r.Joined = joined
		return r
	case <-ctx.Done():
		return Result{Outcome: protocol.OutcomeBusy, ExitCode: -1, Output: "gave up waiting for the action"}
	}
}

// Inflight is the number of distinct actions running or queued.
func (e *Executor) Inflight() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.inflight)
}

// KillAll makes running actions time out now (used when a drain overruns).
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
