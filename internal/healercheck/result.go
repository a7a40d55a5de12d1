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
	"strconv"
	"strings"
	"time"

	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/plugin"
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
	perf     []plugin.Perf
}

func (r *report) add(st nagios.State, summary, detail string) {
	r.findings = append(r.findings, finding{state: st, summary: summary, detail: detail})
}

func (r *report) metric(label, value, uom, warn, crit, lo, hi string) {
	r.perf = append(r.perf, plugin.Perf{Label: label, Value: value, UOM: uom, Warn: warn, Crit: crit, Min: lo, Max: hi})
}

func (r *report) count(label string, n int, warn, hi string) {
	r.metric(label, strconv.Itoa(n), "", warn, "", "0", hi)
}

// result renders "SELFHEAL <STATE> - <head>: <problems or okText> | perf",
// then one long-output line per finding, most severe first, through the
// plugins' one renderer (internal/plugin).
func (r *report) result() Result {
	a := plugin.Answer{Prefix: "SELFHEAL", Head: r.head + ": ", OK: r.okText, Perf: r.perf}
	for _, f := range r.findings {
		a.Findings = append(a.Findings, plugin.Finding{State: f.state, Summary: f.summary, Detail: f.detail})
	}
	if len(a.Findings) == 1 && a.Findings[0].Detail == "" {
		a.Findings[0].Short = true // line 1 says it all
	}
	return Result{State: a.State(), Output: a.Render()}
}

// unknown is the whole answer when the check itself cannot work.
func unknown(head, why string) Result {
	r := report{head: head}
	r.add(nagios.Unknown, why, "")
	return r.result()
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
