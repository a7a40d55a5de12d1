// Package cli wraps kong so that every binary in the suite parses its
// arguments without kong calling os.Exit, and with exit codes that Nagios
// understands (0-3): kong's own defaults would exit 80 on a usage error and
// 0 on --help, which a monitoring engine reads as nonsense or OK. Parse
// hands the exit back to the main (ExitRequest). It also holds what the
// mains share: the man page rendered from the grammar (WriteMan), Guard (a
// panic is UNKNOWN), OnceWriter (one answer reaches Nagios) and Watchdog,
// the package's one os.Exit: a plugin stuck past its timeout has no caller
// left to return to, so the watchdog answers UNKNOWN and exits 3 itself.
package cli

import (
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"

	"github.com/alecthomas/kong"

	"github.com/selfheal/selfheal/internal/textsafe"

	"github.com/selfheal/selfheal/internal/nagios"
)

// unknown is the plugin exit code for "cannot tell" (usage errors, panics).
const unknown = int(nagios.Unknown)

// App describes the binary being parsed.
type App struct {
	Name        string
	Description string
	Version     string // full line printed by -V/--version
	Stdout      io.Writer
	Stderr      io.Writer
	// InfoExit is the exit code for --help and --version. monitoring-plugins
	// exit 3 (UNKNOWN) there; daemons conventionally exit 0.
	InfoExit int
}

// ExitRequest is returned when parsing already produced the whole answer
// (--help or --version was printed) and the caller should exit with Code.
type ExitRequest struct{ Code int }

func (e *ExitRequest) Error() string { return fmt.Sprintf("exit %d requested", e.Code) }

// UsageError is a malformed command line. Plugins print it as a one-line
// "UNKNOWN - ..." and exit 3.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// exitSentinel carries kong's Exit call out of the parser: kong expects
// Exit never to return, so we unwind with a panic and recover it below.
type exitSentinel struct{ code int }

// Parse parses args into grammar (a kong struct). It never exits the
// process. Errors are *ExitRequest or *UsageError.
func Parse(app App, grammar any, args []string, opts ...kong.Option) (kctx *kong.Context, err error) {
	base := []kong.Option{
		kong.Name(app.Name),
		kong.Description(app.Description),
		kong.Writers(app.Stdout, app.Stderr),
		kong.Vars{"version": app.Version},
		kong.Exit(func(code int) { panic(exitSentinel{code}) }),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, NoExpandSubcommands: false}),
	}
	defer func() {
		if r := recover(); r != nil {
			s, ok := r.(exitSentinel)
			if !ok {
				panic(r)
			}
			code := s.code
			if code == 0 {
				code = app.InfoExit
			} else {
				code = unknown
			}
			kctx, err = nil, &ExitRequest{Code: code}
		}
	}()
	parser, err := kong.New(grammar, append(base, opts...)...)
	if err != nil {
		// A broken grammar is a programming error; still report it as usage.
		return nil, &UsageError{Err: err}
	}
	if len(args) == 1 && args[0] == ManFlag {
		if err := WriteMan(app.Stdout, app, parser); err != nil {
			return nil, err
		}
		return nil, &ExitRequest{Code: 0}
	}
	kctx, err = parser.Parse(args)
	if err != nil {
		return nil, &UsageError{Err: err}
	}
	return kctx, nil
}

// OneLine is textsafe.OneLine, for the mains' messages.
func OneLine(s string) string { return textsafe.OneLine(s) }

// PluginExit turns a Parse error into the plugin's answer: help/version
// exit with their code, a usage error prints "UNKNOWN - ..." and exits 3.
func PluginExit(stdout io.Writer, err error) int {
	var er *ExitRequest
	if errors.As(err, &er) {
		return er.Code
	}
	fmt.Fprintf(stdout, "UNKNOWN - %s\n", OneLine(err.Error()))
	return unknown
}

// Guard runs fn and converts a panic into UNKNOWN with a one-line message
// on stdout and the stack on stderr. A plugin that crashes must never be
// read as CRITICAL: that would restart a healthy worker.
func Guard(stdout, stderr io.Writer, fn func() int) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stdout, "UNKNOWN - internal error: %s\n", OneLine(fmt.Sprint(r)))
			fmt.Fprintf(stderr, "panic: %v\n%s", r, debug.Stack())
			code = unknown
		}
	}()
	code = fn()
	if code != nagios.State(code).ExitCode() {
		fmt.Fprintf(stderr, "exit code %d out of range, reporting UNKNOWN\n", code)
		return unknown
	}
	return code
}

// HelpText fills in help tags written as "${name}" (a grammar shared by
// two programs, each wording it) with text[name]. kong.Vars would do the
// same, but kong interpolates every variable again for every flag it
// builds: with handle_worker's seven help texts as variables that was
// most of the regexp matching in an event run's kong.New, about a fifth
// of its CPU. A name text does not have is left to kong (an undefined
// variable is its error).
func HelpText(text map[string]string) kong.Option {
	return kong.PostBuild(func(k *kong.Kong) error {
		return kong.Visit(k.Model, func(n kong.Visitable, next kong.Next) error {
			if v, ok := n.(*kong.Value); ok && strings.HasPrefix(v.Help, "${") && strings.HasSuffix(v.Help, "}") {
				if t, ok := text[v.Help[2:len(v.Help)-1]]; ok {
					v.Help = t
				}
			}
			return next(nil)
		})
	})
}
