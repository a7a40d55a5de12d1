// Package textsafe says which runes must not pass verbatim from a worker or
// an action into Nagios output, a command-file line or a log: they could end
// a line, inject a field, drive a terminal, or reorder what a person reads.
// Rule.Clean is the one function that applies it; callers pick a Rule.
package textsafe

import (
	"strings"
	"unicode/utf8"
)

// Unsafe reports whether r is a C0 or C1 control (NUL, CR, LF, ESC ...),
// DEL, a Unicode line or paragraph separator, or a bidirectional formatting
// character (which can make the Nagios UI show text in another order than it
// is, as in "Trojan Source"). Callers decide what to replace it with, and
// may keep '\n' or '\t' where a line break is legitimate.
func Unsafe(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
		return true
	case r == 0x2028, r == 0x2029:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

// Rule says what Clean puts in place of what must not pass. The zero Rule
// deletes every unsafe rune and invalid byte.
type Rule struct {
	Keep    string // Unsafe runes let through anyway, e.g. "\n\t"
	Unsafe  string // replaces each other Unsafe rune
	Invalid string // replaces each byte that is not valid UTF-8
}

// The suite's two rules.
var (
	// Line is for one line of plugin output or a command-file field: a
	// space where a control was (words stay apart), U+FFFD for bad bytes.
	Line = Rule{Unsafe: " ", Invalid: "\uFFFD"}
	// Text is for an action's multi-line output: line breaks and tabs
	// stay, everything else shows as '?', so a reader sees that something
	// was there.
	Text = Rule{Keep: "\n\t", Unsafe: "?", Invalid: "?"}
)

// Clean returns s with the rule applied. Text that needs nothing replaced
// is returned as is, without allocating.
func (r Rule) Clean(s string) string {
	var b strings.Builder
	done := 0 // s[:done] is already in b
	for i := 0; i < len(s); {
		c, n := utf8.DecodeRuneInString(s[i:])
		var repl string
		switch {
		case c == utf8.RuneError && n == 1:
			repl = r.Invalid
		case Unsafe(c) && !strings.ContainsRune(r.Keep, c):
			repl = r.Unsafe
		default:
			i += n
			continue
		}
		if done == 0 {
			b.Grow(len(s))
		}
		b.WriteString(s[done:i])
		b.WriteString(repl)
		i += n
		done = i
	}
	if done == 0 {
		return s
	}
	b.WriteString(s[done:])
	return b.String()
}

// OneLine is the rule for one line of plugin output: Line, and '|' (which
// starts Nagios perfdata) as '/', trimmed. Usage errors, panics and worker
// text all reach Nagios through it.
func OneLine(s string) string {
	return strings.TrimSpace(strings.ReplaceAll(Line.Clean(s), "|", "/"))
}
