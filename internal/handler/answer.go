package handler

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/selfheal/selfheal/internal/protocol"
	"github.com/selfheal/selfheal/internal/textsafe"
)

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
