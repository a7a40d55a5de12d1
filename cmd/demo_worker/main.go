package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"

	"github.com/selfheal/selfheal/internal/cli"
	"github.com/selfheal/selfheal/internal/demo/worker"
	"github.com/selfheal/selfheal/internal/version"
)

// Exit codes for the non-plugin commands.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

type runCmd struct {
	Listen          string        `required:"" help:"host:port for /status and the control endpoint."`
	PIDFile         string        `name:"pid-file" help:"Write the pid here once listening; removed on a clean stop."`
	JobsPerSec      float64       `default:"20" help:"Generated jobs per second (0 = idle)."`
	QueueCap        int           `default:"1000" help:"Job queue capacity."`
	HangStatusDelay time.Duration `default:"60s" help:"While hung, /status stalls this long before answering."`
	IgnoreSigterm   bool          `name:"ignore-sigterm" help:"Ignore SIGTERM, like a wedged worker (to exercise stop's SIGKILL)."`
}

type daemonCmd struct {
	Action          string        `arg:"" enum:"start,stop,restart,status" help:"start, stop, restart or status."`
	Listen          string        `help:"host:port of the worker (required for start and restart)."`
	PIDFile         string        `name:"pid-file" required:"" help:"The worker's pid file."`
	LogFile         string        `help:"Append the worker's log here (default: discarded)."`
	JobsPerSec      float64       `default:"20" help:"Generated jobs per second for the started worker."`
	StartTimeout    time.Duration `default:"10s" help:"How long start waits for /status to answer."`
	StopTimeout     time.Duration `default:"10s" help:"How long stop waits after SIGTERM before SIGKILL."`
	IgnoreSigterm   bool          `name:"ignore-sigterm" help:"Start a worker that ignores SIGTERM (demonstrates the SIGKILL fallback)."`
	HangStatusDelay time.Duration `default:"60s" help:"Passed to the started worker's run (how long /status stalls while hung)."`
}

type faultCmd struct {
	Name    string        `arg:"" enum:"crash,hang,degrade,fail,depfail,clear" help:"crash, hang, degrade, fail, depfail or clear."`
	Listen  string        `required:"" help:"host:port of the worker."`
	Timeout time.Duration `default:"5s" help:"How long to wait for the worker's answer."`
}

type grammar struct {
	Version kong.VersionFlag `short:"V" help:"Print the version and exit."`
	Run     runCmd           `cmd:"" help:"Run the worker in the foreground."`
	Daemon  daemonCmd        `cmd:"" help:"Start, stop, restart or query a detached worker."`
	Fault   faultCmd         `cmd:"" help:"Inject a fault into a running worker (loopback only)."`
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	var g grammar
	kctx, err := cli.Parse(cli.App{
		Name:        "demo_worker",
		Description: "A small job-processing worker that serves the status contract and takes injected faults.",
		Version:     version.String("demo_worker"),
		Stdout:      stdout,
		Stderr:      stderr,
	}, &g, args)
	if err != nil {
		var er *cli.ExitRequest
		if errors.As(err, &er) {
			return er.Code
		}
		fmt.Fprintf(stderr, "demo_worker: %s\n", cli.OneLine(err.Error()))
		return exitUsage
	}
	log := zerolog.New(zerolog.ConsoleWriter{Out: stderr, NoColor: true, TimeFormat: time.RFC3339}).
		With().Timestamp().Logger()

	switch kctx.Command() {
	case "run":
		return run(g.Run, log, stderr)
	case "daemon <action>":
		return daemon(g.Daemon, stdout, stderr)
	case "fault <name>":
		return fault(g.Fault, stdout, stderr)
	}
	fmt.Fprintf(stderr, "demo_worker: unknown command %q\n", kctx.Command())
	return exitUsage
}

func run(c runCmd, log zerolog.Logger, stderr io.Writer) int {
	sigs := []os.Signal{os.Interrupt, syscall.SIGTERM}
	if c.IgnoreSigterm {
		signal.Ignore(syscall.SIGTERM)
		sigs = sigs[:1]
	}
	ctx, stop := signal.NotifyContext(context.Background(), sigs...)
	defer stop()
	res := worker.Run(ctx, worker.Config{
		Listen:          c.Listen,
		PIDFile:         c.PIDFile,
		JobsPerSec:      c.JobsPerSec,
		QueueCap:        c.QueueCap,
		HangStatusDelay: c.HangStatusDelay,
		Version:         version.Version,
	}, worker.Deps{Log: log, PID: os.Getpid()})
	if res.Err != nil {
		fmt.Fprintf(stderr, "demo_worker: %v\n", res.Err)
	}
	return res.Code
}

