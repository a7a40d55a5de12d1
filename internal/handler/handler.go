// Package handler is handle_worker's core: the policy that decides whether
// a Nagios/Icinga state change calls for asking the worker host's agent
// for a restart, the request (retried, same fault) to worker_listener, the
// honest account of its answer, the advisory record of that answer in the
// state directory, and the feedback written to Nagios' command file. The
// agent is the authority: it runs at most one restart per fault and keeps
// the restart budget, so the handler keeps no budget of its own.
// docs/event-handler.md describes the behaviour; Run and Send never exit,
// print or use globals.
package handler

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/nodestate"
	"github.com/selfheal/selfheal/internal/protocol"
	"github.com/selfheal/selfheal/internal/textsafe"
)

// Exit codes. 0-2 say whether healing happened; 3 is a usage error.
const (
	ExitOK       = 0 // healed (now or already, for this fault), or nothing to do
	ExitWithheld = 1 // healing needed but withheld: the agent's restart budget is spent
	ExitFailed   = 2 // healing attempted and failed or unconfirmed: unreachable, no reply, denied, skew, action failed
	ExitUsage    = 3
)

// Doer is the part of *protocol.Client the handler uses: Send, the
// extended form, which tells the agent when the fault began and brings
// back its note and the age of a recorded answer; Do, the short form, for
// an agent older than the extended form (see call).
type Doer interface {
	Send(ctx context.Context, c protocol.Call) (protocol.Reply, error)
	Do(ctx context.Context, verb protocol.Verb, service, fault string) (protocol.Reply, error)
}

// Deps are the handler's outside world, injected.
type Deps struct {
	Now   func() time.Time                                 // nil = time.Now
	Sleep func(ctx context.Context, d time.Duration) error // nil = a timer bounded by ctx
	Rand  func() float64                                   // [0, 1) for the backoff's jitter; nil = math/rand/v2
	Dial  func(protocol.ClientConfig) (Doer, error)        // nil = protocol.NewClient
	Log   zerolog.Logger
}

