package handler

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/selfheal/selfheal/internal/protocol"
)

// SendConfig is one manual `handle_worker send`.
type SendConfig struct {
	Verb     protocol.Verb
	Conn     Conn
	Deadline time.Duration
	// StateDir, HostName and ServiceDesc name the budget state to record
	// a manual restart in; StateDir "" records nothing. Use the Nagios
	// host name and service description so that the event handler sees it.
	StateDir    string
	HostName    string
	ServiceDesc string
	Budget      Budget // for pruning and for telling the human where the budget stands
}

// counts says whether a verb (re)starts the worker and so uses budget.
func counts(v protocol.Verb) bool { return v == protocol.VerbRestart || v == protocol.VerbStart }

// Send runs one manual request. It bypasses the policy and the budget (a
// human decided) but records a restart or start in the budget state, so
// that the event handler counts it. The episode is left alone: a manual
// restart while the service is OK must not suppress the next fault's
// automatic restart. Line may span several lines (the action's output).
func Send(ctx context.Context, cfg SendConfig, deps Deps) Result {
	deps.defaults()
	ctx, cancel := context.WithTimeout(ctx, cfg.Deadline)
	defer cancel()
	log := deps.Log.With().Str("mode", "send").Str("verb", string(cfg.Verb)).Str("target", cfg.Conn.Target).
		Str("addr", cfg.Conn.Addr()).Str("host", cfg.HostName).Str("service", cfg.ServiceDesc).Logger()
	var notes []string
	var res Result
	id := newID()
	store := Store{Dir: cfg.StateDir}
	recorded := false
	if counts(cfg.Verb) && cfg.StateDir != "" {
		now := deps.Now()
		var v Verdict
		err := store.Update(ctx, cfg.HostName, cfg.ServiceDesc, func(st *StateFile) error {
			v = cfg.Budget.Check(st.Restarts, now)
			st.Restarts = append(cfg.Budget.prune(st.Restarts, now), Record{ID: id, At: now.UTC(), Source: "manual",
				Verb: string(cfg.Verb), Outcome: RecordPending})
			return nil
		})
		if err == nil && v.Used+1 >= cfg.Budget.Max {
			notes = append(notes, fmt.Sprintf("note: %d of %d restarts in %s now used; automatic restarts are suspended until the window frees up",
				v.Used+1, cfg.Budget.Max, cfg.Budget.Window))
		}
		if err != nil {
			notes = append(notes, "warning: not recorded in the budget state: "+oneLine(err.Error()))
		} else {
			recorded = true
		}
	}

	x := request(ctx, cfg.Deadline, cfg.Verb, cfg.Conn, deps)
	res.Attempts, res.Reply = x.attempts, x.reply()
	if recorded {
		if uerr := store.SetOutcome(ctx, cfg.HostName, cfg.ServiceDesc, id, x.record(), x.summary); uerr != nil {
			notes = append(notes, "warning: outcome not recorded: "+oneLine(uerr.Error()))
		} else {
			notes = append(notes, "recorded in "+store.Path(cfg.HostName, cfg.ServiceDesc))
		}
	}
	var b strings.Builder
	b.WriteString(x.summary)
	for _, n := range notes {
		b.WriteString("; " + n)
	}
	if res.Reply != nil {
		if out := strings.TrimRight(res.Reply.Output, "\n"); out != "" {
			fmt.Fprintf(&b, "\n--- output (exit %d, %s) ---\n%s", res.Reply.ExitCode, roundDur(res.Reply.Duration), out)
		}
	}
	res.Line = b.String()
	level := zerolog.InfoLevel
	if !x.ok() {
		res.Code, res.Err = ExitFailed, x.failure()
		level = zerolog.ErrorLevel
	}
	e := log.WithLevel(level).Int("exit", res.Code).Int("attempts", res.Attempts).Bool("recorded", recorded)
	if res.Reply != nil {
		e = e.Str("outcome", string(res.Reply.Outcome)).Int("action_exit", res.Reply.ExitCode).Dur("action_duration", res.Reply.Duration)
	}
	if res.Err != nil {
		e = e.AnErr("error", res.Err)
	}
	e.Msg(x.summary)
	return res
}
