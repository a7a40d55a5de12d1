package cli

import (
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Fast is a fast path for one kong grammar T: the plain forms a monitoring
// engine's command line uses (--name VALUE, --name=VALUE, -x VALUE, a
// repeated counter -vv, positional arguments, --) are read without kong;
// anything else (-h, -V, an unknown, bundled or malformed flag, a value
// starting with "-", a missing required flag or argument, an enum value
// not listed, text that is not UTF-8) is declined and left to kong, which owns the help, the
// version and every usage error.
//
// Why: kong builds its model on every start (reflection over the grammar,
// tag parsing, interpolation of every help string). A plugin or event
// handler that the engine runs for every service pays that each run
// (docs/benchmarks.md). Fast is no second grammar: its tables are
// generated from kong's own model (package fastgen), and each user's
// tests hold the fast path to kong's answer.
type Fast[T any] struct {
	Command  string // the subcommand's name, args[0]; "" for none
	Flags    []FastFlag[T]
	Args     []func(*T) *string // positional arguments, each required
	Defaults func(*T)           // kong's defaults
}

// FastFlag is one flag of a fast path. Ptr returns the field: a *string,
// *int, *bool, *[]string, **string or *time.Duration (a type switch, no
// reflection).
type FastFlag[T any] struct {
	Name, Short string
	Counter     bool     // an int that -v, -vv, --verbose count up
	Required    bool     // kong refuses a command line without it
	Split       bool     // a []string kong splits at ","
	Enum        []string // the values kong accepts; nil for any
	Ptr         func(*T) any
}

func (p *Fast[T]) lookup(long, short string) int {
	for i := range p.Flags {
		if f := &p.Flags[i]; (long != "" && f.Name == long) || (short != "" && f.Short == short) {
			return i
		}
	}
	return -1
}

// Parse fills f from args and reports false for anything it does not
// read exactly as kong would; f is then to be discarded.
func (p *Fast[T]) Parse(args []string, f *T) bool {
	if p.Command != "" {
		if len(args) == 0 || args[0] != p.Command {
			return false
		}
		args = args[1:]
	}
	if p.Defaults != nil {
		p.Defaults(f)
	}
	var seen uint64 // required flags given, by index
	if len(p.Flags) > 64 {
		return false
	}
	pos, rest := 0, false
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !utf8.ValidString(a) {
			return false // kong's string mapper replaces bad bytes (U+FFFD)
		}
		if rest || a == "" || a == "-" || a[0] != '-' {
			if pos >= len(p.Args) {
				return false // kong's "unexpected argument"
			}
			*p.Args[pos](f) = a
			pos++
			continue
		}
		if a == "--" {
			rest = true
			continue
		}
		var (
			fi       int
			val      string
			hasValue bool
		)
		if strings.HasPrefix(a, "--") {
			var name string
			name, val, hasValue = strings.Cut(a[2:], "=")
			fi = p.lookup(name, "")
		} else {
			fi = p.lookup("", a[1:2])
			if fi >= 0 && len(a) > 2 {
				// Bundled shorts: only a repeated counter (-vv, -vvv).
				fl := &p.Flags[fi]
				if !fl.Counter || strings.Trim(a[1:], a[1:2]) != "" {
					return false
				}
				*fl.Ptr(f).(*int) += len(a) - 1
				continue
			}
		}
		if fi < 0 {
			return false
		}
		fl := &p.Flags[fi]
		seen |= 1 << fi
		ptr := fl.Ptr(f)
		if b, ok := ptr.(*bool); ok || fl.Counter {
			if hasValue {
				return false // --ssl=false, --verbose=2 and the like: kong's call
			}
			if ok {
				*b = true
			} else {
				*ptr.(*int)++
			}
			continue
		}
		if !hasValue {
			// A value that looks like a flag is kong's call (it may be a
			// negative number or a mistake).
			if i+1 >= len(args) || strings.HasPrefix(args[i+1], "-") {
				return false
			}
			i++
			val = args[i]
			if !utf8.ValidString(val) {
				return false
			}
		}
		if fl.Enum != nil && !slices.Contains(fl.Enum, val) {
			return false
		}
		if !set(ptr, val, fl.Split) {
			return false
		}
	}
	if pos != len(p.Args) {
		return false
	}
	for i := range p.Flags {
		if p.Flags[i].Required && seen&(1<<i) == 0 {
			return false
		}
	}
	return true
}

// set stores val as kong would, or reports false where kong might answer
// otherwise.
func set(ptr any, val string, split bool) bool {
	switch p := ptr.(type) {
	case *string:
		*p = val
	case **string:
		*p = &val
	case *int:
		n, err := strconv.Atoi(val)
		if err != nil || val != strconv.Itoa(n) { // "010", "+1", "1_0": kong's call
			return false
		}
		*p = n
	case *time.Duration:
		d, err := time.ParseDuration(val)
		if err != nil {
			return false
		}
		*p = d
	case *[]string:
		if !split {
			*p = append(*p, val)
			break
		}
		parts := strings.Split(val, ",")
		// kong's escapes, and the empty pieces it drops: its call.
		if strings.Contains(val, `\`) || slices.Contains(parts, "") {
			return false
		}
		*p = append(*p, parts...)
	default:
		return false
	}
	return true
}
