package handler

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/selfheal/selfheal/internal/breaker"
	"github.com/selfheal/selfheal/internal/textsafe"
)

// kindHeld is Result.Verdict (and Record.Result) for a restart this node
// held back.
const kindHeld = "held"

func (r *run) store() Store { return Store{Dir: r.cfg.StateDir, Trust: r.cfg.Trust} }

// readPrev reads the record before this run (for the comment that must
// not repeat and the time a hold began); unreadable is only a note.
func (r *run) readPrev() {
	if r.cfg.StateDir == "" {
		return
	}
	rec, err := r.store().Read(r.cfg.HostName, r.cfg.ServiceDesc)
	if err != nil {
		r.notes = append(r.notes, "previous record unreadable: "+textsafe.OneLine(err.Error()))
		return
	}
	r.prev = rec
}

// hold applies the rules in order of precedence: pause, the engine's
// facts (downtime, ack, host, dependency), then the mass-failure rule
// (zone.go), which reads the zone only for a restart the others let
// through.
func (r *run) hold(ctx context.Context) *Hold {
	cfg, j := r.cfg, r.cfg.Judgment
	now := r.deps.Now()
	if cfg.Facts.StatusErr != nil {
		r.notes = append(r.notes, "status file unreadable, its facts unused: "+textsafe.OneLine(cfg.Facts.StatusErr.Error()))
	}
	if !j.Ignore[RulePause] && cfg.StateDir != "" {
		ps, err := r.store().Pauses(now)
		if err != nil {
			r.notes = append(r.notes, "pauses unreadable: "+textsafe.OneLine(err.Error()))
		}
		if p := PausedFor(ps, cfg.HostName, cfg.ServiceDesc); p != nil {
			return &Hold{Rule: string(RulePause), Text: pauseText(p)}
		}
	}
	if h := judge(j, cfg.Facts, cfg.HostName, cfg.ServiceDesc); h != nil {
		return h
	}
	if j.Ignore[RuleBreaker] || cfg.StateDir == "" {
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
		return &Hold{Rule: string(RuleBreaker), Text: breakerText(v, j.Breaker), RetryAt: now.Add(v.RetryAfter)}
	}
	if v.State == breaker.Trial {
		r.notes = append(r.notes, "breaker trial restart")
	}
	return nil
}

