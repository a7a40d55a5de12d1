package handler

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/selfheal/selfheal/internal/nodestate"
	"github.com/selfheal/selfheal/internal/textsafe"
)

// recovered cleans up after an OK: this node's comments other than the
// last success go, and nothing stays held. With nothing of this node's on
// record but a success (the engine's start runs the handler for every
// service, OK HARD 1), it reads and writes nothing: no status file, no
// API call, no connection.
func (r *run) recovered(ctx context.Context) {
	if r.cfg.DryRun {
		return
	}
	var cmds []Command
	if r.cfg.Facts.Status != nil || r.prev != nil && slices.ContainsFunc(r.prev.Kinds(), func(k string) bool { return k != okKey }) {
		for _, c := range r.live(ctx) {
			if c.Kind != okKey {
				if cmd, ok := DelSvcComment(c.ID); ok {
					cmds = append(cmds, cmd)
				}
			}
		}
	}
	r.res.Commands = dedupe(append(r.pending(false, true), cmds...))
	p := r.prev
	if len(r.res.Commands) == 0 && (p == nil || p.Held == nil && p.Comment == "" && len(p.Pending) == 0) {
		return
	}
	results, sfx := r.writeCommands(ctx)
	if sfx != "" {
		r.notes = append(r.notes, strings.TrimPrefix(sfx, "; "))
	}
	if p == nil || r.cfg.StateDir == "" {
		return // status.dat showed comments of ours, and there is no record to keep
	}
	rec := *p
	rec.Held, rec.Comment = nil, ""
	r.settle(&rec, results)
	r.writeRecord(ctx, rec)
}

// live are this node's comments on the service, to remove when a new one
// replaces them or the fault ends. Under Icinga 2 they are the names on
// record: no search. Under Nagios the FIFO names nothing, so the ids come
// from status.dat, read only when the record says there is something to
// find (or when the caller read it already).
func (r *run) live(ctx context.Context) []commentRef {
	p := r.prev
	if ie, api := r.cfg.Engine.(IcingaEngine); api {
		var out []commentRef
		if p != nil && p.Legacy() {
			// A record from before the names were kept: one search.
			cs, err := ie.Comments(ctx, r.cfg.HostName, r.cfg.ServiceDesc)
			if err != nil {
				r.notes = append(r.notes, "comments unread: "+textsafe.OneLine(err.Error()))
			}
			for _, c := range cs {
				out = append(out, commentRef{ID: c.ID, Kind: commentKey(c.Text)})
			}
			return out
		}
		if p != nil {
			for _, w := range p.Comments {
				if w.Name != "" {
					out = append(out, commentRef{ID: w.Name, Kind: nodestate.KeyKind(w.Key)})
				}
			}
		}
		return out
	}
	sd := r.cfg.Facts.Status
	if sd == nil && p != nil && (len(p.Comments) > 0 || p.Comment != "") {
		sd = r.status(ctx)
	}
	if sd == nil {
		return nil
	}
	r.statusSeen = sd.Created
	var out []commentRef
	for _, c := range sd.CommentsOn(r.cfg.HostName, r.cfg.ServiceDesc, Author) {
		// Nagios numbers its comments: anything else in status.dat is
		// not one of them.
		if strings.Trim(c.ID, "0123456789") != "" {
			continue
		}
		out = append(out, commentRef{ID: c.ID, Kind: commentKey(c.Text)})
	}
	return out
}

