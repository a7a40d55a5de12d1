package healercheck

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/plugin"
	"github.com/selfheal/selfheal/internal/protocol"
	"github.com/selfheal/selfheal/internal/thresholds"
)

// AgentConfig is one agent-mode check, fully parsed.
type AgentConfig struct {
	Addr  string // host:port of the worker_listener
	Agent string // its identity (agent: in its config)
	Key   protocol.Key
	TLS   *tls.Config // nil: plain TCP (the HMAC still applies)
	// Targets are the services to report on; empty: every service the
	// agent's ping lists (those with a status action).
	Targets []string
	Timeout time.Duration
	// Offset judges |clock offset| in milliseconds; Budget the restarts
	// left in a service's budget.
	Offset thresholds.Pair
	Budget thresholds.Pair
}

// Default thresholds. The agent refuses requests more than its
// replay_window (default 60s) off its clock: WARNING at half of it,
// CRITICAL 10s before its edge. Budget: WARNING once no restart is left
// (the next is refused); "2:" warns a restart earlier.
const (
	DefaultOffsetWarn = "30000"
	DefaultOffsetCrit = "50000"
	DefaultBudgetWarn = "1:"
)

// retries bounds the retries of a busy or rate-limited answer; the
// agent's defaults (5 requests a second, bursts of 20) rarely need them.
const retries = 3

// RunAgent checks one agent. It never panics on the agent's answers and
// returns within cfg.Timeout plus rendering.
func RunAgent(ctx context.Context, cfg AgentConfig, deps Deps) Result {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	head := "agent " + cfg.Agent
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	a := &asker{}
	cl, err := protocol.NewClient(protocol.ClientConfig{Addr: cfg.Addr, Key: cfg.Key, Agent: cfg.Agent, TLS: cfg.TLS, Now: deps.now, Nonce: a.nonce})
	if err != nil {
		return unknown(head, "cannot make a request: "+err.Error())
	}
	r := &report{head: head}

	sent := deps.now()
	mono := time.Now()
	a.cl = cl
	rep, err := a.do(ctx, protocol.VerbPing, "")
	rtt := time.Since(mono)
	got := deps.now()
	if err == nil || !errors.Is(err, protocol.ErrNotSent) {
		r.metric("rtt", ms(rtt), "ms", "", "", "0", "")
	}
	if !pingOK(r, cfg, rep, err) {
		if err == nil && rep.Outcome == protocol.OutcomeSkew {
			clock(r, cfg, rep.AgentTime, sent, got, true)
		}
		return r.result()
	}
	version, listed := protocol.ParsePing(rep.Output)

	targets := cfg.Targets
	if len(targets) == 0 {
		targets = listed
	}
	r.okText = fmt.Sprintf("%s answers, key accepted, %d service(s) reported", plugin.Line(version, 80), len(targets))
	r.add(nagios.OK, "", fmt.Sprintf("agent %s at %s: %s, key %s accepted, round trip %s ms", cfg.Agent, cfg.Addr, plugin.Line(version, 80), cfg.Key.ID, ms(rtt)))
	clock(r, cfg, rep.AgentTime, sent, got, false)
	if len(targets) == 0 {
		r.add(nagios.OK, "", "no service to report on: the agent lists none with a status action (give --target)")
	}
	for _, svc := range targets {
		service(ctx, r, cfg, a, svc)
	}
	return r.result()
}

// asker sends the check's requests (one at a time) and remembers the
// nonce of the last, which binds a status reply's last-restart line.
type asker struct {
	cl   *protocol.Client
	last string
}

func (a *asker) nonce() (string, error) {
	n, err := protocol.NewNonce()
	a.last = n
	return n, err
}

