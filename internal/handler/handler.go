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
}

// errNoWrite ends a Store.Update callback without writing the state.
var errNoWrite = errors.New("no change")

// Run handles one event: decide, reserve, act, report. It is bounded by
// cfg.Deadline (and ctx), writes the state only under its lock and
// atomically, and never panics on bad input: flags are validated by
// cmd/handle_worker before it is called.
func Run(ctx context.Context, cfg Config, deps Deps) Result {
	deps.defaults()
	r := newRun(cfg, deps)
	ctx, cancel := context.WithTimeout(ctx, cfg.Deadline)
	defer cancel()

	// Decide on the event alone: most events never need the budget state.
	r.res.Decision = Decide(cfg.Event, cfg.SoftAttempt, false)
	if r.res.Decision.Action != Restart {
		return r.report(r.settle(ctx))
	}
	id, err := r.reserve(ctx)
	switch {
	case err != nil:
		return r.report(r.failClosed(err))
	case r.res.Decision.Action != Restart: // the episode already had its restart
		return r.report(zerolog.InfoLevel, "no action: "+r.res.Decision.Reason)
	case !r.res.Verdict.Allowed:
		return r.report(r.withhold())
	case cfg.DryRun:
		return r.report(r.dryRun())
	}
	return r.report(r.act(ctx, id))
}

// run is one Run: its inputs and the Result as it fills in.
type run struct {
	cfg   Config
	deps  Deps
	store Store
	log   zerolog.Logger
	start time.Time
	res   Result
}

func newRun(cfg Config, deps Deps) *run {
	ev := cfg.Event
	return &run{cfg: cfg, deps: deps, store: Store{Dir: cfg.StateDir}, start: deps.Now(),
		log: deps.Log.With().Str("host", cfg.HostName).Str("service", cfg.ServiceDesc).
			Str("state", ev.State.String()).Str("state_type", string(ev.Type)).Int("attempt", ev.Attempt).
			Str("target", cfg.Conn.Target).Str("addr", cfg.Conn.Addr()).Bool("dry_run", cfg.DryRun).Logger()}
}

// settle handles an event that calls for no restart. Only a recovery, or
// the first SOFT problem of a new fault, touches the state: both end the
// episode (the latter in case the OK call was missed).
func (r *run) settle(ctx context.Context) (zerolog.Level, string) {
	msg := "no action: " + r.res.Decision.Reason
	if r.res.Decision.Action != Close && !newFault(r.cfg.Event) {
		return zerolog.InfoLevel, msg
	}
	if r.cfg.DryRun {
		return zerolog.InfoLevel, "dry-run: " + msg
	}
	err := r.store.Update(ctx, r.cfg.HostName, r.cfg.ServiceDesc, func(st *StateFile) error {
		if st.Episode == nil {
			return errNoWrite
		}
		st.Episode = nil
		return nil
	})
	if err != nil && !errors.Is(err, errNoWrite) {
		// Nothing needed healing, so this is not a failure of this
		// event; the next CRITICAL will fail closed on the same error.
		r.res.Err = err
		return zerolog.ErrorLevel, msg + "; but the handler state is unusable: " + oneLine(err.Error())
	}
	return zerolog.InfoLevel, msg
}

// reserve decides again with the episode, checks the budget and, when the
// restart goes ahead (and this is no dry run), writes it as a pending
// record, all under one lock: two handlers racing cannot both restart. It
// returns the record's id, and an error only when the state is unusable.
func (r *run) reserve(ctx context.Context) (string, error) {
	cfg, ev := r.cfg, r.cfg.Event
	now := r.deps.Now()
	id := newID()
	err := r.store.Update(ctx, cfg.HostName, cfg.ServiceDesc, func(st *StateFile) error {
		if newFault(ev) {
			st.Episode = nil // --soft-attempt 1: any old episode has ended
		}
		restarted := st.Episode != nil && st.Episode.RestartedAt != nil && now.Sub(*st.Episode.RestartedAt) < cfg.Budget.Window
		r.res.Decision = Decide(ev, cfg.SoftAttempt, restarted)
		if r.res.Decision.Action != Restart {
			return errNoWrite
		}
		v := cfg.Budget.Check(st.Restarts, now)
		r.res.Verdict = &v
		if !v.Allowed || cfg.DryRun {
			return errNoWrite
		}
		st.Restarts = append(cfg.Budget.prune(st.Restarts, now), Record{ID: id, At: now.UTC(), Source: "event",
			Verb: string(cfg.Action), Trigger: ev.String(), Outcome: RecordPending})
		if st.Episode == nil {
			st.Episode = &Episode{Opened: now.UTC()}
		}
		t := now.UTC()
		st.Episode.RestartedAt = &t
		return nil
	})
	if errors.Is(err, errNoWrite) {
		err = nil
	}
	return id, err
}

// failClosed: healing is needed but the state cannot be trusted, so no
// restart, and Nagios is told.
func (r *run) failClosed(err error) (zerolog.Level, string) {
	r.res.Code, r.res.Err = ExitWithheld, err
	msg := "not restarting, failing closed: handler state unusable: " + oneLine(err.Error())
	if errors.Is(err, ErrStateCorrupt) {
		msg += " (inspect it, then delete it to re-arm auto-healing)"
	}
	r.res.Commands = []Command{r.comment(true, "auto-healing suspended: "+msg+"; a human must look")}
	return zerolog.ErrorLevel, msg + r.feedback()
}

