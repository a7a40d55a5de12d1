// Package handler is handle_worker's core: the policy that decides whether
// a Nagios/Icinga state change calls for a restart, the per-service restart
// budget kept in a small locked state file, the request to worker_listener
// with bounded retries, and the feedback written to Nagios' command file.
// docs/event-handler.md describes the behaviour; Run and Send never exit,
// print or use globals.
package handler

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/selfheal/selfheal/internal/protocol"
)

// Exit codes. 0-2 say whether healing happened; 3 is a usage error.
const (
	ExitOK       = 0 // healed, or nothing to do
	ExitWithheld = 1 // healing needed but withheld: budget, min gap, unusable state
	ExitFailed   = 2 // healing attempted and failed: unreachable, denied, busy, action failed
	ExitUsage    = 3
)

// Doer is the part of *protocol.Client the handler uses.
type Doer interface {
	Do(ctx context.Context, verb protocol.Verb, service string) (protocol.Reply, error)
}

// Deps are the handler's outside world, injected.
type Deps struct {
	Now   func() time.Time                                 // nil = time.Now
	Sleep func(ctx context.Context, d time.Duration) error // nil = a timer bounded by ctx
	Dial  func(protocol.ClientConfig) Doer                 // nil = protocol.NewClient
	Log   zerolog.Logger
}

