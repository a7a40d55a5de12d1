package check

import "github.com/selfheal/selfheal/internal/cli"

// ParseArgs reads check_worker's command line into Flags. The plain forms
// Nagios command lines use (-H X, --hostname X, --hostname=X, -p N, -v,
// -vvv, --ssl ...) take a fast path; anything else (-h, -V, an unknown,
// bundled or malformed flag, a value starting with "-", a positional
// argument) goes to kong, which owns the help, the version and every
// usage error. Errors are cli's *ExitRequest or *UsageError.
//
// Why a fast path: kong's model-building costs more CPU than the whole
// HTTP check (docs/benchmarks.md). The fast path is cli.Fast; its table
// (args_gen.go) is generated from kong's own model of Flags, and the
// tests hold it to kong's answer (args_test.go).
func ParseArgs(app cli.App, args []string) (Flags, error) {
	var f Flags
	if fastFlags.Parse(args, &f) {
		return f, nil
	}
	f = Flags{}
	_, err := cli.Parse(app, &f, args)
	return f, err
}
