package handler

import (
	"context"
	"strings"
	"time"

	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/nodestate"
	"github.com/selfheal/selfheal/internal/textsafe"
)

// maxPendingAge bounds how long a failed write-back is retried: a
// comment a day late tells no one anything.
const maxPendingAge = 24 * time.Hour

// WriteBackStats is what reevaluate's write-back pass did.
type WriteBackStats struct {
	Written, Failed, Dropped, Expired int
}

// RetryWriteBacks is reevaluate's write-back pass. It writes what earlier
// runs could not (Record.Pending: the engine was down, slow or full), so
// that every heal and every hold ends with its comment even when no later
// event comes for the service; and under Nagios, whose ADD_SVC_COMMENT
// has no expiry, it removes the handler's comments that outlived
// commentTTL, by their ids in status (Icinga 2 expires its own). eng is
// the write-back (nil: nothing can be written, nothing is done).
func RetryWriteBacks(ctx context.Context, store nodestate.Store, eng Engine, status *nagios.StatusData, deps Deps) WriteBackStats {
	var st WriteBackStats
	if eng == nil {
		return st
	}
	deps.defaults()
	recs, _, err := store.AllRecords()
	if err != nil {
		deps.Log.Warn().Str("mode", "reevaluate").Err(err).Msg("write-backs not retried: the state is unreadable")
		return st
	}
	for _, rec := range recs {
		if len(rec.Pending) == 0 || ctx.Err() != nil {
			continue
		}
		now := deps.Now()
		var cmds []Command
		for _, p := range rec.Pending {
			if now.Sub(p.Since) <= maxPendingAge {
				cmds = append(cmds, Command(p.Cmd))
			}
		}
		var results []WriteResult
		if len(cmds) > 0 {
			results = writeBack(ctx, eng, now, cmds)
		}
		err := store.Update(ctx, rec.Host, rec.Service, func(cur *nodestate.Record) bool {
			if cur == nil {
				return false
			}
			n := len(cur.Pending)
			cur.Pending = deleteOld(cur.Pending, now)
			st.Dropped += n - len(cur.Pending)
			// Only what is still pending: a handler run may have
			// written (or superseded) some since the read.
			var mine []WriteResult
			for _, r := range results {
				if containsCmd(cur.Pending, r.Cmd) {
					mine = append(mine, r)
				}
			}
			apply(cur, mine, now, cur.Fault)
			return true
		})
		for _, r := range results {
			if r.Err != nil {
				st.Failed++
			} else {
				st.Written++
			}
		}
		if err != nil {
			deps.Log.Warn().Str("mode", "reevaluate").Str("host", rec.Host).Str("service", rec.Service).Err(err).
				Msg("write-back retried, record not updated")
		}
	}
	if _, api := eng.(IcingaEngine); !api && status != nil {
		st.Expired = expireNagiosComments(ctx, eng, status, deps)
	}
	if st != (WriteBackStats{}) {
		deps.Log.Info().Str("mode", "reevaluate").Int("writebacks_written", st.Written).Int("writebacks_failed", st.Failed).
			Int("writebacks_dropped", st.Dropped).Int("comments_expired", st.Expired).Msg("write-backs")
	}
	return st
}

func deleteOld(ps []nodestate.Pending, now time.Time) []nodestate.Pending {
	out := ps[:0:0]
	for _, p := range ps {
		if now.Sub(p.Since) <= maxPendingAge {
			out = append(out, p)
		}
	}
	return out
}

func containsCmd(ps []nodestate.Pending, c Command) bool {
	for _, p := range ps {
		if p.Cmd == string(c) {
			return true
		}
	}
	return false
}

// expireNagiosComments removes, in one write, the handler's comments in
// status that are not persistent and older than their lifetime.
func expireNagiosComments(ctx context.Context, eng Engine, status *nagios.StatusData, deps Deps) int {
	now := deps.Now()
	var cmds []Command
	for _, c := range status.Comments {
		if c.Author != Author || c.Persistent || c.EntryTime.IsZero() || strings.Trim(c.ID, "0123456789") != "" {
			continue
		}
		if ttl := commentTTL(c.Text, false); ttl > 0 && now.Sub(c.EntryTime) > ttl {
			if cmd, ok := DelSvcComment(c.ID); ok {
				cmds = append(cmds, cmd)
			}
		}
	}
	// One write(2) of at most PIPE_BUF: the rest waits for the next run.
	for n := 0; n < len(cmds); n += 64 {
		batch := cmds[n:min(n+64, len(cmds))]
		if err := eng.Write(ctx, now, batch...); err != nil {
			deps.Log.Warn().Str("mode", "reevaluate").Str("error", textsafe.OneLine(err.Error())).Msg("expired comments not removed")
			return n
		}
	}
	return len(cmds)
}

// writeEngine is reevaluate's write-back: the API, or the command file.
func (c ReevalConfig) writeEngine() Engine {
	switch {
	case c.Engine != nil:
		return c.Engine
	case c.CommandFile != "":
		return NagiosEngine{CommandFile: c.CommandFile}
	}
	return nil
}

// ConfigError writes the persistent "auto-healing impossible" comment that
// main writes when its own configuration stops a heal, and records it
// (best effort: the state directory may be what is wrong), so that the
// recovery removes it like any other and a failed write is retried.
func ConfigError(ctx context.Context, eng Engine, store nodestate.Store, host, service, text string, now time.Time) error {
	res := writeBack(ctx, eng, now, []Command{AddSvcComment(host, service, true, Author, text)})
	if store.Dir != "" {
		fresh := false
		err := store.Update(ctx, host, service, func(cur *nodestate.Record) bool {
			if cur == nil {
				fresh = true
				return false
			}
			apply(cur, res, now, cur.Fault)
			return true
		})
		if err == nil && fresh {
			rec := nodestate.Record{Host: host, Service: service, At: now.UTC(), Source: "event", Fault: "-", Result: kindError, Summary: text}
			apply(&rec, res, now, "-")
			_ = store.Write(ctx, rec)
		}
	}
	return joinResults(res)
}
