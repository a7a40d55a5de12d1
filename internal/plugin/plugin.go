// Package plugin renders a Nagios plugin's answer: the one renderer of
// check_worker and check_selfheal. It owns what both must agree on: the
// output budget, the order of findings (most severe first), the cleaning
// of foreign text, the perfdata grammar and its label rule.
//
// The answer is "PREFIX STATE - TEXT | perfdata" on line 1, where every
// engine and graphing add-on looks first, then the long output, one line
// per finding, cut to the budget. Lines end in "\n".
//
// It is ours rather than go-nagios': go-nagios was used only as a
// perfdata formatter (its Plugin puts perfdata after the long output,
// sorts it, keys it by lower-cased label and, in v0.20.0, accepts '|' in
// a label and "1,5" as a value), and linking it cost package
// initialisation (compress/gzip, hash/crc32's tables) in every plugin
// start; docs/architecture.md has the measurement.
package plugin

import (
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/textsafe"
)

// Output budget. Nagios 4 keeps 8192 bytes of plugin output; staying under
// it with a margin means a cut never lands in the perfdata on line 1.
const (
	MaxOutput = 8000 // the whole answer
	MaxLine1  = 300  // line 1's text, before the perfdata
	MaxLine   = 400  // one long-output line
	MaxPerf   = 3000 // the perfdata; callers drop metrics past it
)

// Finding is one judged fact.
type Finding struct {
	State   nagios.State
	Summary string // on line 1 when State is not OK
	Detail  string // the long-output line "[STATE] Detail"; "" = Summary
	Short   bool   // line 1 only: no long-output line
	Echo    bool   // after the other findings of its state (a repeat of a cause told first)
}

// Answer is one plugin run's answer before rendering.
type Answer struct {
	Prefix   string    // "WORKER", "SELFHEAL"
	Head     string    // before the text of line 1: "node: "
	OK       string    // line 1's text when no finding is a problem
	Findings []Finding // line 1 takes the problems, the long output all but Short ones
	Info     []string  // long-output lines before the findings'
	Perf     []Perf    // in this order
}

// State is the worst state of the findings, OK without any.
func (a Answer) State() nagios.State {
	st := nagios.OK
	for _, f := range a.Findings {
		st = nagios.Worst(st, f.State)
	}
	return st
}

// Render is the exact text for stdout; its exit code is a.State().
func (a Answer) Render() string {
	st := a.State()
	fs := Sorted(a.Findings)
	var problems []string
	for _, f := range fs {
		if f.State != nagios.OK {
			problems = append(problems, f.Summary)
		}
	}
	text := a.OK
	if len(problems) > 0 {
		text = strings.Join(problems, "; ")
	}
	var b strings.Builder
	b.WriteString(Line(a.Prefix+" "+st.String()+" - "+a.Head+text, MaxLine1))
	for i, p := range a.Perf {
		if i == 0 {
			b.WriteString(" |")
		}
		b.WriteString(" " + p.String())
	}
	b.WriteString("\n")

	lines := append([]string(nil), a.Info...)
	for _, f := range fs {
		if f.Short {
			continue
		}
		d := f.Detail
		if d == "" {
			d = f.Summary
		}
		lines = append(lines, "["+f.State.String()+"] "+d)
	}
	for i, l := range lines {
		l = Line(l, MaxLine)
		if b.Len()+len(l)+1 > MaxOutput-64 { // 64: room for the note
			b.WriteString("... " + strconv.Itoa(len(lines)-i) + " more lines cut (output limit)\n")
			break
		}
		b.WriteString(l + "\n")
	}
	return b.String()
}

// Sorted is fs most severe first (CRITICAL, WARNING, UNKNOWN, OK, as
// nagios.Worst ranks them), echoes after the others of their state, else
// in the given order.
func Sorted(fs []Finding) []Finding {
	out := append([]Finding(nil), fs...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.State != b.State {
			return nagios.Worst(a.State, b.State) == a.State
		}
		return !a.Echo && b.Echo
	})
	return out
}

// Line makes foreign text safe for one line of plugin output: valid UTF-8
// (a run of bad bytes reads as one U+FFFD), no line breaks or control
// characters (textsafe.OneLine), no '|' (Nagios would cut there and read
// perfdata), at most max bytes, cut at a rune boundary with "...".
func Line(s string, max int) string {
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

// Perf is one perfdata metric: 'label'=value[UOM];[warn];[crit];[min];[max].
// Value, Min and Max are plain decimals or "U", Warn and Crit ranges; the
// callers format them (internal/thresholds prints ranges).
type Perf struct {
	Label, Value, UOM, Warn, Crit, Min, Max string
}

// String renders the metric. The label goes through Label, so nothing a
// worker names its metric can break the grammar.
func (p Perf) String() string {
	return "'" + Label(p.Label) + "'=" + p.Value + p.UOM + ";" + p.Warn + ";" + p.Crit + ";" + p.Min + ";" + p.Max
}

// maxLabel bounds a label: a worker's metric name (at most 128 bytes by
// the status contract) or an agent's service name (64) with a suffix such
// as "_budget_left" fits whole, so two labels never collide by the cut.
const maxLabel = 128

// Label is the one perfdata label rule: ASCII letters, digits and
// "_-.:/" are kept, anything else (quotes, '=', spaces, '|', non-ASCII)
// becomes '_', at most 128 bytes; an empty label is "metric".
func Label(s string) string {
	ok := len(s) > 0 && len(s) <= maxLabel
	for i := 0; ok && i < len(s); i++ {
		ok = labelByte(s[i])
	}
	if ok {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r < utf8.RuneSelf && labelByte(byte(r)) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= maxLabel {
			break
		}
	}
	if b.Len() == 0 {
		return "metric"
	}
	return b.String()
}

func labelByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_-.:/", c) >= 0
}
