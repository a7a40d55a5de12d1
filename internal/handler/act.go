package handler

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/selfheal/selfheal/internal/nodestate"
	"github.com/selfheal/selfheal/internal/protocol"
	"github.com/selfheal/selfheal/internal/textsafe"
)

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
		// Only a key that cannot sign for this agent gets here (the event
		// command checks it first): a configuration error, fail closed.
		r.res.Code, r.res.Err = ExitUsage, err
		msg := configError(err)
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
		r.zoneRelease(ctx)
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
	if nothingRan(a.kind) {
		r.zoneRelease(ctx)
	}
	if a.kind == kindUnreachable || a.kind == kindNoReply {
		// Asked again for the same fault: the agent runs one restart per
		// fault, so a restart that did run is answered from its record.
		r.res.Hold = r.unreachableHold(a, prefix+summary)
		tail += " (asked again by reevaluate from " + r.res.Hold.RetryAt.UTC().Format(time.RFC3339) + ", while the fault lasts)"
	}
	r.res.Commands = []Command{r.comment(true, prefix+summary+tail)}
	return zerolog.ErrorLevel, summary + r.feedback(ctx, &a)
}

// nothingRan: the answer says the agent ran no action for this request
// (never reached, refused before running); a failure, a time-out or no
// reply may have run one.
func nothingRan(kind string) bool {
	switch protocol.Outcome(kind) {
	case protocol.OutcomeBusy, protocol.OutcomeDenied, protocol.OutcomeRateLimited, protocol.OutcomeSkew:
		return true
	}
	return kind == kindUnreachable || kind == kindError
}

// deferred is the hold an answer that withholds the restart calls for,
// and how its comment reads.
type deferred struct {
	Hold
	persistent bool
	tail       string
}

// ruleAgentBreaker names a hold by the agent's breaker (its host's
// services), not the zone's mass-failure rule (nodestate.RuleBreaker):
// reevaluate asks the zone rule's holds in its rank order and stops at
// the first it holds again; one the agent holds must not stop that walk
// (the scale lab's recovery stalled behind it for as long as the agent's
// breaker stayed open).
const ruleAgentBreaker = "agent-breaker"

// deferral: the agent holds it (budget, back-off, the gap after a
// restart, breaker): reevaluate asks again once it said it may run, as
// long as the fault lasts.
func deferral(a answer) deferred {
	summary, rule := a.summary(), a.kind
	if rule == string(protocol.OutcomeBreaker) {
		rule = ruleAgentBreaker
	}
	d := deferred{Hold: Hold{Rule: rule, Text: "auto-healing deferred (" + rule + "): " + summary, RetryAt: a.now.Add(a.rep.Budget.RetryAfter)},
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

// configError is the policy on our own configuration errors (key, agent,
// fault macro, TLS files, a key the trust rule refuses) when a fault needs
// healing: Nagios only logs a failing handler's output, so the handler
// says it on the CRITICAL service, where on-call looks, persistent until
// the recovery removes it. This is its text; event (commands.go) and act
// both write it.
func configError(err error) string {
	return "auto-healing impossible: handle_worker configuration error: " + textsafe.OneLine(err.Error())
}