// do sends one request, retrying busy and rate-limited answers (nothing
// ran) a few times within ctx.
func (a *asker) do(ctx context.Context, verb protocol.Verb, svc string) (protocol.Reply, error) {
	wait := 100 * time.Millisecond
	for i := 0; ; i++ {
		rep, err := a.cl.Do(ctx, verb, svc, "-")
		if err != nil || !rep.Outcome.Retryable() || i == retries {
			return rep, err
		}
		select {
		case <-ctx.Done():
			return rep, err
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// pingOK judges the ping: false when the agent cannot heal for us or
// cannot be asked, with the finding added.
func pingOK(r *report, cfg AgentConfig, rep protocol.Reply, err error) bool {
	where := cfg.Agent + " at " + cfg.Addr
	switch {
	case err != nil && errors.Is(err, context.DeadlineExceeded):
		r.add(nagios.Critical, fmt.Sprintf("agent %s did not answer within %s", where, cfg.Timeout), "")
	case err != nil && errors.Is(err, protocol.ErrNotSent):
		r.add(nagios.Critical, "agent "+where+" unreachable: "+cause(err), "")
	case err != nil:
		// Sent, no valid reply: a reset, garbage, or a reply that is not
		// from the agent holding this host key (wrong key, wrong agent).
		r.add(nagios.Critical, "agent "+where+" gave no valid reply: "+cause(err), "")
	case rep.Outcome == protocol.OutcomeOK:
		return true
	case rep.Outcome == protocol.OutcomeDenied:
		r.add(nagios.Critical, "agent "+where+" refused our signed ping (denied): wrong key, key id, --agent, or not in its allow list; its audit log says which", "")
	case rep.Outcome == protocol.OutcomeSkew:
		r.add(nagios.Critical, "agent "+where+" refuses our requests: clock skew beyond its replay window (check NTP)", "")
	case rep.Outcome.Retryable():
		r.add(nagios.Warning, fmt.Sprintf("agent %s is too busy to answer (%s)", where, rep.Outcome), "")
	default:
		r.add(nagios.Unknown, fmt.Sprintf("agent %s answered ping with %q", where, rep.Outcome), "")
	}
	return false
}

// cause is the innermost error text of a client error, without the
// ErrNotSent/ErrNoReply prefix already said in words.
func cause(err error) string {
	s := err.Error()
	for _, p := range []string{protocol.ErrNotSent.Error() + ": ", protocol.ErrNoReply.Error() + ": "} {
		s = strings.TrimPrefix(s, p)
	}
	return s
}

// clock judges the agent's clock against ours: the agent read its clock
// between our send and our receive, so the midpoint is our best estimate
// of the same instant (NTP's rule). A positive offset: the agent is ahead.
func clock(r *report, cfg AgentConfig, agent, sent, got time.Time, refused bool) {
	if agent.IsZero() {
		return
	}
	ours := sent.Add(got.Sub(sent) / 2)
	off := agent.Sub(ours)
	msOff := float64(off.Microseconds()) / 1000
	r.metric("clock_offset", strconv.FormatFloat(msOff, 'f', 0, 64), "ms", cfg.Offset.WarnString(), cfg.Offset.CritString(), "", "")
	dir := "ahead of"
	if off < 0 {
		dir = "behind"
	}
	text := fmt.Sprintf("agent clock %s %s ours", short(off.Abs()), dir)
	if off.Abs() < 500*time.Millisecond {
		text = "agent clock within 0.5s of ours"
	}
	st := cfg.Offset.Evaluate(math.Abs(msOff))
	switch {
	case refused: // pingOK said why: the agent refuses every request
		st = nagios.Critical
	case st != nagios.OK:
		text += fmt.Sprintf(" (breaks the %s range %s ms): near the replay window's edge, check NTP", strings.ToLower(st.String()), rangeOf(cfg.Offset, st))
	}
	r.add(st, text, "")
}

func rangeOf(p thresholds.Pair, st nagios.State) string {
	if st == nagios.Critical {
		return p.CritString()
	}
	return p.WarnString()
}

// service reports one service from its status reply.
func service(ctx context.Context, r *report, cfg AgentConfig, a *asker, svc string) {
	name := plugin.Label(svc)
	if ctx.Err() != nil {
		r.add(nagios.Unknown, svc+": no time left to ask", "")
		return
	}
	rep, err := a.do(ctx, protocol.VerbStatus, svc)
	nonce := a.last
	switch {
	case err != nil:
		r.add(nagios.Unknown, svc+": no status: "+cause(err), "")
		return
	case rep.Outcome == protocol.OutcomeDenied:
		r.add(nagios.Unknown, svc+": the agent has no status action for it (or no such service)", "")
		return
	case rep.Outcome.Retryable():
		r.add(nagios.Unknown, svc+": the agent was too busy to answer ("+string(rep.Outcome)+")", "")
		return
	case rep.Budget.Max <= 0:
		r.add(nagios.Unknown, svc+": the agent reports no restart budget (a worker_listener older than check_selfheal?)", "")
		return
	}
	b := rep.Budget
	left := max(b.Max-b.Used, 0)
	hi := strconv.Itoa(b.Max)
	r.metric(name+"_budget_left", strconv.Itoa(left), "", cfg.Budget.WarnString(), cfg.Budget.CritString(), "0", hi)
	r.metric(name+"_budget_used", strconv.Itoa(b.Used), "", "", "", "0", hi)
	last, out, lerr := protocol.ParseLastRestart(rep.Output, nonce)
	r.count(name+"_restarts", last.LastHour, "", "")

	st := cfg.Budget.Evaluate(float64(left))
	var problems []string
	if st != nagios.OK {
		problems = append(problems, fmt.Sprintf("%s: restart budget %s (%d of %d used per %s, %d left)", svc,
			map[bool]string{true: "spent", false: "nearly spent"}[left == 0], b.Used, b.Max, short(b.Window), left))
	}
	var lastText string
	now := rep.AgentTime // the agent's records are dated by its clock
	switch {
	case errors.Is(lerr, protocol.ErrNoLastRestart):
		lastText = "never restarted"
	case lerr != nil:
		st = nagios.Worst(st, nagios.Unknown)
		problems = append(problems, svc+": "+lerr.Error())
	default:
		lastText = fmt.Sprintf("last restart %s %s (fault %s), %d in the last hour", last.Outcome, ago(now, last.At), last.Fault, last.LastHour)
		// A failure within the hour: the action itself may be broken. An
		// older one is history (the worker may since have been fixed).
		if last.Outcome != protocol.OutcomeOK && last.LastHour > 0 {
			st = nagios.Worst(st, nagios.Warning)
			problems = append(problems, fmt.Sprintf("%s: last restart %s %s", svc, last.Outcome, ago(now, last.At)))
		}
	}
	detail := fmt.Sprintf("%s: budget %d of %d used per %s", svc, b.Used, b.Max, short(b.Window))
	if b.RetryAfter > 0 {
		detail += ", next restart allowed in " + short(b.RetryAfter)
	}
	if lastText != "" {
		detail += "; " + lastText
	}
	if first, _, _ := strings.Cut(out, "\n"); first != "" {
		detail += fmt.Sprintf("; status action %s: %s", rep.Outcome, first)
	}
	r.findings = append(r.findings, finding{state: st, summary: strings.Join(problems, "; "), detail: detail})
}

// ms renders a duration in milliseconds with three decimals.
func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 3, 64)
}
