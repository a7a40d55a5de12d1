// Command demo tells the self-healing story with the real binaries: the
// narrated `make demo` (no Nagios: the demo plays Nagios' part and calls
// the plugin and the event handler itself) and `make demo-nagios` (a real
// Nagios Core 4 with 1-second intervals does it). Everything it writes is
// in one temp dir, every process it starts is stopped before it returns,
// also on Ctrl-C and on failure.
//
// It lives in the lab, not in demo_worker, because it drives a throwaway
// Nagios (internal/lab/engine) and wires the loop as the e2e tests do
// (internal/lab/rig); the demo_worker installed on worker hosts links
// none of that. It is never installed: `make demo` builds and runs it.
//
// Usage:
//
//	demo --bin-dir DIR [--nagios] [--keep]
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/selfheal/selfheal/internal/cli"
	"github.com/selfheal/selfheal/internal/version"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	var cfg Config
	_, err := cli.Parse(cli.App{
		Name:        "demo",
		Description: "Tell the self-healing story with the real binaries (make demo, make demo-nagios).",
		Version:     version.String("demo"),
		Stdout:      stdout,
		Stderr:      stderr,
	}, &cfg, args)
	if err != nil {
		var er *cli.ExitRequest
		if errors.As(err, &er) {
			return er.Code
		}
		fmt.Fprintf(stderr, "demo: %s\n", cli.OneLine(err.Error()))
		return 2
	}
	// SIGHUP (the terminal went away) and SIGPIPE (`make demo | head`) end
	// the story like Ctrl-C, so that its cleanup still runs.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
	defer stop()
	return Run(ctx, cfg, Deps{Out: stdout, Now: time.Now})
}