type commentRef struct{ ID, Kind string }

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
// again (a volatile service runs the handler at every check: one success
// comment per fault, and its re-check once), and a new one replaces the
// handler's earlier ones. Write-backs an earlier run could not make go
// first. It returns the key to record.
func (r *run) planComments(ctx context.Context) string {
	key := ""
	if r.prev != nil {
		key = r.prev.Comment
	}
	var out []Command
	added, repeatedOK := false, false
	for _, c := range r.res.Commands {
		text, ok := c.commentText()
		if !ok {
			out = append(out, c)
			continue
		}
		k := commentKey(text) + "|" + r.cfg.Fault
		if r.prev != nil && r.prev.Comment == k {
			r.notes = append(r.notes, "comment already written for this fault, not repeated")
			repeatedOK = repeatedOK || commentKey(text) == okKey
			continue
		}
		for _, o := range r.live(ctx) {
			if cmd, ok := DelSvcComment(o.ID); ok {
				out = append(out, cmd)
			}
		}
		out = append(out, c)
		key, added = k, true
	}
	if repeatedOK {
		// The forced re-check went with the success comment already.
		out = slices.DeleteFunc(out, func(c Command) bool { return strings.HasPrefix(string(c), "SCHEDULE_FORCED_SVC_CHECK;") })
	}
	r.res.Commands = dedupe(append(r.pending(added, false), out...))
	return key
}

// pending are the write-backs earlier runs could not make, to make now:
// every removal, and the comment that was not added unless a newer one
// supersedes it (added) or the fault is over and it was not a success
// (okOnly).
func (r *run) pending(added, okOnly bool) []Command {
	if r.prev == nil {
		return nil
	}
	var out []Command
	for _, p := range r.prev.Pending {
		c := Command(p.Cmd)
		if text, ok := c.commentText(); ok && (added || okOnly && commentKey(text) != okKey) {
			continue
		}
		out = append(out, c)
	}
	return out
}

func dedupe(cmds []Command) []Command {
	seen := map[Command]bool{}
	return slices.DeleteFunc(cmds, func(c Command) bool {
		if seen[c] {
			return true
		}
		seen[c] = true
		return false
	})
}

// settle records in rec what this run's write-back did, from the
// previous record's comments and pending write-backs: those this run
// did not retry were superseded, and go.
func (r *run) settle(rec *nodestate.Record, results []WriteResult) {
	rec.Comments, rec.Pending = nil, nil
	if p := r.prev; p != nil {
		rec.Comments = slices.Clone(p.Comments)
		for _, pe := range p.Pending {
			if slices.Contains(r.res.Commands, Command(pe.Cmd)) {
				rec.Pending = append(rec.Pending, pe)
			}
		}
	}
	if !r.statusSeen.IsZero() {
		// Nagios: what status.dat showed was removed by id (or is gone);
		// what it could not show yet stays on record.
		rec.Comments = slices.DeleteFunc(rec.Comments, func(w nodestate.Written) bool { return w.Name == "" && !w.At.After(r.statusSeen) })
	}
	apply(rec, results, r.deps.Now(), r.cfg.Fault)
}

// apply records what a write-back did: the comments added (with their
// names) and removed leave Pending and change Comments; a failure is kept
// in Pending to be retried, except a forced re-check (the next scheduled
// check replaces it).
func apply(rec *nodestate.Record, results []WriteResult, now time.Time, fault string) {
	now = now.UTC()
	for _, res := range results {
		verb, f := res.Cmd.fields()
		i := slices.IndexFunc(rec.Pending, func(p nodestate.Pending) bool { return p.Cmd == string(res.Cmd) })
		if res.Err != nil {
			if verb == "SCHEDULE_FORCED_SVC_CHECK" {
				continue
			}
			if i < 0 {
				p := nodestate.Pending{Cmd: string(res.Cmd), Since: now}
				if verb == "ADD_SVC_COMMENT" && len(f) == 5 {
					p.Key = commentKey(f[4]) + "|" + fault
				}
				rec.Pending, i = append(rec.Pending, p), len(rec.Pending)
			}
			rec.Pending[i].Tries++
			rec.Pending[i].Error = textsafe.OneLine(res.Err.Error())
			continue
		}
		key := commentKey(fieldOr(f, 4)) + "|" + fault
		if i >= 0 {
			if rec.Pending[i].Key != "" {
				key = rec.Pending[i].Key
			}
			rec.Pending = slices.Delete(rec.Pending, i, i+1)
		}
		switch {
		case verb == "DEL_SVC_COMMENT" && len(f) == 1:
			rec.Comments = slices.DeleteFunc(rec.Comments, func(w nodestate.Written) bool { return w.Name == f[0] })
		case verb == "ADD_SVC_COMMENT" && len(f) == 5:
			rec.Comments = append(rec.Comments, nodestate.Written{Key: key, Name: res.Name, At: now, Persistent: f[2] == "1"})
		}
	}
}

