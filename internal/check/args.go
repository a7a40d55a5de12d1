package check

import (
	"strconv"
	"strings"

	"github.com/selfheal/selfheal/internal/cli"
)

// ParseArgs reads check_worker's command line into Flags. The plain forms
// Nagios command lines use (-H X, --hostname X, --hostname=X, -p N, -v,
// -vvv, --ssl ...) take a fast path; anything else (-h, -V, an unknown,
// bundled or malformed flag, a value starting with "-", a positional
// argument) goes to kong, which owns the help, the version and every
// usage error. Errors are cli's *ExitRequest or *UsageError.
//
// Why a fast path: kong builds its model on every start (reflection over
// the grammar, tag parsing, interpolation of every help string), which
// costs more CPU than the whole HTTP check (docs/benchmarks.md). A plugin
// that Nagios runs every minute for every worker should not pay that.
// The fast path is no second grammar: its table (args_gen.go) is
// generated from kong's own model of Flags, and the tests hold it to
// kong's answer (args_test.go).
func ParseArgs(app cli.App, args []string) (Flags, error) {
	var f Flags
	if fastParse(args, &f) {
		return f, nil
	}
	f = Flags{}
	_, err := cli.Parse(app, &f, args)
	return f, err
}

// fastFlag is one flag of the fast path. ptr returns the field, as a
// *string, *int, *bool or *[]string; a type switch on it is no reflection.
type fastFlag struct {
	name, short string
	counter     bool // an int that -v, -vv, --verbose count up
	ptr         func(*Flags) any
}

func fastLookup(long, short string) *fastFlag {
	for i := range fastFlags {
		if f := &fastFlags[i]; (long != "" && f.name == long) || (short != "" && f.short == short) {
			return f
		}
	}
	return nil
}

// fastParse fills f from args and reports false for anything it does not
// read exactly as kong would; f is then to be discarded.
func fastParse(args []string, f *Flags) bool {
	fastDefaults(f)
	for i := 0; i < len(args); i++ {
		a := args[i]
		var fl *fastFlag
		val, hasVal := "", false
		switch {
		case strings.HasPrefix(a, "--"):
			var name string
			name, val, hasVal = strings.Cut(a[2:], "=")
			fl = fastLookup(name, "")
		case len(a) >= 2 && a[0] == '-':
			fl = fastLookup("", a[1:2])
			if fl != nil && len(a) > 2 {
				// Bundled shorts: only a repeated counter (-vv, -vvv).
				if !fl.counter || strings.Trim(a[1:], a[1:2]) != "" {
					return false
				}
				*fl.ptr(f).(*int) += len(a) - 1
				continue
			}
		}
		if fl == nil {
			return false
		}
		p := fl.ptr(f)
		if b, ok := p.(*bool); ok || fl.counter {
			if hasVal {
				return false // --ssl=false, --verbose=2 and the like: kong's call
			}
			if ok {
				*b = true
			} else {
				*p.(*int)++
			}
			continue
		}
		if !hasVal {
			// A value that looks like a flag is kong's call (it may be a
			// negative number or a mistake).
			if i+1 >= len(args) || strings.HasPrefix(args[i+1], "-") {
				return false
			}
			i++
			val = args[i]
		}
		switch p := p.(type) {
		case *string:
			*p = val
		case *int:
			n, err := strconv.Atoi(val)
			if err != nil || val != strconv.Itoa(n) { // "010", "+1", "1_0": kong's call
				return false
			}
			*p = n
		case *[]string:
			*p = append(*p, val)
		default:
			return false
		}
	}
	return true
}
