package check

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	gonagios "github.com/atc0005/go-nagios"

	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/status"
	"github.com/selfheal/selfheal/internal/textsafe"
)

// Output budget. Nagios 4 keeps 8192 bytes of plugin output; we stay
// under it with a margin so truncation never cuts the perfdata.
const (
	maxOutput = 8000
	maxLine1  = 300
	maxPerf   = 3000
)

// failure renders an error through the one error-to-state mapping.
func failure(cfg Config, err error, tm timings) Result {
	st, reason := Classify(err, cfg.TimeoutState)
	return render(cfg, evaluation{items: []item{{state: st, summary: reason}}}, tm, false)
}

func render(cfg Config, ev evaluation, tm timings, answered bool) Result {
	elapsed := tm.end.Sub(tm.start)
	if answered && cfg.Response.Set() {
		if lvl := cfg.Response.Evaluate(elapsed.Seconds()); lvl != nagios.OK {
			ev.items = append(ev.items, item{state: lvl, summary: fmt.Sprintf("response time %.3f s breaks %s range %s",
				elapsed.Seconds(), strings.ToLower(lvl.String()), rangeFor(cfg.Response, lvl))})
		}
	}

	state := nagios.OK
	var problems []item
	var crit counts
	for _, it := range ev.items {
		state = nagios.Worst(state, it.state)
		if it.state != nagios.OK {
			problems = append(problems, it)
		}
		if it.state == nagios.Critical {
			crit.add(it.scope)
		}
	}
	// Most severe first, so the cause that drives the state leads line 1;
	// an echo of the dependency checks after them.
	sort.SliceStable(problems, func(i, j int) bool {
		a, b := problems[i], problems[j]
		if a.state != b.state {
			return nagios.Worst(a.state, b.state) == a.state
		}
		return a.scope != scopeEcho && b.scope == scopeEcho
	})
	var summary string
	switch {
	case len(problems) > 0:
		parts := make([]string, len(problems))
		for i, p := range problems {
			parts[i] = p.summary
		}
		summary = strings.Join(parts, "; ")
		if crit.self == 0 && crit.dependency > 0 {
			summary = "dependency failure (not the worker's own fault): " + summary
		}
	case ev.msg != "":
		summary = ev.msg
	default:
		summary = "status ok"
	}
	line1 := clean("WORKER "+state.String()+" - "+summary, maxLine1)

	perf, omitted := perfdata(cfg, crit, ev.own, ev.perf, tm, answered)
	perfLen := 0
	for _, pd := range perf {
		perfLen += len(pd.String())
	}

	var lines []string
	if ev.info != "" {
		lines = append(lines, ev.info)
	}
	if omitted > 0 { // before the sub-checks, which may be cut themselves
		lines = append(lines, fmt.Sprintf("perfdata of %d metrics left out to stay under the output limit", omitted))
	}
	for _, it := range ev.items {
		if it.long {
			lines = append(lines, "["+it.state.String()+"] "+it.summary)
		}
	}
	long := fitLines(lines, maxOutput-len(line1)-perfLen-64)

	var buf bytes.Buffer
	p := gonagios.NewPlugin()
	p.SkipOSExit()
	p.SetOutputTarget(&buf)
	p.ServiceOutput = line1
	p.ExitStatusCode = int(state)
	// Labels are sanitised and values formatted by us; go-nagios'
	// validator rejects valid ranges such as "0.5" or "-1:".
	_ = p.AddPerfData(true, perf...)
	p.ReturnCheckResults()
	// go-nagios would put perfdata after the long output; we keep it on
	// line 1 ("TEXT | perfdata") where every engine and graphing add-on
	// looks first, and put the sub-checks on the lines after it.
	out := buf.String()
	if long != "" {
		out += long + gonagios.CheckOutputEOL
	}
	return Result{State: state, Output: out}
}

// fitLines joins lines with go-nagios' line end, cutting the tail when it
// would pass budget bytes.
func fitLines(lines []string, budget int) string {
	var b strings.Builder
	for i, l := range lines {
		add := len(l)
		if i > 0 {
			add += len(gonagios.CheckOutputEOL)
		}
		if b.Len()+add > budget-60 {
			fmt.Fprintf(&b, "%s... %d more lines cut (output limit)", gonagios.CheckOutputEOL, len(lines)-i)
			break
		}
		if i > 0 {
			b.WriteString(gonagios.CheckOutputEOL)
		}
		b.WriteString(l)
	}
	return b.String()
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

// reserved labels are check_worker's own; a worker metric of the same name
// (in any case: go-nagios keys perfdata by the lower-cased label) is renamed
// with a numeric suffix. The counters matter most: a worker must not be able
// to replace them.
var reserved = []string{"time", "time_connect", "time_tls", "time_firstbyte", "size", "heartbeat_age", "uptime",
	status.PerfCriticalSelf, status.PerfCriticalDependency}

func perfdata(cfg Config, crit counts, own, worker []gonagios.PerformanceData, tm timings, answered bool) (out []gonagios.PerformanceData, omitted int) {
	// First, so that the perfdata cap never leaves them out.
	out = append(out,
		gonagios.PerformanceData{Label: status.PerfCriticalSelf, Value: strconv.Itoa(crit.self), Min: "0"},
		gonagios.PerformanceData{Label: status.PerfCriticalDependency, Value: strconv.Itoa(crit.dependency), Min: "0"})
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
		out = append(out, gonagios.PerformanceData{Label: "size", Value: strconv.Itoa(tm.size), UnitOfMeasurement: "B", Min: "0"})
	}
	out = append(out, own...)
	used := map[string]bool{}
	size := 0
	for _, pd := range out {
		used[pd.Label] = true
		size += len(pd.String())
	}
	for _, r := range reserved {
		used[r] = true
	}
	for _, pd := range worker {
		base := label(pd.Label)
		pd.Label = base
		for n := 2; used[strings.ToLower(pd.Label)]; n++ {
			pd.Label = base + "_" + strconv.Itoa(n)
		}
		if size+len(pd.String()) > maxPerf {
			omitted++
			continue
		}
		used[strings.ToLower(pd.Label)] = true
		size += len(pd.String())
		out = append(out, pd)
	}
	return out, omitted
}

// label makes a perfdata label safe: no quotes, "=", spaces or "|".
func label(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("_-.:/", r)):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 64 {
			break
		}
	}
	if b.Len() == 0 {
		return "metric"
	}
	return b.String()
}

// clean makes worker text safe for one line of plugin output: valid
// UTF-8 (a run of bad bytes reads as one U+FFFD), no line breaks or
// control characters (textsafe.Line), no "|" (Nagios would cut there and
// read perfdata), at most max bytes.
func clean(s string, max int) string {
	// A run of bad bytes becomes one U+FFFD here, as it always has.
	s = textsafe.OneLine(strings.ToValidUTF8(s, "\uFFFD"))
	if len(s) <= max {
		return s
	}
	cut := max - 3
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
