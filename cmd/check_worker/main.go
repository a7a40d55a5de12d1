package main

import (
	"context"
	"io"
	"os"

	_ "github.com/selfheal/selfheal/internal/plugin/oneproc" // one P from start-up on

	"github.com/selfheal/selfheal/internal/check"
	"github.com/selfheal/selfheal/internal/cli"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, so the watchdog and tests share one path.
func run(args []string, stdout, stderr io.Writer) int {
	out := &cli.OnceWriter{W: stdout}
	return cli.Guard(out, stderr, func() int {
		app := cli.App{
			Name:        "check_worker",
			Description: "Nagios plugin: is this worker healthy? Reads the worker's status document.",
			Version:     version.String("check_worker"),
			Stdout:      stdout, Stderr: stderr,
			InfoExit: int(nagios.Unknown),
		}
		fl, err := check.ParseArgs(app, args)
		if err != nil {
			return cli.PluginExit(out, err)
		}
		cfg, tlsOpts, err := fl.Config("check_worker/" + version.Version + " (selfheal)")
		if err != nil {
			return cli.PluginExit(out, &cli.UsageError{Err: err})
		}
		// stderr only: stdout is Nagios' and must carry nothing but the result.
		log := &check.Logger{W: stderr, Level: fl.Verbose}
		defer out.Watchdog(cfg.Timeout, "WORKER", "check_worker")()
		tc, err := check.NewTLSConfig(tlsOpts)
		if err != nil {
			return cli.PluginExit(out, &cli.UsageError{Err: err})
		}

		res := check.Run(context.Background(), cfg, check.Deps{TLS: tc, Logger: log})
		out.WriteOnce(res.Output)
		return int(res.State)
	})
}