// admit asks the node's breaker (a dry run only peeks).
func (r *run) admit(ctx context.Context) (breaker.Verdict, error) {
	d, err := r.store().open()
	if err != nil {
		return breaker.Verdict{}, err
	}
	defer d.Close()
	bs := breaker.Store{Dir: d, Name: "breaker", Config: r.cfg.Judgment.Breaker}
	t := r.deps.Now()
	if r.cfg.DryRun {
		return bs.Try(ctx, t, r.cfg.HostName+"!"+r.cfg.ServiceDesc, r.cfg.Fault)
	}
	return bs.Admit(ctx, t, r.cfg.HostName+"!"+r.cfg.ServiceDesc, r.cfg.Fault)
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

// recovered cleans up after an OK: this node's comments other than the
// last success go (by id, from status.dat: never DEL_ALL_SVC_COMMENTS,
// which would delete the humans' too), and nothing stays held.
func (r *run) recovered(ctx context.Context) {
	if r.cfg.DryRun {
		return
	}
	for _, c := range r.ours() {
		if commentKey(c.Text) != okKey {
			if cmd, ok := DelSvcComment(c.ID); ok {
				r.res.Commands = append(r.res.Commands, cmd)
			}
		}
	}
	if p := r.prev; p != nil && (p.Held != nil || p.Comment != "") {
		rec := *p
		rec.Held, rec.Comment = nil, ""
		if err := r.store().Write(ctx, rec); err != nil {
			r.recordErr = err
		}
	}
	if sfx := r.writeCommands(ctx); sfx != "" {
		r.notes = append(r.notes, strings.TrimPrefix(sfx, "; "))
	}
}

// ours are this handler's comments on the service, from status.dat.
func (r *run) ours() []commentRef {
	sd := r.cfg.Facts.Status
	if sd == nil {
		return nil
	}
	// Nagios numbers its comments: anything else in status.dat is not
	// one of them. Icinga 2's API names them.
	_, api := r.cfg.Engine.(IcingaEngine)
	var out []commentRef
	for _, c := range sd.CommentsOn(r.cfg.HostName, r.cfg.ServiceDesc, Author) {
		if !api && strings.Trim(c.ID, "0123456789") != "" {
			continue
		}
		out = append(out, commentRef{ID: c.ID, Text: c.Text})
	}
	return out
}

type commentRef struct{ ID, Text string }

// okKey is the key of the routine success comment.
const okKey = "auto-restart ok"

// commentKey is a comment's kind: "auto-restart ok" for a success, else
// its text up to the first ")" when a "(" comes before any ":" (the rule
// or outcome in brackets), else up to the first ":".
func commentKey(text string) string {
	if strings.HasPrefix(text, okKey) {
		return okKey
	}
	colon := strings.IndexByte(text, ':')
	if open := strings.IndexByte(text, '('); open >= 0 && (colon < 0 || open < colon) {
		if end := strings.IndexByte(text[open:], ')'); end >= 0 {
			return text[:open+end+1]
		}
	}
	if colon >= 0 {
		return text[:colon]
	}
	return text
}

// planComments keeps at most one live comment of this handler per service:
// a comment whose kind was already written for this fault is not written
// again (a volatile service runs the handler at every check), and a new
// one replaces the handler's earlier ones. It returns the key to record.
func (r *run) planComments() string {
	key := ""
	if r.prev != nil {
		key = r.prev.Comment
	}
	var out []Command
	for _, c := range r.res.Commands {
		text, ok := c.commentText()
		if !ok {
			out = append(out, c)
			continue
		}
		k := commentKey(text) + "|" + r.cfg.Fault
		if r.prev != nil && r.prev.Comment == k && commentKey(text) != okKey {
			r.notes = append(r.notes, "comment already written for this fault, not repeated")
			continue
		}
		for _, o := range r.ours() {
			if cmd, ok := DelSvcComment(o.ID); ok {
				out = append(out, cmd)
			}
		}
		out = append(out, c)
		key = k
	}
	r.res.Commands = out
	return key
}

// feedback settles the comments, writes the record (the agent's answer a,
// or a hold) and the commands, and returns a suffix for the human line
// when Nagios could not be told. None of it changes whether healing
// happened.
func (r *run) feedback(ctx context.Context, a *answer) string {
	if r.cfg.DryRun {
		return ""
	}
	key := r.planComments()
	if r.cfg.StateDir != "" {
		now := r.deps.Now()
		var rec Record
		if a != nil {
			rec = newRecord(r.cfg.HostName, r.cfg.ServiceDesc, r.cfg.Source, *a, now)
		} else {
			rec = Record{Host: r.cfg.HostName, Service: r.cfg.ServiceDesc, At: now.UTC(), Source: r.cfg.Source,
				Verb: string(r.cfg.Action), Agent: r.cfg.Conn.Agent, Fault: r.cfg.Fault, Result: kindHeld}
			if r.prev != nil {
				rec.Outcome, rec.Origin, rec.Budget = r.prev.Outcome, r.prev.Origin, r.prev.Budget
			}
		}
		if h := r.res.Hold; h != nil {
			rec.Summary = h.Text
			since := now.UTC()
			if p := r.prev; p != nil && p.Held != nil && p.Held.Fault == r.cfg.Fault && p.Held.Rule == h.Rule {
				since = p.Held.Since
			}
			rec.Held = &Held{Rule: h.Rule, Text: h.Text, Since: since, RetryAt: h.RetryAt.UTC(), Fault: r.cfg.Fault, Ask: r.ask()}
			if h.RetryAt.IsZero() {
				rec.Held.RetryAt = h.RetryAt
			}
		}
		rec.Comment = key
		r.recordErr = r.store().Write(ctx, rec)
	}
	return r.writeCommands(ctx)
}

// engine is the write-back: cfg.Engine, or the command file.
func (r *run) engine() Engine {
	if r.cfg.Engine != nil {
		return r.cfg.Engine
	}
	return NagiosEngine{CommandFile: r.cfg.CommandFile}
}

// readStatus asks the engine for the service's view when the caller gave
// none (Icinga 2's API; status.dat read by main). Bounded to a tenth of
// the deadline: it can only hold a restart back, never delay one much.
func (r *run) readStatus(ctx context.Context) {
	f := &r.cfg.Facts
	if r.cfg.Engine == nil || f.Status != nil || f.StatusErr != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, max(r.cfg.Deadline/10, 500*time.Millisecond))
	defer cancel()
	f.Status, f.StatusErr = r.cfg.Engine.Status(ctx, [][2]string{{r.cfg.HostName, r.cfg.ServiceDesc}})
}

// writeCommands writes res.Commands through the engine's write-back and
// returns a suffix for the human line when that failed.
func (r *run) writeCommands(ctx context.Context) string {
	if len(r.res.Commands) == 0 || r.cfg.DryRun {
		return ""
	}
	e := r.engine()
	if err := e.Write(ctx, r.deps.Now(), r.res.Commands...); err != nil {
		return "; engine not told (" + e.Name() + "): " + textsafe.OneLine(err.Error())
	}
	return ""
}
