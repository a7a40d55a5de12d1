package status

import "strings"

// The perfdata labels under which check_worker counts its CRITICAL findings
// by scope, in every answer. They carry the verdict to handle_worker through
// $SERVICEPERFDATA$ (Nagios) or $service.perfdata$ (Icinga 2): two labels
// and two integers, so no worker text reaches the handler's command line.
// check_worker renames a worker metric that would clash with either.
const (
	PerfCriticalSelf       = "critical_self"       // findings that are the worker's own, or check_worker's
	PerfCriticalDependency = "critical_dependency" // findings of checks scoped "dependency"
)

// maxCounter bounds a counter's digits: a document has at most MaxChecks
// checks, so anything longer is not check_worker's.
const maxCounter = 6

// ScopeFromPerfdata reads check_worker's critical counters from a perfdata
// string; ok is false unless both counters are present exactly once, well
// formed, non-negative integers. Anything else (another plugin's perfdata, a
// truncated string, text a worker could have planted) is !ok.
//
// The whole string is tokenised as the plugin guidelines define perfdata
// ('label'=value;warn;crit;min;max, quotes optional, a quote doubled inside
// a quoted label), and one malformed token makes it !ok: a label quoted to
// hide "critical_self=0" inside it is one label, not a counter. A label
// that equals a counter's name in another case is !ok too, not ignored.
// Labels may come quoted (as check_worker prints them) or bare (Icinga 2's
// formatting, or Nagios with ' in illegal_macro_output_chars).
func ScopeFromPerfdata(perfdata string) (self, dependency int, ok bool) {
	self, dependency = -1, -1
	s := perfdata
	for {
		s = strings.TrimLeft(s, " \t\r\n")
		if s == "" {
			break
		}
		var lbl, val string
		if lbl, val, s, ok = nextPerf(s); !ok {
			return 0, 0, false
		}
		var dst *int
		switch {
		case lbl == PerfCriticalSelf:
			dst = &self
		case lbl == PerfCriticalDependency:
			dst = &dependency
		case strings.EqualFold(lbl, PerfCriticalSelf), strings.EqualFold(lbl, PerfCriticalDependency):
			return 0, 0, false
		default:
			continue
		}
		n, good := counter(val)
		if *dst >= 0 || !good {
			return 0, 0, false
		}
		*dst = n
	}
	if self < 0 || dependency < 0 {
		return 0, 0, false
	}
	return self, dependency, true
}

// DependencyOnly is the one rule: hold the restart only when ok && self == 0
// && dependency > 0. Whatever cannot be read counts as the worker's own
// fault, so a worker's text can prevent its own restart, never cause one.
func DependencyOnly(perfdata string) bool {
	self, dep, ok := ScopeFromPerfdata(perfdata)
	return ok && self == 0 && dep > 0
}

// nextPerf splits the first token off s (which starts with a non-blank):
// its label (a quoted label's text as written, doubled quotes kept: a
// label holding a quote is never a counter's), the value field with the rest of
// the token, and what follows.
func nextPerf(s string) (label, value, rest string, ok bool) {
	var i int
	if s[0] == '\'' {
		for i = 1; ; i++ {
			if i >= len(s) {
				return "", "", "", false // unterminated quote: a cut string
			}
			if s[i] == '\'' {
				if i+1 < len(s) && s[i+1] == '\'' {
					i++
					continue
				}
				break
			}
		}
		label = s[1:i]
		i++ // the closing quote
		if i >= len(s) || s[i] != '=' {
			return "", "", "", false
		}
	} else {
		for i = 0; i < len(s) && s[i] != '='; i++ {
			if blank(s[i]) || s[i] == '\'' {
				return "", "", "", false // a word without "=": not perfdata
			}
		}
		if i >= len(s) {
			return "", "", "", false
		}
		label = s[:i]
	}
	if label == "" {
		return "", "", "", false
	}
	s = s[i+1:] // after the '='
	for i = 0; i < len(s) && !blank(s[i]); i++ {
		if s[i] == '\'' || s[i] == '=' {
			return "", "", "", false
		}
	}
	if i == 0 {
		return "", "", "", false
	}
	return label, s[:i], s[i:], true
}

// counter reads a counter's field: a decimal integer without sign, unit or
// leading zero, then at most the four ;warn;crit;min;max fields, each empty
// or digits (check_worker writes "N;;;0;").
func counter(v string) (int, bool) {
	num, tail, _ := strings.Cut(v, ";")
	if num == "" || len(num) > maxCounter || (num[0] == '0' && len(num) > 1) {
		return 0, false
	}
	n := 0
	for i := 0; i < len(num); i++ {
		if num[i] < '0' || num[i] > '9' {
			return 0, false
		}
		n = n*10 + int(num[i]-'0')
	}
	if strings.Count(tail, ";") > 3 {
		return 0, false
	}
	for i := 0; i < len(tail); i++ {
		if c := tail[i]; c != ';' && (c < '0' || c > '9') {
			return 0, false
		}
	}
	return n, true
}

func blank(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