func (d *Deps) defaults() {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Sleep == nil {
		d.Sleep = sleepCtx
	}
	if d.Dial == nil {
		d.Dial = func(c protocol.ClientConfig) Doer { return protocol.NewClient(c) }
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Conn says how to reach a worker_listener.
type Conn struct {
	Address string // host or IP (no port)
	Port    int
	Target  string // the service name on the listener
	Key     protocol.Key
	TLS     *tls.Config
}

// Addr is host:port, bracketing IPv6 literals.
func (c Conn) Addr() string { return net.JoinHostPort(c.Address, strconv.Itoa(c.Port)) }

// Config is one `handle_worker event` invocation.
type Config struct {
	Event       Event
	HostName    string // $HOSTNAME$: names the state file and the command-file lines
	ServiceDesc string // $SERVICEDESC$
	Conn        Conn
	Action      protocol.Verb
	StateDir    string
	Budget      Budget
	SoftAttempt int
	Deadline    time.Duration
	CommandFile string // "" = no feedback to Nagios
	Recheck     time.Duration
	DryRun      bool
}

// Defaults for the flags, documented in docs/event-handler.md.
const (
	DefaultDeadline = 20 * time.Second
	DefaultRecheck  = 2 * time.Second
	DefaultStateDir = "/var/lib/selfheal/handler"
)

// Result is what happened; main prints Line and exits with Code.
type Result struct {
	Code     int
	Line     string
	Decision Decision
	Verdict  *Verdict        // budget verdict when one was taken
	Reply    *protocol.Reply // the listener's reply, if any
	Attempts int             // requests made (transport retries included)
	Commands []Command       // written (or, in dry-run, that would be written)
	Err      error           // the failure behind a non-zero code
	Took     time.Duration   // time spent on the request
}

var errNoWrite = errors.New("no change")

// Run handles one event. It is bounded by cfg.Deadline (and ctx), writes
// the state only under its lock and atomically, and never panics on bad
// input: flags are validated by cmd/handle_worker before it is called.
func Run(ctx context.Context, cfg Config, deps Deps) Result {
	deps.defaults()
	start := deps.Now()
	ctx, cancel := context.WithTimeout(ctx, cfg.Deadline)
	defer cancel()
	store := Store{Dir: cfg.StateDir}
	ev := cfg.Event
	who := cfg.HostName + "/" + cfg.ServiceDesc
	prefix := fmt.Sprintf("%s %s: ", who, ev)
	log := deps.Log.With().Str("host", cfg.HostName).Str("service", cfg.ServiceDesc).
		Str("state", string(ev.State)).Str("state_type", string(ev.Type)).Int("attempt", ev.Attempt).
		Str("target", cfg.Conn.Target).Str("addr", cfg.Conn.Addr()).Bool("dry_run", cfg.DryRun).Logger()

	res := Result{}
	finish := func(level zerolog.Level, msg string) Result {
		res.Line = prefix + msg
		e := log.WithLevel(level).Int("exit", res.Code).Str("decision", res.Decision.Action.String()).
			Str("reason", res.Decision.Reason).Int("attempts", res.Attempts)
		if res.Verdict != nil {
			e = e.Int("budget_used", res.Verdict.Used).Int("budget_max", cfg.Budget.Max)
		}
		if res.Reply != nil {
			e = e.Str("outcome", string(res.Reply.Outcome)).Int("action_exit", res.Reply.ExitCode).
				Dur("action_duration", res.Reply.Duration)
		}
		if res.Err != nil {
			e = e.AnErr("error", res.Err)
		}
		e.Dur("elapsed", deps.Now().Sub(start)).Msg(msg)
		return res
	}

	// Non-CRITICAL events never restart. Only a recovery, or the first
	// SOFT problem of a new fault, touches the state: both end the episode
	// (the latter in case the OK call was missed).
	mayAct := ev.State == StateCritical && (ev.Type == Hard || cfg.SoftAttempt > 0 && ev.Attempt >= cfg.SoftAttempt)
	if !mayAct {
		res.Decision = Decide(ev, cfg.SoftAttempt, false)
		newFault := ev.State != StateOK && ev.Type == Soft && ev.Attempt == 1
		if res.Decision.Action != Close && !newFault {
			return finish(zerolog.InfoLevel, "no action: "+res.Decision.Reason)
		}
		if cfg.DryRun {
			return finish(zerolog.InfoLevel, "dry-run: no action: "+res.Decision.Reason)
		}
		err := store.Update(ctx, cfg.HostName, cfg.ServiceDesc, func(st *StateFile) error {
			if st.Episode == nil {
				return errNoWrite
			}
			st.Episode = nil
			return nil
		})
		if err != nil && !errors.Is(err, errNoWrite) {
			// Nothing needed healing, so this is not a failure of this
			// event; the next CRITICAL will fail closed on the same error.
			res.Err = err
			return finish(zerolog.ErrorLevel, "no action: "+res.Decision.Reason+"; but the handler state is unusable: "+oneLine(err.Error()))
		}
		return finish(zerolog.InfoLevel, "no action: "+res.Decision.Reason)
	}

	// CRITICAL that may call for a restart: decide and reserve under one
	// lock, so that two handlers racing cannot both restart.
	now := deps.Now()
	id := newID()
	var trigger string
	err := store.Update(ctx, cfg.HostName, cfg.ServiceDesc, func(st *StateFile) error {
		if ev.Type == Soft && ev.Attempt == 1 {
			st.Episode = nil // a new fault (--soft-attempt 1): any old episode has ended
		}
		restarted := st.Episode != nil && st.Episode.RestartedAt != nil && now.Sub(*st.Episode.RestartedAt) < cfg.Budget.Window
		res.Decision = Decide(ev, cfg.SoftAttempt, restarted)
		if res.Decision.Action != Restart {
			return errNoWrite
		}
		v := cfg.Budget.Check(st.Restarts, now)
		res.Verdict = &v
		if !v.Allowed || cfg.DryRun {
			return errNoWrite
		}
		trigger = ev.String()
		st.Restarts = append(cfg.Budget.prune(st.Restarts, now), Record{ID: id, At: now.UTC(), Source: "event",
			Verb: string(cfg.Action), Trigger: trigger, Outcome: RecordPending})
		if st.Episode == nil {
			st.Episode = &Episode{Opened: now.UTC()}
		}
		t := now.UTC()
		st.Episode.RestartedAt = &t
		return nil
	})
	if err != nil && !errors.Is(err, errNoWrite) {
		res.Code, res.Err = ExitWithheld, err
		res.Decision = Decide(ev, cfg.SoftAttempt, false)
		msg := "not restarting, failing closed: handler state unusable: " + oneLine(err.Error())
		if errors.Is(err, ErrStateCorrupt) {
			msg += " (inspect it, then delete it to re-arm auto-healing)"
		}
		res.Commands = []Command{AddSvcComment(cfg.HostName, cfg.ServiceDesc, true, author,
			"auto-healing suspended: "+msg+"; a human must look")}
		return finish(zerolog.ErrorLevel, msg+feedback(&res, cfg, deps.Now()))
	}
	switch res.Decision.Action {
	case AlreadyHandled:
		return finish(zerolog.InfoLevel, "no action: "+res.Decision.Reason)
	case Restart:
	default:
		return finish(zerolog.InfoLevel, "no action: "+res.Decision.Reason)
	}
	v := res.Verdict
	if !v.Allowed {
		res.Code = ExitWithheld
		res.Err = errors.New(v.Reason)
		var text string
		if v.Kind == "exhausted" {
			text = fmt.Sprintf("auto-healing suspended: %s; a human must look (budget frees up in %s)", v.Reason, roundDur(v.Wait))
		} else {
			text = fmt.Sprintf("auto-restart held back: %s; a human must look if it stays CRITICAL", v.Reason)
		}
		res.Commands = []Command{AddSvcComment(cfg.HostName, cfg.ServiceDesc, true, author, text)}
		return finish(zerolog.WarnLevel, "not restarting: "+text+feedback(&res, cfg, deps.Now()))
	}
	if cfg.DryRun {
		res.Commands = successCommands(cfg, deps.Now(), 0)
		return finish(zerolog.InfoLevel, fmt.Sprintf("dry-run: would send %s %s to %s (%s; budget %d/%d used in %s); would write %d command(s)",
			cfg.Action, cfg.Conn.Target, cfg.Conn.Addr(), res.Decision.Reason, v.Used, cfg.Budget.Max, cfg.Budget.Window, len(res.Commands)))
	}

	// Act. Keep a margin after the request for the state update and the
	// command file, so that everything ends before the deadline.
	actCtx, actCancel := context.WithDeadline(ctx, actDeadline(ctx, cfg.Deadline))
	defer actCancel()
	client := deps.Dial(protocol.ClientConfig{Addr: cfg.Conn.Addr(), Key: cfg.Conn.Key, TLS: cfg.Conn.TLS, Now: deps.Now})
	t0 := deps.Now()
	rep, attempts, callErr := call(actCtx, client, cfg.Action, cfg.Conn.Target, deps)
	res.Took = deps.Now().Sub(t0)
	res.Attempts = attempts
	ok := callErr == nil && rep.Outcome == protocol.OutcomeOK
	if callErr == nil {
		res.Reply = &rep
	}
	summary := describe(cfg.Action, cfg.Conn, rep, attempts, callErr, res.Took)
	outcome := RecordFailed
	if ok {
		outcome = RecordOK
	}
	if err := store.SetOutcome(ctx, cfg.HostName, cfg.ServiceDesc, id, outcome, summary); err != nil {
		// The pending record already counts; only its outcome is lost.
		log.Warn().AnErr("error", err).Msg("could not record the restart outcome")
	}
	if ok {
		res.Commands = successCommands(cfg, deps.Now(), res.Took)
		return finish(zerolog.InfoLevel, summary+feedback(&res, cfg, deps.Now()))
	}
	res.Code = ExitFailed
	if callErr != nil {
		res.Err = callErr
	} else {
		res.Err = fmt.Errorf("listener replied %s", rep.Outcome)
	}
	res.Commands = []Command{AddSvcComment(cfg.HostName, cfg.ServiceDesc, true, author,
		"auto-restart failed: "+summary+"; a human must look")}
	return finish(zerolog.ErrorLevel, summary+feedback(&res, cfg, deps.Now()))
}

const author = "handle_worker"

func successCommands(cfg Config, now time.Time, took time.Duration) []Command {
	return []Command{
		AddSvcComment(cfg.HostName, cfg.ServiceDesc, false, author,
			fmt.Sprintf("auto-restart ok in %s (%s %s via %s after %s)", roundDur(took), cfg.Action, cfg.Conn.Target, cfg.Conn.Addr(), cfg.Event)),
		ScheduleForcedSvcCheck(cfg.HostName, cfg.ServiceDesc, now.Add(cfg.Recheck)),
	}
}

// feedback writes res.Commands to the command file (unless dry-run) and
// returns a suffix for the human line when that failed. Feedback is best
// effort: it never changes whether healing happened.
func feedback(res *Result, cfg Config, now time.Time) string {
	if cfg.CommandFile == "" || len(res.Commands) == 0 {
		return ""
	}
	if cfg.DryRun {
		return ""
	}
	if err := (CommandFile{Path: cfg.CommandFile}).Write(now, res.Commands...); err != nil {
		return "; Nagios not told: " + oneLine(err.Error())
	}
	return ""
}

// actDeadline leaves a tenth of the deadline (at least 300ms, at most 2s)
// for recording the outcome and writing the command file.
func actDeadline(ctx context.Context, total time.Duration) time.Time {
	dl, _ := ctx.Deadline()
	margin := min(max(total/10, 300*time.Millisecond), 2*time.Second)
	return dl.Add(-margin)
}

// Backoff between transport retries: 250ms doubling to 4s, and no new
// attempt when less than minAttempt is left.
const (
	firstBackoff = 250 * time.Millisecond
	maxBackoff   = 4 * time.Second
	minAttempt   = 200 * time.Millisecond
)

// call sends verb with bounded retries. Only transport errors are retried
// (the protocol says they are retryable); any reply, even "failed" or
// "busy", ends the loop: retrying a restart that ran would restart twice.
func call(ctx context.Context, c Doer, verb protocol.Verb, target string, deps Deps) (protocol.Reply, int, error) {
	backoff := firstBackoff
	var errs []string
	for n := 1; ; n++ {
		rep, err := c.Do(ctx, verb, target)
		if err == nil {
			return rep, n, nil
		}
		errs = append(errs, oneLine(err.Error()))
		// The last pause is shortened so that one more attempt still fits.
		dl, _ := ctx.Deadline()
		pause := min(backoff, time.Until(dl)-minAttempt)
		if ctx.Err() != nil || pause < firstBackoff/5 {
			return protocol.Reply{}, n, fmt.Errorf("%d attempt(s), last: %s", n, errs[len(errs)-1])
		}
		if deps.Sleep(ctx, pause) != nil {
			return protocol.Reply{}, n, fmt.Errorf("%d attempt(s), last: %s", n, errs[len(errs)-1])
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// describe is the one human sentence for a request's result.
func describe(verb protocol.Verb, c Conn, rep protocol.Reply, attempts int, err error, took time.Duration) string {
	if err != nil {
		return fmt.Sprintf("%s %s: listener %s unreachable (%s)", verb, c.Target, c.Addr(), err)
	}
	s := fmt.Sprintf("%s %s on %s: %s", verb, c.Target, c.Addr(), rep.Outcome)
	switch rep.Outcome {
	case protocol.OutcomeOK:
		s = fmt.Sprintf("%s %s on %s ok in %s", verb, c.Target, c.Addr(), roundDur(took))
	case protocol.OutcomeFailed:
		s += fmt.Sprintf(" (action exit %d after %s)", rep.ExitCode, roundDur(rep.Duration))
	case protocol.OutcomeTimeout:
		s += fmt.Sprintf(" (action killed after %s)", roundDur(rep.Duration))
	case protocol.OutcomeDenied:
		s += " (wrong key, address not allowed, or service/action not configured: see the listener's audit log)"
	case protocol.OutcomeBusy:
		s += " (another action on this service is running)"
	case protocol.OutcomeRateLimited:
		s += " (the listener refuses more requests for now)"
	}
	if attempts > 1 {
		s += fmt.Sprintf(" after %d attempts", attempts)
	}
	if out := firstLine(rep.Output); out != "" && rep.Outcome != protocol.OutcomeOK {
		s += ": " + out
	}
	return s
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200]
	}
	return oneLine(s)
}

// oneLine keeps the human line a single Nagios-safe line.
func oneLine(s string) string {
	s = strings.NewReplacer("\r", " ", "\n", " ", "|", "/").Replace(s)
	return strings.TrimSpace(s)
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	default:
		return d.Round(time.Millisecond)
	}
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
