package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/selfheal/selfheal/internal/cli"
	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/handler"
	"github.com/selfheal/selfheal/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the exit, for the tests.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cli.Guard(stdout, stderr, func() int {
		g, command, err := handler.ParseArgs(cli.App{
			Name:        "handle_worker",
			Description: "Nagios/Icinga event handler that asks a worker host's worker_listener to restart the worker (the agent keeps one restart per fault and the restart budget).",
			Version:     version.String("handle_worker"),
			Stdout:      stdout, Stderr: stderr,
			InfoExit: 0,
		}, args)
		if err != nil {
			var er *cli.ExitRequest
			if errors.As(err, &er) {
				return er.Code
			}
			if len(args) > 0 && (args[0] == "genkey" || args[0] == "issue-key") {
				// stdout may be a pipe to import-key: errors go to the human.
				return handler.Usage(stderr, err)
			}
			return handler.Usage(stdout, err)
		}
		// The user Nagios runs the handler as (nagios).
		return g.Exec(ctx, command, fsutil.User(os.Getuid()), stdout, stderr)
	})
}
