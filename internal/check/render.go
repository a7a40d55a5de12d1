package check

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/plugin"
	"github.com/selfheal/selfheal/internal/status"
)

// failure renders an error through the one error-to-state mapping.
func failure(cfg Config, err error, tm timings) Result {
	st, reason := Classify(err, cfg.TimeoutState)
	return render(cfg, evaluation{items: []item{{state: st, summary: reason}}}, tm, false)
}

// render hands the evaluation to the plugins' one renderer
// (internal/plugin): line 1 "WORKER STATE - causes | perfdata", most
// severe first, then the info line and the sub-checks.
func render(cfg Config, ev evaluation, tm timings, answered bool) Result {
	elapsed := tm.end.Sub(tm.start)
	if answered && cfg.Response.Set() {
		if lvl := cfg.Response.Evaluate(elapsed.Seconds()); lvl != nagios.OK {
			ev.items = append(ev.items, item{state: lvl, summary: fmt.Sprintf("response time %.3f s breaks %s range %s",
				elapsed.Seconds(), strings.ToLower(lvl.String()), rangeFor(cfg.Response, lvl))})
		}
	}

	a := plugin.Answer{Prefix: "WORKER", OK: ev.msg}
	if a.OK == "" {
		a.OK = "status ok"
	}
	var crit counts
	for _, it := range ev.items {
		a.Findings = append(a.Findings, plugin.Finding{State: it.state, Summary: it.summary, Short: !it.long, Echo: it.scope == scopeEcho})
		if it.state == nagios.Critical {
			crit.add(it.scope)
		}
	}
	if crit.self == 0 && crit.dependency > 0 {
		a.Head = "dependency failure (not the worker's own fault): "
	}
	perf, omitted := perfdata(cfg, crit, ev.own, ev.perf, tm, answered)
	a.Perf = perf
	if ev.info != "" {
		a.Info = append(a.Info, ev.info)
	}
	if omitted > 0 { // before the sub-checks, which may be cut themselves
		a.Info = append(a.Info, fmt.Sprintf("perfdata of %d metrics left out to stay under the output limit", omitted))
	}
	return Result{State: a.State(), Output: a.Render()}
}

// counts are the CRITICAL findings by scope, printed in every answer as the
// critical_self and critical_dependency perfdata that handle_worker reads
// (status.ScopeFromPerfdata).
type counts struct{ self, dependency int }

func (c *counts) add(s scope) {
	switch s {
	case scopeSelf:
		c.self++
	case scopeDependency:
		c.dependency++
	}
}

// reserved labels are check_worker's own; a worker metric of the same name,
// in any case (graphing add-ons such as PNP4Nagios file metrics under
// case-insensitive names), is renamed with a numeric suffix. The counters
// matter most: a worker must not be able to replace them.
var reserved = []string{"time", "time_connect", "time_tls", "time_firstbyte", "size", "heartbeat_age", "uptime",
	status.PerfCriticalSelf, status.PerfCriticalDependency}

func perfdata(cfg Config, crit counts, own, worker []plugin.Perf, tm timings, answered bool) (out []plugin.Perf, omitted int) {
	// First, so that the perfdata cap never leaves them out.
	out = append(out,
		plugin.Perf{Label: status.PerfCriticalSelf, Value: strconv.Itoa(crit.self), Min: "0"},
		plugin.Perf{Label: status.PerfCriticalDependency, Value: strconv.Itoa(crit.dependency), Min: "0"})
	sec := func(label string, from, to time.Time) {
		if from.IsZero() || to.IsZero() {
			return
		}
		out = append(out, perfSeconds(label, to.Sub(from), "", ""))
	}
	total := perfSeconds("time", tm.end.Sub(tm.start), cfg.Response.WarnString(), cfg.Response.CritString())
	total.Max = seconds(cfg.Timeout)
	out = append(out, total)
	sec("time_connect", tm.connStart, tm.connDone)
	sec("time_tls", tm.tlsStart, tm.tlsDone)
	sec("time_firstbyte", tm.start, tm.firstByte)
	if answered {
		out = append(out, plugin.Perf{Label: "size", Value: strconv.Itoa(tm.size), UOM: "B", Min: "0"})
	}
	out = append(out, own...)
	used := map[string]bool{}
	size := 0
	for _, pd := range out {
		used[pd.Label] = true
		size += len(pd.String()) + 1 // and the space before it
	}
	for _, r := range reserved {
		used[r] = true
	}
	for _, pd := range worker {
		base := plugin.Label(pd.Label)
		pd.Label = base
		for n := 2; used[strings.ToLower(pd.Label)]; n++ {
			pd.Label = base + "_" + strconv.Itoa(n)
		}
		if size+len(pd.String())+1 > plugin.MaxPerf {
			omitted++
			continue
		}
		used[strings.ToLower(pd.Label)] = true
		size += len(pd.String()) + 1
		out = append(out, pd)
	}
	// Printed by label, as they always have been: the columns a person
	// reads stay put whichever timings a run had.
	sort.SliceStable(out, func(i, j int) bool { return strings.ToLower(out[i].Label) < strings.ToLower(out[j].Label) })
	return out, omitted
}
