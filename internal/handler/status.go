package handler

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/selfheal/selfheal/internal/breaker"
	"github.com/selfheal/selfheal/internal/nodestate"
	"github.com/selfheal/selfheal/internal/textsafe"
)

// Status is `handle_worker status`: the pauses, the zone rule and the
// node's breaker, and
// per service the agent's last answer (budget used, back-off), what is
// held back and why. It reads only.
func Status(ctx context.Context, s nodestate.Store, j Judgment, now time.Time) (string, error) {
	recs, bad, err := s.AllRecords()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	ps, perr := s.Pauses(now)
	switch {
	case perr != nil:
		fmt.Fprintf(&b, "pauses: unreadable: %s\n", textsafe.OneLine(perr.Error()))
	case len(ps) == 0:
		b.WriteString("pauses: none\n")
	}
	for _, p := range ps {
		fmt.Fprintf(&b, "paused: %s by %s until %s (%s left): %s\n", p.Scope(), p.By, p.Until.Format(time.RFC3339), roundDur(p.Until.Sub(now)), p.Reason)
	}
	if j.Ignore[nodestate.RuleBreaker] {
		b.WriteString("breaker: switched off (--ignore breaker)\n")
	} else if d, err := s.Open(); err != nil {
		fmt.Fprintf(&b, "breaker: unreadable: %s\n", textsafe.OneLine(err.Error()))
	} else {
		b.WriteString(zoneStatus(d, j, now))
		v, err := breaker.Store{Dir: d, Name: nodestate.BreakerFile, Config: j.Breaker}.Current(ctx, now)
		d.Close()
		switch {
		case err != nil:
			fmt.Fprintf(&b, "breaker: unreadable: %s\n", textsafe.OneLine(err.Error()))
		case v.State == breaker.Closed:
			fmt.Fprintf(&b, "breaker: closed (%d of at most %d services needed a restart within %s)\n", v.Count, j.Breaker.Threshold, j.Breaker.Window)
		default:
			fmt.Fprintf(&b, "breaker: %s since %s: %d services needed a restart within %s; next step in %s\n",
				v.State, v.Since.Format(time.RFC3339), v.Count, j.Breaker.Window, roundDur(v.RetryAfter))
		}
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST/SERVICE\tLAST ANSWER\tAGO\tBUDGET\tHELD BACK")
	for _, r := range recs {
		budget := "-"
		if r.Budget != nil {
			budget = fmt.Sprintf("%d/%d per %s", r.Budget.Used, r.Budget.Max, time.Duration(r.Budget.WindowS)*time.Second)
		}
		held := "-"
		if h := r.Held; h != nil {
			held = fmt.Sprintf("%s since %s (fault %s)", h.Rule, roundDur(now.Sub(h.Since)), h.Fault)
			switch {
			case now.Before(h.RetryAt) && (h.Rule == kindUnreachable || h.Rule == kindNoReply):
				held += ", asked again in " + roundDur(h.RetryAt.Sub(now)).String()
			case now.Before(h.RetryAt):
				held += ", agent allows in " + roundDur(h.RetryAt.Sub(now)).String()
			}
		}
		if p := nodestate.PausedFor(ps, r.Host, r.Service); p != nil && held == "-" {
			held = "paused (" + p.Scope() + ")"
		}
		last := r.Result
		if r.Outcome != "" && r.Outcome != r.Result {
			last += " (" + r.Outcome + ")"
		}
		fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%s\n", r.Host, r.Service, last, ago(now, r.At), budget, held)
	}
	tw.Flush()
	for _, n := range bad {
		fmt.Fprintf(&b, "unreadable record: %s (replaced by the next answer for it)\n", n)
	}
	return b.String(), nil
}

// ago is "12s ago", or says the clock moved when t is in the future.
func ago(now, t time.Time) string {
	switch d := t.Sub(now); {
	case d > time.Second:
		return roundDur(d).String() + " in the future (the clock moved back)"
	case d > 0:
		return "0s ago"
	}
	return roundDur(now.Sub(t)).String() + " ago"
}