// withhold: the budget refused the restart.
func (r *run) withhold() (zerolog.Level, string) {
	v := r.res.Verdict
	r.res.Code, r.res.Err = ExitWithheld, errors.New(v.Reason)
	text := fmt.Sprintf("auto-restart held back: %s; a human must look if it stays CRITICAL", v.Reason)
	if v.Kind == "exhausted" {
		text = fmt.Sprintf("auto-healing suspended: %s; a human must look (budget frees up in %s)", v.Reason, roundDur(v.Wait))
	}
	r.res.Commands = []Command{r.comment(true, text)}
	return zerolog.WarnLevel, "not restarting: " + text + r.feedback()
}

func (r *run) dryRun() (zerolog.Level, string) {
	cfg := r.cfg
	r.res.Commands = r.successCommands(r.deps.Now(), 0)
	return zerolog.InfoLevel, fmt.Sprintf("dry-run: would send %s %s to %s (%s; budget %d/%d used in %s); would write %d command(s)",
		cfg.Action, cfg.Conn.Target, cfg.Conn.Addr(), r.res.Decision.Reason, r.res.Verdict.Used, cfg.Budget.Max, cfg.Budget.Window, len(r.res.Commands))
}

// act sends the reserved restart and settles its pending record.
func (r *run) act(ctx context.Context, id string) (zerolog.Level, string) {
	cfg := r.cfg
	x := request(ctx, cfg.Deadline, cfg.Action, cfg.Conn, r.deps)
	r.res.Attempts, r.res.Reply = x.attempts, x.reply()
	if err := r.store.SetOutcome(ctx, cfg.HostName, cfg.ServiceDesc, id, x.record(), x.summary); err != nil {
		// The pending record already counts; only its outcome is lost.
		r.log.Warn().AnErr("error", err).Msg("could not record the restart outcome")
	}
	if x.ok() {
		r.res.Commands = r.successCommands(r.deps.Now(), x.took)
		return zerolog.InfoLevel, x.summary + r.feedback()
	}
	r.res.Code, r.res.Err = ExitFailed, x.failure()
	r.res.Commands = []Command{r.comment(true, "auto-restart failed: "+x.summary+"; a human must look")}
	return zerolog.ErrorLevel, x.summary + r.feedback()
}

// report logs the one JSON line of the run and returns the Result, its
// human line prefixed with who and what the event was.
func (r *run) report(level zerolog.Level, msg string) Result {
	res, cfg := r.res, r.cfg
	res.Line = fmt.Sprintf("%s/%s %s: ", cfg.HostName, cfg.ServiceDesc, cfg.Event) + msg
	e := r.log.WithLevel(level).Int("exit", res.Code).Str("decision", res.Decision.Action.String()).
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
	e.Dur("elapsed", r.deps.Now().Sub(r.start)).Msg(msg)
	return res
}

// Author signs the handler's Nagios comments.
const Author = "handle_worker"

func (r *run) comment(persistent bool, text string) Command {
	return AddSvcComment(r.cfg.HostName, r.cfg.ServiceDesc, persistent, Author, text)
}

func (r *run) successCommands(now time.Time, took time.Duration) []Command {
	cfg := r.cfg
	return []Command{
		r.comment(false, fmt.Sprintf("auto-restart ok in %s (%s %s via %s after %s)", roundDur(took), cfg.Action, cfg.Conn.Target, cfg.Conn.Addr(), cfg.Event)),
		ScheduleForcedSvcCheck(cfg.HostName, cfg.ServiceDesc, now.Add(cfg.Recheck)),
	}
}

// feedback writes res.Commands to the command file (unless dry-run) and
// returns a suffix for the human line when that failed. Feedback is best
// effort: it never changes whether healing happened.
func (r *run) feedback() string {
	if r.cfg.CommandFile == "" || len(r.res.Commands) == 0 || r.cfg.DryRun {
		return ""
	}
	if err := (CommandFile{Path: r.cfg.CommandFile}).Write(r.deps.Now(), r.res.Commands...); err != nil {
		return "; Nagios not told: " + oneLine(err.Error())
	}
	return ""
}

// exchange is one request to the listener, retries included.
type exchange struct {
	rep      protocol.Reply // zero when err is set
	attempts int
	err      error // transport failure after the last retry
	took     time.Duration
	summary  string // the human sentence, from describe
}

// request sends verb within deadline's act share: a margin is kept after
// it for recording the outcome and writing the command file, so that
// everything ends before the deadline.
func request(ctx context.Context, deadline time.Duration, verb protocol.Verb, c Conn, deps Deps) exchange {
	actCtx, cancel := context.WithDeadline(ctx, actDeadline(ctx, deadline))
	defer cancel()
	client := deps.Dial(protocol.ClientConfig{Addr: c.Addr(), Key: c.Key, TLS: c.TLS, Now: deps.Now})
	t0 := deps.Now()
	rep, attempts, err := call(actCtx, client, verb, c.Target, deps)
	took := deps.Now().Sub(t0)
	return exchange{rep: rep, attempts: attempts, err: err, took: took, summary: describe(verb, c, rep, attempts, err, took)}
}

func (x exchange) ok() bool { return x.err == nil && x.rep.Outcome == protocol.OutcomeOK }

// reply is the listener's reply, nil when none came.
func (x exchange) reply() *protocol.Reply {
	if x.err != nil {
		return nil
	}
	return &x.rep
}

// record is the budget record's outcome for this request.
func (x exchange) record() string {
	if x.ok() {
		return RecordOK
	}
	return RecordFailed
}

// failure is the error behind a request that did not succeed.
func (x exchange) failure() error {
	if x.err != nil {
		return x.err
	}
	return fmt.Errorf("listener replied %s", x.rep.Outcome)
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