func daemon(c daemonCmd, stdout, stderr io.Writer) int {
	cfg := worker.DaemonConfig{
		Listen:       c.Listen,
		PIDFile:      c.PIDFile,
		LogFile:      c.LogFile,
		JobsPerSec:   c.JobsPerSec,
		StartTimeout: c.StartTimeout,
		StopTimeout:  c.StopTimeout,
	}
	cfg.RunArgs = []string{"--hang-status-delay", c.HangStatusDelay.String()}
	if c.IgnoreSigterm {
		cfg.RunArgs = append(cfg.RunArgs, "--ignore-sigterm")
	}
	if (c.Action == "start" || c.Action == "restart") && c.Listen == "" {
		fmt.Fprintf(stderr, "demo_worker: daemon %s needs --listen\n", c.Action)
		return exitUsage
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "demo_worker: %v\n", err)
		return exitFail
	}
	deps := worker.DaemonDeps{Exe: exe, Env: workerEnv()}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch c.Action {
	case "start":
		st, err := worker.Start(ctx, cfg, deps)
		if err != nil {
			fmt.Fprintf(stderr, "demo_worker: start: %v\n", err)
			return exitFail
		}
		fmt.Fprintln(stdout, describeStart(st, c.Listen))
	case "stop":
		sr, err := worker.Stop(ctx, cfg)
		if err != nil {
			fmt.Fprintf(stderr, "demo_worker: stop: %v\n", err)
			return exitFail
		}
		fmt.Fprintln(stdout, describeStop(sr))
	case "restart":
		sr, st, err := worker.Restart(ctx, cfg, deps)
		if err != nil {
			fmt.Fprintf(stderr, "demo_worker: restart: %v (%s)\n", err, describeStop(sr))
			return exitFail
		}
		fmt.Fprintf(stdout, "restarted: %s; %s\n", describeStop(sr), describeStart(st, c.Listen))
	case "status":
		_, code, line := worker.State(cfg)
		if code == worker.StatusRunning && c.Listen != "" {
			line += "; " + statusLine(c.Listen)
		}
		fmt.Fprintln(stdout, line)
		return code
	}
	return exitOK
}

func describeStart(st worker.StartResult, listen string) string {
	s := fmt.Sprintf("started pid %d on %s", st.PID, listen)
	if st.AlreadyRunning {
		s = fmt.Sprintf("already running, pid %d", st.PID)
	}
	if st.StalePID != 0 {
		s += fmt.Sprintf(" (removed stale pid file naming dead pid %d)", st.StalePID)
	}
	return s
}

func describeStop(sr worker.StopResult) string {
	switch {
	case sr.PID != 0 && sr.Killed:
		return fmt.Sprintf("stopped pid %d with SIGKILL (it ignored SIGTERM)", sr.PID)
	case sr.PID != 0:
		return fmt.Sprintf("stopped pid %d", sr.PID)
	case sr.StalePID != 0:
		return fmt.Sprintf("was not running (removed stale pid file naming pid %d)", sr.StalePID)
	}
	return "was not running"
}

// statusLine asks the running worker for its own summary, bounded.
func statusLine(listen string) string {
	url, err := worker.StatusURL(listen)
	if err != nil {
		return err.Error()
	}
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return "no answer from /status in 2s (hung?)"
	}
	defer resp.Body.Close()
	return "/status answers HTTP " + resp.Status
}

// workerEnv is the detached worker's whole environment: it needs nothing
// from the caller's (which, under the listener, is deliberately bare).
func workerEnv() []string {
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	for _, k := range []string{"TZ", "LANG"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func fault(c faultCmd, stdout, stderr io.Writer) int {
	f, err := worker.ParseFault(c.Name)
	if err != nil {
		fmt.Fprintf(stderr, "demo_worker: %v\n", err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	line, err := worker.SendFault(ctx, &http.Client{}, c.Listen, f)
	if err != nil {
		fmt.Fprintf(stderr, "demo_worker: %v\n", err)
		return exitFail
	}
	fmt.Fprintln(stdout, line)
	return exitOK
}
