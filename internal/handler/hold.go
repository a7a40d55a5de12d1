package handler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/selfheal/selfheal/internal/breaker"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/nodestate"
	"github.com/selfheal/selfheal/internal/textsafe"
)

// kindHeld is Result.Verdict (and Record.Result) for a restart this node
// held back.
const kindHeld = "held"

// hold applies the rules in order of precedence: pause, the engine's
// facts (downtime, ack, host, dependency), then the mass-failure rule
// (zone.go), which reads the zone only for a restart the others let
// through.
func (r *run) hold(ctx context.Context) *Hold {
	j := r.cfg.Judgment
	now := r.deps.Now()
	if !j.Ignore[nodestate.RulePause] && r.cfg.StateDir != "" {
		ps, err := r.store().Pauses(now)
		if err != nil {
			r.notes = append(r.notes, "pauses unreadable: "+textsafe.OneLine(err.Error()))
		}
		if p := nodestate.PausedFor(ps, r.cfg.HostName, r.cfg.ServiceDesc); p != nil {
			return &Hold{Rule: string(nodestate.RulePause), Text: pauseText(p)}
		}
	}
	if factsMissing(r.cfg.Facts) {
		r.status(ctx)
	}
	cfg := r.cfg
	if cfg.Facts.StatusErr != nil {
		r.notes = append(r.notes, "status file unreadable, its facts unused: "+textsafe.OneLine(cfg.Facts.StatusErr.Error()))
	}
	if h := judge(j, cfg.Facts, cfg.HostName, cfg.ServiceDesc); h != nil {
		return h
	}
	if j.Ignore[nodestate.RuleBreaker] || cfg.StateDir == "" || r.restartedThisFault() {
		return nil
	}
	return r.breakerHold(ctx)
}

// nodeBreakerHold is the node's own count, for when the zone's view
// cannot be read.
func (r *run) nodeBreakerHold(ctx context.Context) *Hold {
	j, now := r.cfg.Judgment, r.deps.Now()
	if j.Breaker.Threshold <= 0 {
		return nil
	}
	v, err := r.admit(ctx)
	if err != nil {
		// Fail open: a breaker that cannot count must not stop healing.
		r.notes = append(r.notes, "breaker unusable, restart allowed: "+textsafe.OneLine(err.Error()))
		return nil
	}
	if !v.Allow {
		return &Hold{Rule: string(nodestate.RuleBreaker), Text: breakerText(v, j.Breaker), RetryAt: now.Add(v.RetryAfter)}
	}
	if v.State == breaker.Trial {
		r.notes = append(r.notes, "breaker trial restart")
	}
	return nil
}

// admit asks the node's breaker (a dry run only peeks).
func (r *run) admit(ctx context.Context) (breaker.Verdict, error) {
	d, err := r.store().Open()
	if err != nil {
		return breaker.Verdict{}, err
	}
	defer d.Close()
	bs := breaker.Store{Dir: d, Name: nodestate.BreakerFile, Config: r.cfg.Judgment.Breaker}
	t := r.deps.Now()
	if r.cfg.DryRun {
		return bs.Try(ctx, t, r.cfg.HostName+"!"+r.cfg.ServiceDesc, r.cfg.Fault)
	}
	return bs.Admit(ctx, t, r.cfg.HostName+"!"+r.cfg.ServiceDesc, r.cfg.Fault)
}

// A heal that reached no agent (unreachable: nothing was sent) is kept as
// a hold that reevaluate asks again: the agent's budget is untouched, the
// same fault id keeps the retry to one restart, and the agent's budget and
// breaker still decide. The wait doubles per failed try for the fault,
// from unreachableFirst to unreachableMax, so that a host that is gone
// for good costs reevaluate little.
const (
	unreachableFirst = 30 * time.Second
	unreachableMax   = 15 * time.Minute
)

// unreachableHold is the hold for an agent that was unreachable or sent
// no reply (rule: the answer's kind), asked again with a doubling wait.
func (r *run) unreachableHold(a answer, text string) *Hold {
	wait := unreachableFirst
	if p := r.prev; p != nil && p.Held != nil && p.Held.Rule == a.kind && p.Held.Fault == r.cfg.Fault {
		if last := p.Held.RetryAt.Sub(p.At); last > 0 {
			wait = min(2*last, unreachableMax)
		}
	}
	return &Hold{Rule: a.kind, Text: text, RetryAt: a.now.Add(wait)}
}

// held reports a restart held back: one comment (not repeated), and the
// record reevaluate works from.
func (r *run) held(ctx context.Context, h *Hold) (zerolog.Level, string) {
	r.res.Code, r.res.Hold, r.res.Verdict = ExitWithheld, h, kindHeld
	r.res.Err = errors.New("held back: " + h.Rule)
	r.res.Commands = []Command{r.comment(false, h.Text)}
	if r.cfg.DryRun {
		return zerolog.InfoLevel, "dry-run: would hold the restart back: " + h.Text
	}
	return zerolog.WarnLevel, h.Text + r.feedback(ctx, nil)
}

func pauseText(p *nodestate.Pause) string {
	return fmt.Sprintf("auto-healing paused (%s) by %s until %s: %s; `handle_worker resume` lets it heal",
		p.Scope(), p.By, p.Until.UTC().Format(time.RFC3339), p.Reason)
}

// factsMissing: a fact the rules read was not passed as a macro, so the
// engine's view is read for it (Nagios has no acknowledgement macro;
// Icinga 2 passes $host.state$ only once the host was checked).
func factsMissing(f Facts) bool {
	return f.ServiceDowntime < 0 || f.HostDowntime < 0 || f.Ack < 0 || f.HostState == nil || !f.PerfdataGiven
}

// status is the engine's view of the service (Icinga 2's API, or
// status.dat when main did not read it), read at most once and only when
// a decision needs it: never for an OK with nothing on record, nor for a
// SOFT state. Bounded to a tenth of the deadline: it can only hold a
// restart back, never delay one much.
func (r *run) status(ctx context.Context) *nagios.StatusData {
	f := &r.cfg.Facts
	if r.cfg.Engine == nil || f.Status != nil || f.StatusErr != nil {
		return f.Status
	}
	ctx, cancel := context.WithTimeout(ctx, max(r.cfg.Deadline/10, 500*time.Millisecond))
	defer cancel()
	f.Status, f.StatusErr = r.cfg.Engine.Status(ctx, [][2]string{{r.cfg.HostName, r.cfg.ServiceDesc}})
	return f.Status
}

// restartedThisFault: this node's record says the agent already restarted
// for this very fault (a volatile service's later runs). The agent answers
// such a request from its own record and runs nothing, so the zone's count
// has nothing to hold and is not read.
func (r *run) restartedThisFault() bool {
	p := r.prev
	return p != nil && r.cfg.Fault != "" && r.cfg.Fault != "-" && p.Fault == r.cfg.Fault &&
		p.Outcome == "ok" && (p.Result == kindHealed || p.Result == kindAlready)
}
