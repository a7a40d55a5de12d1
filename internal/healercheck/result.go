// Package healercheck is check_selfheal's core: a Nagios plugin that
// watches the healer itself. Agent mode asks one worker_listener whether
// it can heal (reachable, our key accepted, clocks close enough) and how
// each of its services stands (budget, last restart); node mode looks at
// the monitoring node's handle_worker state (pauses, the breaker, held and
// failing heals, a writable state directory, the engine's write-back
// channel). RunAgent and RunNode never exit, never write to stdout and
// take their clock from Deps, so tests drive them against a real agent and
// real state directories with a skewed or fixed clock.
//
// The one rule for states: WARNING when healing is held back (a pause,
// the breaker, a budget nearly spent, a clock near the replay window's
// edge), CRITICAL when it cannot heal (agent unreachable, key refused,
// state unwritable), UNKNOWN for the check's own failures. docs/
// check_selfheal.md has the full table.
package healercheck

import (
	"sort"
	"strconv"
	"strings"
	"time"

	gonagios "github.com/atc0005/go-nagios"

	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/textsafe"
)

// Result is the plugin's answer: the state (its exit code) and the exact
// text for stdout.
type Result struct {
	State  nagios.State
	Output string
}

// Deps are the effects the checks use. Zero values get the real ones.
type Deps struct {
	// Now is the plugin's clock: request timestamps, the clock offset and
	// every age are read from it (tests skew it). Round-trip times use
	// the monotonic clock.
	Now func() time.Time
}

func (d Deps) now() time.Time {
	if d.Now == nil {
		return time.Now()
	}
	return d.Now()
}

// DefaultTimeout is -t's default, well under Nagios' service_check_timeout.
const DefaultTimeout = 10 * time.Second

// Output budget, as check_worker's: Nagios 4 keeps 8192 bytes.
const (
	maxLine1  = 300
	maxOutput = 8000
	maxLine   = 400
)

// finding is one judged fact: its state, the text for line 1 (when not
// OK) and its long-output line.
type finding struct {
	state   nagios.State
	summary string // line 1, when the state is not OK
	detail  string // long output; "" = summary
}

// report gathers findings and perfdata and renders them.
type report struct {
	head     string // "agent worker1" or "node"
	okText   string // line 1 when everything is OK
	findings []finding
	perf     []gonagios.PerformanceData
}

func (r *report) add(st nagios.State, summary, detail string) {
	r.findings = append(r.findings, finding{state: st, summary: summary, detail: detail})
}

func (r *report) metric(label, value, uom, warn, crit, lo, hi string) {
	r.perf = append(r.perf, gonagios.PerformanceData{Label: label, Value: value, UnitOfMeasurement: uom,
		Warn: warn, Crit: crit, Min: lo, Max: hi})
}

func (r *report) count(label string, n int, warn, hi string) {
	r.metric(label, strconv.Itoa(n), "", warn, "", "0", hi)
}

// result renders "SELFHEAL <STATE> - <head>: <problems or okText> | perf",
// then one long-output line per finding, most severe first.
func (r *report) result() Result {
	state := nagios.OK
	for _, f := range r.findings {
		state = nagios.Worst(state, f.state)
	}
	fs := append([]finding(nil), r.findings...)
	sort.SliceStable(fs, func(i, j int) bool { return rank(fs[i].state) > rank(fs[j].state) })
	var problems []string
	for _, f := range fs {
		if f.state != nagios.OK {
			problems = append(problems, f.summary)
		}
	}
	text := r.okText
	if len(problems) > 0 {
		text = strings.Join(problems, "; ")
	}
	line1 := clip(oneLine("SELFHEAL "+state.String()+" - "+r.head+": "+text), maxLine1)
	var perf strings.Builder
	for _, pd := range r.perf {
		perf.WriteString(pd.String())
	}
	eol := gonagios.CheckOutputEOL
	var b strings.Builder
	b.WriteString(line1)
	if perf.Len() > 0 {
		b.WriteString(" |" + perf.String())
	}
	b.WriteString(eol)
	if len(fs) == 1 && fs[0].detail == "" {
		fs = nil // line 1 says it all
	}
	for i, f := range fs {
		d := f.detail
		if d == "" {
			d = f.summary
		}
		line := clip(oneLine("["+f.state.String()+"] "+d), maxLine)
		if b.Len()+len(line)+len(eol) > maxOutput-64 {
			b.WriteString("... " + strconv.Itoa(len(fs)-i) + " more lines cut (output limit)" + eol)
			break
		}
		b.WriteString(line + eol)
	}
	return Result{State: state, Output: b.String()}
}

// rank orders findings for output: CRITICAL, WARNING, UNKNOWN, OK (as
// nagios.Worst does).
func rank(s nagios.State) int {
	for i, w := range []nagios.State{nagios.OK, nagios.Unknown, nagios.Warning, nagios.Critical} {
		if s == w {
			return i
		}
	}
	return 1
}

// unknown is the whole answer when the check itself cannot work.
func unknown(head, why string) Result {
	r := report{head: head}
	r.add(nagios.Unknown, why, "")
	return r.result()
}

// oneLine is textsafe's rule for a line of plugin output (no line
// breaks, no '|'), applied to everything that may hold foreign text.
func oneLine(s string) string { return textsafe.OneLine(strings.ToValidUTF8(s, "\uFFFD")) }

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n-3], "") + "..."
}

// ago renders how long before now t was, whole seconds, or says that the
// clock moved when t is in the future.
func ago(now, t time.Time) string {
	if d := t.Sub(now); d >= time.Second {
		return short(d) + " in the future (the clock moved)"
	}
	return short(now.Sub(t)) + " ago"
}

// short is d to the second without zero tails: 2h, 5m12s, 8m, 0s.
func short(d time.Duration) string {
	s := max(d, 0).Round(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// label makes a perfdata label from a service name (protocol names are
// already [a-z0-9._-]; this only guards the rule).
func label(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			return r
		}
		return '_'
	}, s)
}
