package handler

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/nodestate"
	"github.com/selfheal/selfheal/internal/protocol"
	"github.com/selfheal/selfheal/internal/textsafe"
)

// SendConfig is one manual `handle_worker send`.
type SendConfig struct {
	Verb protocol.Verb
	Conn Conn
	// Fault is the fault id sent; "" makes a manual one for a restart
	// (protocol.NewManualFault) and sends "-" for the other verbs.
	Fault    string
	Deadline time.Duration
	// StateDir, HostName and ServiceDesc name the advisory record the
	// agent's answer to a restart or start is kept in; StateDir "" keeps
	// none. Use the Nagios host name and service description, so that a
	// dry run of the event handler shows it.
	StateDir    string
	HostName    string
	ServiceDesc string
	// Trust is whose StateDir must be (see Store); the zero value is root's.
	Trust fsutil.Trust
}

// records says whether a verb (re)starts the worker, so that its answer is
// worth keeping for the event handler's dry run.
func records(v protocol.Verb) bool { return v == protocol.VerbRestart || v == protocol.VerbStart }

// Send runs one manual request. It bypasses the policy (a human decided),
// not the agent: a manual restart has a fault id of its own and obeys the
// agent's restart budget like any other. Line may span several lines (the
// action's output).
func Send(ctx context.Context, cfg SendConfig, deps Deps) Result {
	deps.defaults()
	ctx, cancel := context.WithTimeout(ctx, cfg.Deadline)
	defer cancel()
	fault := cfg.Fault
	var since time.Time
	if fault == "" && cfg.Verb == protocol.VerbRestart {
		f, err := protocol.NewManualFault(deps.Now())
		if err != nil {
			return Result{Code: ExitFailed, Err: err, Line: "cannot make a fault id: " + err.Error()}
		}
		// A person's restart is a fault of its own that begins now: the
		// agent never answers it with a restart that ended before.
		fault, since = f, deps.Now()
	}
	if fault == "" {
		fault = "-"
	}
	log := deps.Log.With().Str("mode", "send").Str("verb", string(cfg.Verb)).Str("target", cfg.Conn.Target).
		Str("addr", cfg.Conn.Addr()).Str("agent", cfg.Conn.Agent).Str("fault", fault).
		Str("host", cfg.HostName).Str("service", cfg.ServiceDesc).Logger()

	var res Result
	a, err := request(ctx, cfg.Deadline, protocol.Call{Verb: cfg.Verb, Fault: fault, Since: since}, cfg.Conn, deps)
	if err != nil {
		res.Code, res.Err, res.Line = ExitUsage, err, "configuration error: "+textsafe.OneLine(err.Error())
		log.Error().Int("exit", res.Code).AnErr("error", err).Msg(res.Line)
		return res
	}
	res.Attempts, res.Reply, res.Verdict, res.AgentOld = a.attempts, a.reply(), a.kind, a.old
	var notes []string
	if fault != "-" {
		notes = append(notes, "fault "+fault)
	}
	if b := a.rep.Budget; a.kind == kindHealed && b.Max > 0 && b.Used >= b.Max {
		notes = append(notes, fmt.Sprintf("note: the agent's restart budget is now spent (%d/%d in %s): automatic restarts are suspended until it frees up in %s",
			b.Used, b.Max, b.Window, roundDur(b.RetryAfter)))
	}
	recorded := false
	if records(cfg.Verb) && cfg.StateDir != "" {
		store := nodestate.Store{Dir: cfg.StateDir, Trust: cfg.Trust}
		if werr := writeRecord(ctx, store, cfg.HostName, cfg.ServiceDesc, "manual", a, deps.Now()); werr != nil {
			notes = append(notes, "warning: answer not recorded: "+textsafe.OneLine(werr.Error()))
		} else {
			recorded = true
			notes = append(notes, "recorded in "+store.Path(cfg.HostName, cfg.ServiceDesc))
		}
	}
	summary := a.summary()
	if s, ok := statusText(cfg.Verb, a); ok {
		summary = s
	}
	var b strings.Builder
	b.WriteString(summary)
	for _, n := range notes {
		b.WriteString("; " + n)
	}
	if res.Reply != nil {
		if out := strings.TrimRight(res.Reply.Output, "\n"); out != "" {
			fmt.Fprintf(&b, "\n--- output (exit %d, %s) ---\n%s", res.Reply.ExitCode, roundDur(res.Reply.Duration), out)
		}
	}
	res.Line = b.String()
	res.Code = a.code()
	level := zerolog.InfoLevel
	if res.Code != ExitOK {
		res.Err = a.failure()
		level = zerolog.ErrorLevel
	}
	e := log.WithLevel(level).Int("exit", res.Code).Int("attempts", res.Attempts).Str("result", a.kind).Bool("recorded", recorded)
	e = logReply(e, res.Reply)
	if res.AgentOld {
		e = e.Bool("agent_old", true)
	}
	if res.Err != nil {
		e = e.AnErr("error", res.Err)
	}
	e.Msg(summary)
	return res
}

// statusText: a status action's non-zero exit means "not running" (the
// LSB status convention the actions follow), not a failed action. The exit
// code stays a.code()'s, so a script can still test it.
func statusText(verb protocol.Verb, a answer) (string, bool) {
	if verb != protocol.VerbStatus || !a.final || a.rep.Outcome != protocol.OutcomeFailed {
		return "", false
	}
	return fmt.Sprintf("status %s on %s: not running (status exit %d)", a.conn.Target, a.conn.Addr(), a.rep.ExitCode), true
}
