package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/selfheal/selfheal/internal/cli"
	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/healercheck"
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
			Name:        "check_selfheal",
			Description: "Nagios plugin: can selfheal heal? Checks one worker host's agent, or this monitoring node's handler.",
			Version:     version.String("check_selfheal"),
			Stdout:      stdout, Stderr: stderr,
			InfoExit: int(nagios.Unknown),
		}
		var fl healercheck.Flags
		kctx, err := cli.Parse(app, &fl, args, healercheck.Vars, healercheck.JudgeHelp)
		if err != nil {
			return cli.PluginExit(out, err)
		}
		// The user this runs as (nagios) is the handler's: its key and
		// state directory must pass the trust rule for it.
		trust := fsutil.Self()
		var timeout time.Duration
		var check func() healercheck.Result
		switch kctx.Command() {
		case "agent":
			cfg, err := fl.Agent.Config(trust)
			if err != nil {
				return cli.PluginExit(out, &cli.UsageError{Err: err})
			}
			timeout = cfg.Timeout
			check = func() healercheck.Result { return healercheck.RunAgent(context.Background(), cfg, healercheck.Deps{}) }
		case "node":
			cfg, err := fl.Node.Config(trust)
			if err != nil {
				return cli.PluginExit(out, &cli.UsageError{Err: err})
			}
			timeout = cfg.Timeout
			check = func() healercheck.Result { return healercheck.RunNode(context.Background(), cfg, healercheck.Deps{}) }
		default:
			return cli.PluginExit(out, &cli.UsageError{Err: fmt.Errorf("unknown mode %q", kctx.Command())})
		}
		defer out.Watchdog(timeout, "SELFHEAL", "check_selfheal")()
		res := check()
		out.WriteOnce(res.Output)
		return int(res.State)
	})
}
