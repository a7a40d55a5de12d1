package check

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/plugin"
	"github.com/selfheal/selfheal/internal/status"
	"github.com/selfheal/selfheal/internal/thresholds"
)

// item is one judged fact. Non-OK items make up line 1 (summary); long
// lines are the sub-check listing under it.
type item struct {
	state   nagios.State
	summary string // shown on line 1 when state is not OK
	long    bool   // also listed as a long-output line "[STATE] summary"
	scope   scope  // whose fault a CRITICAL is, for the critical_* counters
}

// scope sorts a finding for the counters handle_worker reads. The zero
// value is the worker's own: whatever nobody scoped may be healed.
type scope uint8

const (
	scopeSelf       scope = iota // the worker's own, or check_worker's (timeout, 5xx, thresholds...)
	scopeDependency              // a check the worker scoped "dependency"
	scopeEcho                    // the document's status repeating its dependency checks: counted in neither
)

// evaluation is everything judged from a status document.
type evaluation struct {
	items []item
	info  string        // version/uptime/heartbeat line, "" if none of them
	msg   string        // the worker's own message (sanitised)
	own   []plugin.Perf // heartbeat_age, uptime
	perf  []plugin.Perf // the worker's metrics
}

// evaluate applies the precedence rule of docs/status-contract.md: the
// overall state is the worst of the worker's status, its checks, the
// metric thresholds, the heartbeat age and the uptime.
func evaluate(cfg Config, d *status.Document, now time.Time) evaluation {
	var ev evaluation
	ev.msg = plugin.Line(d.Message, 200)

	st, _ := status.ParseState(d.Status) // validated by status.Parse
	if st != nagios.OK {
		s := "worker reports " + st.String()
		if ev.msg != "" {
			s += ": " + ev.msg
		}
		ev.items = append(ev.items, item{state: st, summary: s})
	}
	var selfCrit, depCrit bool
	for _, c := range d.Checks {
		cs, _ := status.ParseState(c.Status)
		it := item{state: cs, long: true}
		s := "check " + plugin.Line(c.Name, 60)
		if sc, _ := status.ParseScope(c.Scope); sc == status.ScopeDependency {
			s += " (dependency)"
			it.scope = scopeDependency
		}
		s += " " + cs.String()
		if m := plugin.Line(c.Message, 160); m != "" {
			s += ": " + m
		}
		it.summary = s
		if cs == nagios.Critical {
			selfCrit = selfCrit || it.scope == scopeSelf
			depCrit = depCrit || it.scope == scopeDependency
		}
		ev.items = append(ev.items, it)
	}
	if st == nagios.Critical && depCrit && !selfCrit {
		// A worker that is critical because its database is: the status
		// says no more than its checks do, and is not a fault of its own.
		ev.items[0].scope = scopeEcho
	}

	var info []string
	if v := plugin.Line(d.Version, 40); v != "" {
		info = append(info, "version "+v)
	}
	if d.StartedAt != nil {
		up := now.Sub(*d.StartedAt).Truncate(time.Second)
		if up < 0 {
			up = 0 // clock skew between hosts: a start in the future is "just now"
		}
		info = append(info, "up "+up.String())
		pd := perfSeconds("uptime", up, "", "")
		if cfg.MinUptime > 0 {
			pd.Warn = seconds(cfg.MinUptime) + ":"
			if up < cfg.MinUptime {
				ev.items = append(ev.items, item{state: nagios.Warning,
					summary: fmt.Sprintf("up only %s (min-uptime %s): restarted recently", up, cfg.MinUptime)})
			}
		}
		ev.own = append(ev.own, pd)
	} else if cfg.MinUptime > 0 {
		ev.items = append(ev.items, item{state: nagios.Unknown,
			summary: "no started_at in the status document (--min-uptime needs it)"})
	}
	if d.Heartbeat != nil {
		age := now.Sub(*d.Heartbeat).Truncate(time.Millisecond)
		if age < 0 {
			age = 0
		}
		info = append(info, "heartbeat "+age.Truncate(time.Second).String()+" ago")
		ev.own = append(ev.own, perfSeconds("heartbeat_age", age, seconds(cfg.MaxAgeWarn), seconds(cfg.MaxAgeCrit)))
		switch {
		case cfg.MaxAgeCrit > 0 && age > cfg.MaxAgeCrit:
			ev.items = append(ev.items, item{state: nagios.Critical,
				summary: fmt.Sprintf("heartbeat %s old (critical above %s): worker stopped making progress", age.Truncate(time.Second), cfg.MaxAgeCrit)})
		case cfg.MaxAgeWarn > 0 && age > cfg.MaxAgeWarn:
			ev.items = append(ev.items, item{state: nagios.Warning,
				summary: fmt.Sprintf("heartbeat %s old (warning above %s)", age.Truncate(time.Second), cfg.MaxAgeWarn)})
		}
	} else if cfg.MaxAgeWarn > 0 || cfg.MaxAgeCrit > 0 {
		ev.items = append(ev.items, item{state: nagios.Unknown,
			summary: "no heartbeat in the status document (--max-age needs it)"})
	}
	ev.info = strings.Join(info, ", ")

	rules := map[string]thresholds.Pair{}
	for _, r := range cfg.Metrics {
		rules[r.Name] = r.Pair
	}
	seen := map[string]bool{}
	for _, m := range d.Metrics {
		p, ruled := rules[m.Name]
		if ruled && !seen[m.Name] {
			seen[m.Name] = true
			lvl := p.Evaluate(m.Value)
			s := fmt.Sprintf("metric %s=%s%s", plugin.Line(m.Name, 60), number(m.Value), uom(m.UOM))
			if lvl != nagios.OK {
				s += " breaks " + strings.ToLower(lvl.String()) + " range " + rangeFor(p, lvl)
			}
			ev.items = append(ev.items, item{state: lvl, summary: s, long: true})
		}
		pd := plugin.Perf{Label: m.Name, Value: number(m.Value), UOM: uom(m.UOM)}
		if ruled {
			pd.Warn, pd.Crit = p.WarnString(), p.CritString()
		}
		if m.Min != nil {
			pd.Min = number(*m.Min)
		}
		if m.Max != nil {
			pd.Max = number(*m.Max)
		}
		ev.perf = append(ev.perf, pd)
	}
	for _, r := range cfg.Metrics {
		if !seen[r.Name] {
			ev.items = append(ev.items, item{state: nagios.Unknown, long: true,
				summary: "metric " + plugin.Line(r.Name, 60) + " not reported by the worker"})
		}
	}
	return ev
}

func rangeFor(p thresholds.Pair, l nagios.State) string {
	if l == nagios.Critical {
		return p.CritString()
	}
	return p.WarnString()
}

// number renders a perfdata value: plain decimal, never exponent notation.
func number(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func seconds(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

func perfSeconds(label string, d time.Duration, warn, crit string) plugin.Perf {
	return plugin.Perf{Label: label, Value: strconv.FormatFloat(d.Seconds(), 'f', 6, 64),
		UOM: "s", Warn: warn, Crit: crit, Min: "0"}
}

// uom keeps only the units the plugin guidelines define; anything else
// is dropped rather than breaking the perfdata parser of the graphing tool.
func uom(u string) string {
	switch u {
	case "", "s", "ms", "us", "%", "B", "KB", "MB", "GB", "TB", "c":
		return u
	}
	return ""
}
