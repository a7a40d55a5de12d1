// Package thresholds implements Nagios threshold ranges
// ([@]start:end, inclusive ends, "~" for minus infinity) as the
// monitoring-plugins guidelines define them. go-nagios v0.20.0 parses
// "@~:10" wrongly and stops at the first WARNING, so the suite keeps its
// own small, table-tested implementation.
package thresholds

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/selfheal/selfheal/internal/nagios"
)

// ErrSyntax is wrapped by every parse error.
var ErrSyntax = errors.New("invalid threshold range")

// maxLen bounds the input: a range is a couple of numbers, never a novel.
const maxLen = 64

// Range is one parsed range. The zero value is not a valid range; use
// Parse. A value alerts when it is outside [Start, End], or inside it when
// Inside is set (the "@" prefix).
type Range struct {
	Start, End float64 // -Inf / +Inf for "~" and an omitted end
	Inside     bool
	src        string // canonical text for perfdata
}

// Parse reads a range such as "10", "10:", "~:10", "10:20" or "@10:20".
func Parse(s string) (Range, error) {
	orig := s
	fail := func(why string) (Range, error) {
		return Range{}, fmt.Errorf("%w %q: %s", ErrSyntax, orig, why)
	}
	if len(s) > maxLen {
		return fail("too long")
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return fail("empty")
	}
	var r Range
	if s[0] == '@' {
		r.Inside = true
		s = s[1:]
	}
	start, end, hasColon := strings.Cut(s, ":")
	if hasColon && start == "" && end == "" {
		return fail("no bounds")
	}
	if !hasColon {
		// "N" means 0:N.
		end, start = start, "0"
	}
	var err error
	switch start {
	case "~":
		r.Start = math.Inf(-1)
	case "":
		if !hasColon {
			return fail("missing end")
		}
		r.Start = 0 // ":10" is 0:10, as monitoring-plugins read it
	default:
		if r.Start, err = number(start); err != nil {
			return fail("start: " + err.Error())
		}
	}
	if end == "" {
		if !hasColon {
			return fail("missing end")
		}
		r.End = math.Inf(1)
	} else if r.End, err = number(end); err != nil {
		return fail("end: " + err.Error())
	}
	if r.Start > r.End {
		return fail("start is greater than end")
	}
	r.src = r.canonical()
	return r, nil
}

// number accepts plain decimals only: no hex, no exponent, no NaN/Inf,
// because perfdata cannot carry them and a typo should not parse.
func number(s string) (float64, error) {
	if s == "" {
		return 0, errors.New("empty number")
	}
	for i, c := range s {
		switch {
		case c >= '0' && c <= '9', c == '.':
		case (c == '-' || c == '+') && i == 0:
		default:
			return 0, fmt.Errorf("%q is not a decimal number", s)
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a decimal number", s)
	}
	return v, nil
}

// Alert reports whether x raises an alert for this range.
func (r Range) Alert(x float64) bool {
	if math.IsNaN(x) {
		return true // a value we cannot compare is never "fine"
	}
	in := x >= r.Start && x <= r.End
	if r.Inside {
		return in
	}
	return !in
}

// String is the canonical form, for perfdata: a plain upper bound "0:N"
// is written "N" because Icinga 2 has failed to parse the full syntax.
func (r Range) String() string { return r.src }

func (r Range) canonical() string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	var b strings.Builder
	if r.Inside {
		b.WriteByte('@')
	}
	switch {
	case r.Start == 0 && !math.IsInf(r.End, 1):
		if r.Inside {
			b.WriteString("0:")
		}
		b.WriteString(f(r.End))
		return b.String()
	case math.IsInf(r.Start, -1):
		b.WriteByte('~')
	default:
		b.WriteString(f(r.Start))
	}
	b.WriteByte(':')
	if !math.IsInf(r.End, 1) {
		b.WriteString(f(r.End))
	}
	return b.String()
}

// Pair is a warning and a critical range; either may be absent.
type Pair struct {
	Warn, Crit *Range
}

// Evaluate returns the state for x: OK, WARNING or CRITICAL, never
// UNKNOWN. CRITICAL is checked first so that a value breaking both ranges
// is never reported as merely WARNING.
func (p Pair) Evaluate(x float64) nagios.State {
	if p.Crit != nil && p.Crit.Alert(x) {
		return nagios.Critical
	}
	if p.Warn != nil && p.Warn.Alert(x) {
		return nagios.Warning
	}
	return nagios.OK
}

// Set reports whether any range is configured.
func (p Pair) Set() bool { return p.Warn != nil || p.Crit != nil }

// WarnString and CritString render the ranges for perfdata ("" if unset).
func (p Pair) WarnString() string {
	if p.Warn == nil {
		return ""
	}
	return p.Warn.String()
}

// CritString: see WarnString.
func (p Pair) CritString() string {
	if p.Crit == nil {
		return ""
	}
	return p.Crit.String()
}

// ParsePair parses optional warning and critical ranges ("" = unset).
func ParsePair(warn, crit string) (Pair, error) {
	var p Pair
	for _, x := range []struct {
		s   string
		dst **Range
	}{{warn, &p.Warn}, {crit, &p.Crit}} {
		if x.s == "" {
			continue
		}
		r, err := Parse(x.s)
		if err != nil {
			return Pair{}, err
		}
		*x.dst = &r
	}
	return p, nil
}