func (d *Deps) defaults() {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Sleep == nil {
		d.Sleep = sleepCtx
	}
	if d.Rand == nil {
		d.Rand = rand.Float64
	}
	if d.Dial == nil {
		d.Dial = func(c protocol.ClientConfig) (Doer, error) { return protocol.NewClient(c) }
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
	// Agent is the agent's name: requests are signed for it alone, and a
	// reply from any other agent is refused.
	Agent  string
	Target string       // the service name on the listener
	Key    protocol.Key // the fleet key, or the agent's own host key
	TLS    *tls.Config
}

// Addr is host:port, bracketing IPv6 literals.
func (c Conn) Addr() string { return net.JoinHostPort(c.Address, strconv.Itoa(c.Port)) }

// Config is one `handle_worker event` invocation.
type Config struct {
	Event Event
	// Fault names the fault ("-": none): Nagios' $SERVICEPROBLEMID$,
	// Icinga 2's $service.last_state_change$. The agent runs one restart
	// per fault and answers every later request for it from its record.
	Fault string
	// FaultSince is when the fault began (Nagios' $LASTSERVICESTATECHANGE$,
	// Icinga 2's $service.last_state_change$); zero: not known. With it the
	// agent tells a new crash inside its min_gap from a duplicate.
	FaultSince  time.Time
	HostName    string // $HOSTNAME$: names the record and the command-file lines
	ServiceDesc string // $SERVICEDESC$
	Conn        Conn
	Action      protocol.Verb
	StateDir    string // the advisory records; "" keeps none
	// Trust is whose StateDir must be (the user the handler runs as, see
	// Store); the zero value is root's.
	Trust       fsutil.Trust
	SoftAttempt int
	Deadline    time.Duration
	CommandFile string // "" = no feedback to Nagios
	Recheck     time.Duration
	DryRun      bool
	// Facts are the engine's other macros (downtime, host state, ack,
	// perfdata, status.dat); Judgment says which rules apply.
	Facts    Facts
	Judgment Judgment
	// Source names the record's origin: "event" (default) or "reevaluate".
	Source string
	// Engine reads the engine's view (when Facts has no status) and takes
	// the write-back; nil writes to CommandFile.
	Engine Engine
}

// Result is what happened; main prints Line and exits with Code.
type Result struct {
	Code     int
	Line     string
	Decision Decision
	Verdict  string          // the answer's kind (see Record.Result), or "held"; "" when nothing was asked
	Hold     *Hold           // why a needed restart was held back
	Reply    *protocol.Reply // the agent's final reply, if any
	Attempts int             // requests made (retries included)
	Commands []Command       // written (or, in dry-run, that would be written)
	Err      error           // the failure behind a non-zero code
	// AgentOld: the agent denied the extended request form and answered
	// the short one: it is older than the extended form.
	AgentOld bool
}

// Run handles one event: decide, ask the agent, say what it answered. It
// is bounded by cfg.Deadline (and ctx) and never panics on bad input:
// flags are validated by cmd/handle_worker before it is called.
func Run(ctx context.Context, cfg Config, deps Deps) Result {
	deps.defaults()
	if cfg.Fault == "" {
		cfg.Fault = "-"
	}
	if cfg.Source == "" {
		cfg.Source = "event"
	}
	r := newRun(cfg, deps)
	ctx, cancel := context.WithTimeout(ctx, cfg.Deadline)
	defer cancel()
	r.readPrev()

	r.res.Decision = Decide(cfg.Event, cfg.SoftAttempt)
	switch {
	case r.res.Decision.Action != Restart:
		if cfg.Event.State == nagios.OK {
			r.recovered(ctx)
		}
		return r.report(zerolog.InfoLevel, "no action: "+r.res.Decision.Reason)
	}
	if h := r.hold(ctx); h != nil {
		return r.report(r.held(ctx, h))
	}
	if cfg.DryRun {
		return r.report(r.dryRun(ctx))
	}
	return r.report(r.act(ctx))
}

// run is one Run: its inputs and the Result as it fills in.
type run struct {
	cfg       Config
	deps      Deps
	log       zerolog.Logger
	start     time.Time
	res       Result
	recordErr error             // the record could not be written (never a failure)
	prev      *nodestate.Record // the record before this run, if readable
	notes     []string
	// statusSeen: the Nagios comments were found in a status.dat written
	// then (see live).
	statusSeen time.Time
}

func newRun(cfg Config, deps Deps) *run {
	ev := cfg.Event
	return &run{cfg: cfg, deps: deps, start: deps.Now(),
		log: deps.Log.With().Str("host", cfg.HostName).Str("service", cfg.ServiceDesc).
			Str("state", ev.State.String()).Str("state_type", string(ev.Type)).Int("attempt", ev.Attempt).
			Str("agent", cfg.Conn.Agent).Str("fault", cfg.Fault).Time("fault_since", cfg.FaultSince).
			Str("target", cfg.Conn.Target).Str("addr", cfg.Conn.Addr()).Str("source", cfg.Source).Bool("dry_run", cfg.DryRun).Logger()}
}

// dryRun asks the agent what it would answer to the restart now (the
// query verb: signed, nothing changes at the agent but its nonce cache)
// and says what would be sent and written, with the last answer recorded
// here.
func (r *run) dryRun(ctx context.Context) (zerolog.Level, string) {
	cfg := r.cfg
	last := "no earlier answer recorded here"
	if cfg.StateDir != "" {
		rec, err := nodestate.Store{Dir: cfg.StateDir, Trust: cfg.Trust}.Read(cfg.HostName, cfg.ServiceDesc)
		switch {
		case err != nil:
			last = "the record of earlier answers is unreadable: " + textsafe.OneLine(err.Error())
		case rec != nil:
			last = "the agent's last answer here, " + roundDur(r.deps.Now().Sub(rec.At)).String() + " ago: " + rec.Result
			if rec.Outcome != "" {
				last += " (" + rec.Outcome + ", " + rec.Origin + ")"
			}
			if b := rec.Budget; b != nil {
				last += fmt.Sprintf(", budget %d/%d per %s", b.Used, b.Max, time.Duration(b.WindowS)*time.Second)
			}
		}
	}
	predict := "the agent's judgment applies to restart only: it would run " + string(cfg.Action)
	r.res.Commands = r.okCommands(answer{kind: kindHealed, verb: cfg.Action, conn: cfg.Conn})
	if cfg.Action == protocol.VerbRestart {
		q := protocol.Call{Verb: protocol.VerbQuery, Service: cfg.Conn.Target, Fault: cfg.Fault, Since: cfg.FaultSince}
		a, err := request(ctx, cfg.Deadline, q, cfg.Conn, r.deps)
		if err != nil {
			r.res.Code, r.res.Err = ExitUsage, err
			return zerolog.ErrorLevel, "dry-run: handle_worker configuration error: " + textsafe.OneLine(err.Error())
		}
		r.res.Attempts, r.res.Reply, r.res.AgentOld = a.attempts, a.reply(), a.old
		a.verb = cfg.Action
		predict, r.res.Commands = r.prediction(a)
	}
	return zerolog.InfoLevel, fmt.Sprintf("dry-run: would send %s %s to %s (agent %s, fault %s%s; %s); %s; %s; would write %d command(s)",
		cfg.Action, cfg.Conn.Target, cfg.Conn.Addr(), cfg.Conn.Agent, cfg.Fault, sinceText(cfg.FaultSince), r.res.Decision.Reason,
		predict, last, len(r.res.Commands))
}

// prediction reads the agent's answer to a query: what a restart would
// get now, and the comments it would bring.
func (r *run) prediction(q answer) (string, []Command) {
	rep := q.rep
	note := textsafe.OneLine(rep.Note)
	switch {
	case q.final && rep.Outcome == protocol.OutcomeOK && rep.Origin == protocol.OriginNone:
		a := answer{kind: kindHealed, verb: q.verb, conn: q.conn, exchange: exchange{rep: rep}}
		return orText(prefixed("the agent says: ", note), "the agent would run it now"), r.okCommands(a)
	case q.final && (rep.Origin == protocol.OriginRecorded || rep.Origin == protocol.OriginJoined):
		a := q
		a.kind = kindAlready
		if rep.Outcome != protocol.OutcomeOK {
			a.kind = string(rep.Outcome)
			return "the agent would not run it again, and answer " + string(rep.Outcome) + " from its record: " + a.summary(),
				[]Command{r.comment(true, "auto-restart failed: "+a.summary()+"; a human must look")}
		}
		return "the agent would not run it again: " + a.summary(), r.okCommands(a)
	case q.final && (rep.Outcome == protocol.OutcomeBackoff || rep.Outcome == protocol.OutcomeBreaker || rep.Outcome == protocol.OutcomeSpent):
		a := q
		a.kind = q.classify()
		h := deferral(a)
		return "the agent would hold it: " + a.summary(), []Command{r.comment(h.persistent, h.Text+h.tail)}
	case q.final && rep.Outcome == protocol.OutcomeDenied && rep.Signed():
		// The restart would be refused as this query was (the trust rule).
		a := q
		a.kind = string(protocol.OutcomeDenied)
		return "the agent would refuse it: " + a.summary(), []Command{r.comment(true, "auto-restart failed: "+a.summary()+"; a human must look")}
	case q.final && rep.Outcome == protocol.OutcomeDenied, q.refusal == protocol.OutcomeDenied:
		return "the agent refused the query (denied: wrong key or agent name, address not allowed, the service has no restart action, " +
			"or an agent older than the query verb: see its audit log)", nil
	}
	return "the agent's answer is unknown: " + q.summary(), nil
}

// sinceText names when the fault began, for a line.
func sinceText(t time.Time) string {
	if t.IsZero() {
		return ", began: not given"
	}
	return ", began " + t.UTC().Format(time.RFC3339)
}

// act asks the agent, records its answer and tells Nagios.
func (r *run) act(ctx context.Context) (zerolog.Level, string) {
	cfg := r.cfg
	q := protocol.Call{Verb: cfg.Action, Service: cfg.Conn.Target, Fault: cfg.Fault, Since: cfg.FaultSince}
	a, err := request(ctx, cfg.Deadline, q, cfg.Conn, r.deps)
	if err != nil {
		// Only a key that cannot sign for this agent gets here (main
		// checks it first): a configuration error, fail closed.
		r.res.Code, r.res.Err = ExitUsage, err
		msg := "auto-healing impossible: handle_worker configuration error: " + textsafe.OneLine(err.Error())
		r.res.Commands = []Command{r.comment(true, msg+"; a human must look")}
		return zerolog.ErrorLevel, msg + r.feedback(ctx, nil)
	}
	r.res.Attempts, r.res.Reply, r.res.Verdict, r.res.AgentOld = a.attempts, a.reply(), a.kind, a.old
	summary := a.summary()
	switch a.code() {
	case ExitOK:
		r.res.Commands = r.okCommands(a)
		return zerolog.InfoLevel, summary + r.feedback(ctx, &a)
	case ExitWithheld:
		// The agent holds it (budget, back-off, breaker): reevaluate asks
		// again once it said it may run, as long as the fault lasts.
		r.res.Code, r.res.Err = ExitWithheld, a.failure()
		d := deferral(a)
		r.res.Hold = &d.Hold
		r.res.Commands = []Command{r.comment(d.persistent, d.Text+d.tail)}
		return zerolog.WarnLevel, summary + d.tail + r.feedback(ctx, &a)
	}
	r.res.Code, r.res.Err = ExitFailed, a.failure()
	prefix, tail := "auto-restart failed: ", "; a human must look"
	if a.kind == kindNoReply {
		prefix = "auto-restart unconfirmed: "
	}
	if a.kind == kindUnreachable {
		r.res.Hold = r.unreachableHold(a, prefix+summary)
		tail += " (asked again by reevaluate from " + r.res.Hold.RetryAt.UTC().Format(time.RFC3339) + ", while the fault lasts)"
	}
	r.res.Commands = []Command{r.comment(true, prefix+summary+tail)}
	return zerolog.ErrorLevel, summary + r.feedback(ctx, &a)
}

// deferred is the hold an answer that withholds the restart calls for,
// and how its comment reads.
type deferred struct {
	Hold
	persistent bool
	tail       string
}

// deferral: the agent holds it (budget, back-off, the gap after a
// restart, breaker): reevaluate asks again once it said it may run, as
// long as the fault lasts.
func deferral(a answer) deferred {
	summary := a.summary()
	d := deferred{Hold: Hold{Rule: a.kind, Text: "auto-healing deferred (" + a.kind + "): " + summary, RetryAt: a.now.Add(a.rep.Budget.RetryAfter)},
		tail: "; asked again when the agent allows it, while the fault lasts"}
	if a.kind == kindSpent {
		d.Text = "auto-healing suspended: " + summary
		d.persistent, d.tail = true, "; a human must look (asked again when the budget frees up, while the fault lasts)"
	}
	return d
}

// ask is how this run reached the agent, for reevaluate.
func (r *run) ask() nodestate.Ask {
	c := r.cfg.Conn
	return nodestate.Ask{Address: c.Address, Port: c.Port, Agent: c.Agent, Target: c.Target, Action: string(r.cfg.Action),
		RecheckMS: r.cfg.Recheck.Milliseconds()}
}

// writeRecord keeps the agent's answer in the state directory. It is
// advisory: an error is returned to be logged, and changes nothing else.
func writeRecord(ctx context.Context, store nodestate.Store, host, service, source string, a answer, now time.Time) error {
	return store.Write(ctx, newRecord(host, service, source, a, now))
}

func newRecord(host, service, source string, a answer, now time.Time) nodestate.Record {
	rec := nodestate.Record{Host: host, Service: service, At: now.UTC(), Source: source, Verb: string(a.verb),
		Agent: a.conn.Agent, Fault: a.fault, Result: a.kind, Attempts: a.attempts, Summary: a.summary()}
	if a.final {
		rec.Outcome, rec.Origin, rec.Budget = string(a.rep.Outcome), string(a.rep.Origin), nodestate.NewRecordBudget(a.rep.Budget)
	}
	return rec
}

// report logs the one JSON line of the run and returns the Result, its
// human line prefixed with who and what the event was.
func (r *run) report(level zerolog.Level, msg string) Result {
	res, cfg := r.res, r.cfg
	res.Line = fmt.Sprintf("%s/%s %s: ", cfg.HostName, cfg.ServiceDesc, cfg.Event) + msg
	e := r.log.WithLevel(level).Int("exit", res.Code).Str("decision", res.Decision.Action.String()).
		Str("reason", res.Decision.Reason).Int("attempts", res.Attempts)
	if res.Verdict != "" {
		e = e.Str("result", res.Verdict)
	}
	if res.Hold != nil {
		e = e.Str("held", res.Hold.Rule)
	}
	for _, n := range r.notes {
		e = e.Str("note", n)
	}
	if res.AgentOld {
		e = e.Bool("agent_old", true)
	}
	e = logReply(e, res.Reply)
	if r.recordErr != nil {
		e = e.Str("record_error", r.recordErr.Error())
	}
	if res.Err != nil {
		e = e.AnErr("error", res.Err)
	}
	e.Float64("elapsed_ms", float64(r.deps.Now().Sub(r.start).Microseconds())/1000).Msg(msg)
	return res
}

// logReply adds the agent's reply to a log line.
func logReply(e *zerolog.Event, rep *protocol.Reply) *zerolog.Event {
	if rep == nil {
		return e
	}
	e = e.Str("outcome", string(rep.Outcome)).Str("origin", string(rep.Origin)).Int("action_exit", rep.ExitCode).
		Dur("action_duration", rep.Duration)
	if b := rep.Budget; b.Max > 0 {
		e = e.Int("budget_used", b.Used).Int("budget_max", b.Max).Int64("budget_window_s", int64(b.Window/time.Second)).
			Int64("retry_after_s", int64(b.RetryAfter/time.Second))
	}
	if !rep.AgentTime.IsZero() {
		e = e.Time("agent_time", rep.AgentTime)
	}
	if rep.Extended && (rep.Origin == protocol.OriginRecorded || rep.Origin == protocol.OriginJoined) {
		e = e.Int64("record_age_s", int64(rep.Age/time.Second))
	}
	if rep.Note != "" {
		e = e.Str("agent_note", textsafe.OneLine(rep.Note))
	}
	if rep.Outcome == protocol.OutcomeDenied && rep.Signed() && rep.Output != "" {
		e = e.Str("agent_output", textsafe.OneLine(rep.Output))
	}
	return e
}

// Author signs the handler's Nagios comments.
const Author = "handle_worker"

func (r *run) comment(persistent bool, text string) Command {
	return AddSvcComment(r.cfg.HostName, r.cfg.ServiceDesc, persistent, Author, text)
}

// okCommands: a routine comment and a forced re-check that confirms the
// recovery without waiting for the next retry interval.
func (r *run) okCommands(a answer) []Command {
	cfg := r.cfg
	via := fmt.Sprintf("%s %s via %s after %s", cfg.Action, cfg.Conn.Target, cfg.Conn.Addr(), cfg.Event)
	if cfg.Source != "event" {
		via += " (" + cfg.Source + ")"
	}
	if b := budgetText(a.rep.Budget); b != "" {
		via += "; budget " + b
	}
	text := fmt.Sprintf("auto-restart ok in %s (%s)", roundDur(a.took), via)
	if a.kind == kindAlready {
		text = "auto-restart ok: " + a.alreadyText() + " (" + via + ")"
	}
	return []Command{r.comment(false, text), ScheduleForcedSvcCheck(cfg.HostName, cfg.ServiceDesc, r.deps.Now().Add(cfg.Recheck))}
}

// request sends verb within deadline's act share: a margin is kept after
// it for recording the answer and writing the command file, so that
// everything ends before the deadline. err is set only when no client
// could be made (the key cannot sign for the agent).
func request(ctx context.Context, deadline time.Duration, q protocol.Call, c Conn, deps Deps) (answer, error) {
	actCtx, cancel := context.WithDeadline(ctx, actDeadline(ctx, deadline))
	defer cancel()
	client, err := deps.Dial(protocol.ClientConfig{Addr: c.Addr(), Key: c.Key, Agent: c.Agent, TLS: c.TLS, Now: deps.Now})
	if err != nil {
		return answer{}, err
	}
	q.Service = c.Target
	a := answer{exchange: call(actCtx, client, q, deps), verb: q.Verb, fault: q.Fault, conn: c}
	a.now = deps.Now()
	a.kind = a.classify()
	return a, nil
}

// actDeadline leaves a tenth of the deadline (at least 300ms, at most 2s,
// and never more than half of what is left when ctx ends sooner) for
// recording the answer and writing the command file.
func actDeadline(ctx context.Context, total time.Duration) time.Time {
	dl, _ := ctx.Deadline()
	margin := min(max(total/10, 300*time.Millisecond), 2*time.Second, time.Until(dl)/2)
	return dl.Add(-margin)
}

// The kinds of answer (Result.Verdict, Record.Result, the log's "result").
// The agent's own outcomes are used as they are: failed, timeout, denied,
// skew, busy, rate-limited.
const (
	kindHealed      = "healed"      // ok, this request ran it
	kindAlready     = "already"     // ok, the agent answered from its record
	kindSpent       = "spent"       // the agent's restart budget is spent
	kindNoReply     = "no-reply"    // sent, no valid reply: it may have run
	kindUnreachable = "unreachable" // never reached the agent
	kindError       = "error"       // the request could not be made
)

// answer is an exchange and what it means.
type answer struct {
	exchange
	verb  protocol.Verb
	fault string
	conn  Conn
	now   time.Time // when the exchange ended, on the handler's clock
	kind  string
}

func (a answer) classify() string {
	switch {
	case a.final && a.rep.Outcome == protocol.OutcomeOK && (a.rep.Origin == protocol.OriginRecorded || a.rep.Origin == protocol.OriginJoined):
		return kindAlready
	case a.final && a.rep.Outcome == protocol.OutcomeOK:
		return kindHealed
	case a.final && a.rep.Outcome == protocol.OutcomeSpent:
		return kindSpent
	case a.final:
		return string(a.rep.Outcome)
	case a.refusal != "":
		return string(a.refusal)
	case a.sent:
		return kindNoReply
	case errors.Is(a.err, protocol.ErrNotSent):
		return kindUnreachable
	}
	return kindError
}

// code is the exit code the answer calls for.
func (a answer) code() int {
	switch a.kind {
	case kindHealed, kindAlready:
		return ExitOK
	case kindSpent, string(protocol.OutcomeBackoff), string(protocol.OutcomeBreaker):
		return ExitWithheld
	}
	return ExitFailed
}

// reply is the agent's final reply, nil when none came.
func (a answer) reply() *protocol.Reply {
	if !a.final {
		return nil
	}
	return &a.rep
}

// failure is the error behind an answer that is not a success.
func (a answer) failure() error {
	if a.final || a.refusal != "" {
		return fmt.Errorf("agent answered %s", a.kind)
	}
	return a.err
}

// alreadyText says what an ok from the agent's records means: the agent
// answers so for this fault's restart (a retry after a lost reply, the
// other HA endpoint, a duplicate) and for a fault that began before a
// restart less than its min_gap ago finished (a split brain's second
// fault id for one real fault). An agent that gives its note says which,
// and how old its record is; an older one does not.
func (a answer) alreadyText() string {
	rep := a.rep
	note := firstLine(rep.Note)
	if !rep.Extended || note == "" {
		return "already restarted for this fault by another request (or within the agent's min gap), not run again"
	}
	if rep.Origin == protocol.OriginJoined {
		return "not run again, this request shared a restart in progress: " + note
	}
	return fmt.Sprintf("not run again, answered from the agent's record (%s old): %s", roundDur(rep.Age), note)
}

// summary is the one human sentence for the answer, honest about what the
// handler knows: unreachable (nothing reached the agent) is not "sent, no
// reply" (the restart may have run).
func (a answer) summary() string {
	verb, c, rep := a.verb, a.conn, a.rep
	on := fmt.Sprintf("%s %s on %s", verb, c.Target, c.Addr())
	budget := ""
	if b := budgetText(rep.Budget); b != "" {
		budget = "budget " + b
	}
	var s string
	switch a.kind {
	case kindHealed:
		s = fmt.Sprintf("%s ok in %s", on, roundDur(a.took))
		if budget != "" {
			s += " (" + budget + ")"
		}
	case kindAlready:
		s = on + ": " + a.alreadyText() + ": ok"
		if rep.Extended && rep.Note != "" {
			s = on + ": ok, " + a.alreadyText()
		}
		if budget != "" {
			s += " (" + budget + ")"
		}
	case kindSpent:
		b := rep.Budget
		s = fmt.Sprintf("%s: restart budget spent at the agent: %d/%d in %s; next restart allowed in %s",
			on, b.Used, b.Max, b.Window, roundDur(b.RetryAfter))
	case string(protocol.OutcomeBackoff):
		words := orText(firstLine(rep.Note), firstLine(rep.Output))
		s = fmt.Sprintf("%s: back-off at the agent: restarts of this service are spaced out; next restart allowed in %s%s",
			on, roundDur(rep.Budget.RetryAfter), prefixed(" (", words)+closeIf(words))
	case string(protocol.OutcomeBreaker):
		s = fmt.Sprintf("%s: the agent's mass-failure breaker is open (%s); it may let a restart through in %s",
			on, orText(firstLine(rep.Output), "too many of its services needed a restart at once"), roundDur(rep.Budget.RetryAfter))
	case string(protocol.OutcomeFailed):
		s = fmt.Sprintf("%s: failed (action exit %d after %s%s)", on, rep.ExitCode, roundDur(rep.Duration), prefixed("; ", budget))
	case string(protocol.OutcomeTimeout):
		s = fmt.Sprintf("%s: timeout (action killed after %s%s)", on, roundDur(rep.Duration), prefixed("; ", budget))
	case string(protocol.OutcomeDenied):
		if a.final && rep.Signed() {
			// The agent verified the request and refused the action (its
			// trust rule at exec time): its words say why; nothing ran.
			s = on + ": denied by the agent, nothing ran: " + deniedWords(rep)
			break
		}
		both := ""
		if a.short && !a.old {
			both = " in the extended and the short form"
		}
		s = on + ": denied" + both + " (wrong key, wrong agent name, address not allowed, or service/action not configured: see the agent's audit log)"
	case string(protocol.OutcomeSkew):
		s = on + ": skew: " + skewText(rep, a.now, a.signed)
	case string(protocol.OutcomeBusy):
		s = on + ": busy on every try (nothing ran for these requests: the agent's connection slots were full, another action of this service kept running, or the agent was shutting down)"
	case string(protocol.OutcomeRateLimited):
		s = on + ": rate-limited on every try (nothing ran for these requests: the agent refuses more requests or connections from this node for now)"
	case kindNoReply:
		s = on + ": request sent, no reply within the deadline: the restart may have run; check the agent's audit log" + faultHint(a.fault)
	case kindUnreachable:
		s = fmt.Sprintf("%s %s: listener %s unreachable", verb, c.Target, c.Addr())
	default:
		s = fmt.Sprintf("%s %s: request not made", verb, c.Target)
	}
	if a.final || a.refusal != "" {
		if a.sent && !a.final {
			s += "; an earlier request was sent without a reply: the restart may have run; check the agent's audit log" + faultHint(a.fault)
		}
		if a.attempts > 1 {
			s += fmt.Sprintf(" after %d attempts", a.attempts)
		}
	} else {
		s += fmt.Sprintf(" (%d attempt(s), last: %s)", a.attempts, textsafe.OneLine(a.err.Error()))
	}
	if a.old {
		s += "; the agent is older than the extended request form (it denied it and answered the short one, " +
			"which cannot say when the fault began): upgrade it"
	}
	// The action's own words, when it failed; the agent's refusals say
	// nothing the sentence above does not.
	if out := firstLine(rep.Output); out != "" && a.final && (rep.Outcome == protocol.OutcomeFailed || rep.Outcome == protocol.OutcomeTimeout) {
		s += ": " + out
	}
	// The agent's own account, where the sentence above does not carry it
	// (a record whose authority ended, a clock that moved back, a breaker
	// trial, a record it could not write).
	if note := firstLine(rep.Note); note != "" && a.final && (a.kind == kindHealed || rep.Outcome == protocol.OutcomeFailed || rep.Outcome == protocol.OutcomeTimeout) {
		s += "; the agent: " + note
	}
	return s
}

// deniedWords is a signed denied's reason: its output, and its note
// when that says more (the file and the rule it fails).
func deniedWords(rep protocol.Reply) string {
	out, note := firstLine(rep.Output), firstLine(rep.Note)
	switch {
	case out == "" && note == "":
		return "the agent gave no reason: see its audit log"
	case out == "" || out == note:
		return note
	case note == "":
		return out
	}
	return out + " (the agent: " + note + ")"
}

// skewText: the agent verified the request and found its timestamp
// outside its replay window. Either the clocks disagree (check NTP) or
// the request took that long to arrive (a stalled handler or network):
// the handler tells them apart by its own clock. signed is when the
// request was made, ours when the reply came; the agent's clock against
// ours is the offset, ours against signed the delay.
func skewText(rep protocol.Reply, ours, signed time.Time) string {
	note := prefixed(" (the agent: ", firstLine(rep.Note)) + closeIf(rep.Note)
	if rep.AgentTime.IsZero() {
		return "the agent says our clock is outside its replay window (its time unknown): check NTP" + note
	}
	offset := rep.AgentTime.Sub(ours)
	off := int64(math.Round(math.Abs(offset.Seconds())))
	var delay time.Duration
	if !signed.IsZero() {
		delay = ours.Sub(signed)
	}
	if delay > offset.Abs() {
		return fmt.Sprintf("the request reached the agent too late: %s after it was signed, longer than its replay window; the clocks agree (off by %d s): "+
			"the request was delayed (a stalled handler, the network, a full agent), not a clock problem%s", roundDur(delay), off, note)
	}
	return fmt.Sprintf("clock off by %d s from the agent (its time %s, ours %s): check NTP%s",
		off, rep.AgentTime.UTC().Format(time.RFC3339), ours.UTC().Format(time.RFC3339), note)
}

func faultHint(fault string) string {
	if fault == "" || fault == "-" {
		return ""
	}
	return " for fault " + fault
}

// budgetText is "U/M per W", or "" when the reply carries no budget.
func budgetText(b protocol.Budget) string {
	if b.Max <= 0 {
		return ""
	}
	return fmt.Sprintf("%d/%d per %s", b.Used, b.Max, b.Window)
}

func closeIf(s string) string {
	if firstLine(s) == "" {
		return ""
	}
	return ")"
}

func orText(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300]
	}
	return textsafe.OneLine(s)
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