func fieldOr(f []string, i int) string {
	if i < len(f) {
		return f[i]
	}
	return ""
}

// feedback settles the comments, writes the commands and the record (the
// agent's answer a, or a hold, and what the write-back did), and returns
// a suffix for the human line when the engine could not be told. None of
// it changes whether healing happened.
func (r *run) feedback(ctx context.Context, a *answer) string {
	if r.cfg.DryRun {
		return ""
	}
	key := r.planComments(ctx)
	results, sfx := r.writeCommands(ctx)
	if r.cfg.StateDir != "" {
		now := r.deps.Now()
		var rec nodestate.Record
		if a != nil {
			rec = newRecord(r.cfg.HostName, r.cfg.ServiceDesc, r.cfg.Source, *a, now)
		} else {
			rec = nodestate.Record{Host: r.cfg.HostName, Service: r.cfg.ServiceDesc, At: now.UTC(), Source: r.cfg.Source,
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
			rec.Held = &nodestate.Held{Rule: h.Rule, Text: h.Text, Since: since, RetryAt: h.RetryAt.UTC(), Fault: r.cfg.Fault, FaultSince: r.cfg.FaultSince, Ask: r.ask()}
			if h.RetryAt.IsZero() {
				rec.Held.RetryAt = h.RetryAt
			}
		}
		rec.Comment = key
		r.settle(&rec, results)
		r.writeRecord(ctx, rec)
	}
	return sfx
}

// writeRecord writes rec even when the run's deadline has just passed:
// it says what was written to the engine, and what is left to retry.
func (r *run) writeRecord(ctx context.Context, rec nodestate.Record) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	r.recordErr = r.store().Write(ctx, rec)
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

// engine is the write-back: cfg.Engine, or the command file.
func (r *run) engine() Engine {
	if r.cfg.Engine != nil {
		return r.cfg.Engine
	}
	return NagiosEngine{CommandFile: r.cfg.CommandFile}
}

// writeCommands writes res.Commands through the engine's write-back and
// returns what became of each, and a suffix for the human line when a
// command failed (the record keeps it, to be retried).
func (r *run) writeCommands(ctx context.Context) ([]WriteResult, string) {
	if len(r.res.Commands) == 0 || r.cfg.DryRun {
		return nil, ""
	}
	e := r.engine()
	res := writeBack(ctx, e, r.deps.Now(), r.res.Commands)
	if err := joinResults(res); err != nil {
		if r.cfg.StateDir != "" {
			r.notes = append(r.notes, "write-back kept to retry")
		}
		return res, "; engine not told (" + e.Name() + "): " + textsafe.OneLine(err.Error())
	}
	return res, ""
}

// Comment lifetimes. A comment that asks a human to act (persistent)
// stays until the fault is over; the others go by themselves even when no
// later run removes them (the record lost, the other HA endpoint handling
// the recovery): Icinga 2 expires them (add-comment's expiry), and under
// Nagios, whose ADD_SVC_COMMENT has no expiry, reevaluate removes them by
// id from status.dat (and a Nagios restart drops them: not persistent).
const (
	okTTL   = 24 * time.Hour     // the success: a day of history is enough
	holdTTL = 7 * 24 * time.Hour // a hold or deferral: a pause lasts at most a week too
)

// commentTTL is how long a comment lives unless removed; 0 for ever.
func commentTTL(text string, persistent bool) time.Duration {
	switch {
	case persistent:
		return 0
	case commentKey(text) == okKey:
		return okTTL
	}
	return holdTTL
}
