// Package textsafe says which runes must not pass verbatim from a worker or
// an action into Nagios output, a command-file line or a log: they could end
// a line, inject a field, drive a terminal, or reorder what a person reads.
package textsafe

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
