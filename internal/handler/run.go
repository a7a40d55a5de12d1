package handler

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/nodestate"
	"github.com/selfheal/selfheal/internal/protocol"
	"github.com/selfheal/selfheal/internal/textsafe"
)

// Run handles one event: decide, ask the agent, say what it answered. It
// is bounded by cfg.Deadline (and ctx) and never panics on bad input:
// flags are validated by the event command (commands.go) before it is called.
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
	zoneNew   bool // the zone rule added this run's restart to its unverified ones
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

func (r *run) store() nodestate.Store {
	return nodestate.Store{Dir: r.cfg.StateDir, Trust: r.cfg.Trust}
}

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
