// Package story tells the self-healing story with the real binaries: the
// narrated `make demo` (no Nagios: the demo plays Nagios' part and calls
// the plugin and the event handler itself) and `make demo-nagios` (a real
// Nagios Core 4 with 1-second intervals does it). Everything it writes is
// in one temp dir, every process it starts is stopped before it returns,
// also on Ctrl-C and on failure.
package story

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/selfheal/selfheal/internal/lab/engine"
	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/proc"
)

// Config selects the story.
type Config struct {
	BinDir string // holds check_worker, handle_worker, worker_listener, demo_worker
	Nagios bool   // run under a real Nagios Core 4
	Keep   bool   // keep the temp directory (its processes are still stopped)
}

// Deps are the story's collaborators.
type Deps struct {
	Out io.Writer
	Now func() time.Time // nil = time.Now
}

// Exit codes of Run.
const (
	ExitOK          = 0
	ExitFailed      = 1   // the story did not go as it should: a bug somewhere
	ExitInterrupted = 130 // Ctrl-C
)

// The demo's restart budget: small, so the story ends in seconds. The
// handler's own defaults are 3 restarts an hour, at least 2 minutes apart.
const (
	maxRestarts = 3
	window      = "10m"
	minGap      = "0s"
	// The plugin's timeout: short, so the hang shows in 2 seconds.
	checkTimeout = 2
	maxAge       = "5,10"
	maxRounds    = 6 // flapping rounds, bounded whatever the handler does
)

// story is one run of the demo and everything it started.
type story struct {
	cfg Config
	out io.Writer
	now func() time.Time
	t0  time.Time
	r   *runner

	dir                               string            // the temp dir ($DEMO in the narration)
	bin                               map[string]string // binary name -> path
	w                                 rig.Worker        // the worker, behind its pid file
	listenPort                        string
	keyFile                           string
	listenerConf, listenerLog, audit  string
	handlerLog, handlerState, cmdFile string
	listener                          *rig.Listener
	handlerShown                      bool
	nagios                            *engine.Instance
	logSeen                           int // Nagios log entries already narrated
	workerPIDs                        []int
	summary                           [][2]string
}

// Run tells the story and returns the process exit code.
func Run(ctx context.Context, cfg Config, deps Deps) int {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	s, err := newStory(cfg, deps)
	if err != nil {
		fmt.Fprintf(deps.Out, "demo: %v\n", err)
		return ExitFailed
	}
	if cfg.Nagios {
		err = s.tellNagios(ctx)
	} else {
		err = s.tell(ctx)
	}
	left := s.cleanup()
	s.add("left behind", left)
	s.printSummary()
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(s.out, "\ndemo: interrupted; everything it started was stopped.")
		return ExitInterrupted
	case err != nil:
		fmt.Fprintf(s.out, "\ndemo: FAILED: %v\n", err)
		return ExitFailed
	case !strings.HasPrefix(left, "nothing"):
		fmt.Fprintf(s.out, "\ndemo: FAILED: processes were left behind\n")
		return ExitFailed
	}
	return ExitOK
}

func newStory(cfg Config, deps Deps) (*story, error) {
	s := &story{cfg: cfg, out: deps.Out, now: deps.Now, t0: deps.Now(), bin: map[string]string{}}
	for _, b := range rig.Binaries {
		p, err := filepath.Abs(filepath.Join(cfg.BinDir, b))
		if err != nil {
			return nil, err
		}
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("%s not found in %s: run `make build` first (or `make demo`, which does)", b, cfg.BinDir)
		}
		s.bin[b] = p
	}
	// A short directory name: Nagios aborts on a query_socket path of 108
	// bytes or more.
	dir, err := os.MkdirTemp("", "shdemo-")
	if err != nil {
		return nil, err
	}
	s.dir = dir
	s.keyFile = filepath.Join(dir, "keys", "demo.key")
	s.w = rig.Worker{Bin: s.bin["demo_worker"], PIDFile: filepath.Join(dir, "worker.pid"), LogFile: filepath.Join(dir, "worker.log"),
		StartTimeout: "5s", StopTimeout: "5s"}
	s.listenerConf = filepath.Join(dir, "worker_listener.yaml")
	s.listenerLog = filepath.Join(dir, "listener.log")
	s.audit = filepath.Join(dir, "audit.log")
	s.handlerLog = filepath.Join(dir, "handler.log")
	s.handlerState = filepath.Join(dir, "handler")
	for _, d := range []string{filepath.Join(dir, "keys"), s.handlerState, filepath.Join(dir, "listener-state")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	s.r = &runner{dir: dir, now: deps.Now, env: []string{
		"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + dir, "TMPDIR=" + dir, "LANG=C"}}
	return s, nil
}

// ---- narration ----

func (s *story) stamp() string {
	return fmt.Sprintf("[%5.1fs]", s.now().Sub(s.t0).Seconds())
}

func (s *story) step(title string) {
	fmt.Fprintf(s.out, "\n%s == %s\n", s.stamp(), title)
}

func (s *story) say(format string, a ...any) {
	fmt.Fprintf(s.out, "%s %s\n", s.stamp(), fmt.Sprintf(format, a...))
}

func (s *story) add(what, outcome string) { s.summary = append(s.summary, [2]string{what, outcome}) }

func (s *story) printSummary() {
	fmt.Fprintf(s.out, "\n%s == Summary\n", s.stamp())
	for _, l := range s.summary {
		fmt.Fprintf(s.out, "  %-17s %s\n", l[0], l[1])
	}
}

// shown turns paths into what a reader can follow: binaries by name, the
// temp dir as $DEMO.
func (s *story) shown(a string) string {
	for name, p := range s.bin {
		if a == p {
			return name
		}
	}
	return strings.ReplaceAll(a, s.dir, "$DEMO")
}

// exec runs a binary and narrates the command line, its output and its
// exit code with the time it took.
func (s *story) exec(ctx context.Context, timeout time.Duration, name string, args ...string) result {
	return s.execShown(ctx, timeout, len(args), 8, name, args...)
}

// execShown is exec showing only the first shownArgs arguments (the rest
// were shown before) and at most maxLines lines of output.
func (s *story) execShown(ctx context.Context, timeout time.Duration, shownArgs, maxLines int, name string, args ...string) result {
	parts := []string{name}
	for i, a := range args {
		if i == shownArgs {
			parts = append(parts, "[same flags as above]")
			break
		}
		parts = append(parts, s.shown(a))
	}
	fmt.Fprintf(s.out, "%s $ %s\n", s.stamp(), strings.Join(parts, " "))
	res := s.r.run(ctx, timeout, s.bin[name], args...)
	s.printOutput(name, res, maxLines)
	return res
}

func (s *story) printOutput(name string, res result, maxLines int) {
	lines := outputLines(res.Stdout, name == "check_worker")
	if res.Code != 0 || len(lines) == 0 {
		lines = append(lines, outputLines(res.Stderr, false)...)
	}
	for i, l := range lines {
		if i == maxLines {
			if maxLines > 1 {
				fmt.Fprintf(s.out, "           ... (%d more lines)\n", len(lines)-maxLines)
			}
			break
		}
		fmt.Fprintf(s.out, "           %s\n", s.shown(l))
	}
	code := fmt.Sprintf("exit %d", res.Code)
	if name == "check_worker" {
		code += " = " + stateName(res.Code)
	}
	if res.Err != nil {
		code = res.Err.Error()
	}
	fmt.Fprintf(s.out, "           (%s, %s)\n", code, res.Took.Round(time.Millisecond))
}

// outputLines keeps the human part of the output. For a plugin that is
// line 1 up to the '|' and the long output, not the perfdata.
func outputLines(out string, plugin bool) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if plugin {
			if i := strings.IndexByte(l, '|'); i >= 0 {
				l = l[:i]
			}
		}
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

func stateName(code int) string {
	switch code {
	case 0:
		return "OK"
	case 1:
		return "WARNING"
	case 2:
		return "CRITICAL"
	case 3:
		return "UNKNOWN"
	}
	return "not a plugin state"
}

// firstLine is the plugin's status line without perfdata.
func firstLine(out string) string {
	if l := outputLines(out, true); len(l) > 0 {
		return l[0]
	}
	return "(no output)"
}

// ---- set-up shared by both stories ----

// writeListenerConfig writes the listener's config: one service, demo,
// whose actions run demo_worker's daemon mode (no shell, fixed argv).
func (s *story) writeListenerConfig() error {
	actions := map[string]rig.Action{}
	for _, verb := range []string{"restart", "start", "stop", "status"} {
		actions[verb] = rig.Action{Argv: s.w.Argv(verb), Timeout: "20s"}
	}
	return rig.ListenerConfig{
		Comment:  "Written by `demo_worker demo`: the listener may run exactly these actions.",
		Listen:   "127.0.0.1:" + s.listenPort,
		Keys:     []string{s.keyFile},
		Allow:    rig.Loopback,
		AuditLog: s.audit,
		StateDir: filepath.Join(s.dir, "listener-state"),
		Services: []rig.Service{{Name: "demo", Actions: actions}},
	}.Write(s.listenerConf)
}

// setUp generates the key, writes the config, starts the worker and the
// listener, and waits until both answer.
func (s *story) setUp(ctx context.Context) error {
	var err error
	if s.w.Addr, err = rig.FreeAddr(); err != nil {
		return err
	}
	lport, err := rig.FreePort()
	if err != nil {
		return err
	}
	s.listenPort = strconv.Itoa(lport)

	s.step("1. Set up: a key, the listener and the worker")
	s.say("Everything lives in $DEMO = %s; nothing is written elsewhere.", s.dir)
	if res := s.exec(ctx, 10*time.Second, "worker_listener", rig.GenKeyArgs("demo", s.keyFile)...); res.Code != 0 {
		return fmt.Errorf("genkey failed: %v", orCode(res))
	}
	if err := s.writeListenerConfig(); err != nil {
		return err
	}
	s.say("Wrote $DEMO/worker_listener.yaml: service \"demo\" with start/stop/restart/status actions,")
	s.say("each a fixed argv running `demo_worker daemon ACTION`; requests from 127.0.0.1 with the key only.")
	if res := s.exec(ctx, 10*time.Second, "worker_listener", "check-config", "--config", s.listenerConf); res.Code != 0 {
		return fmt.Errorf("the listener refused the demo's config: %v", orCode(res))
	}
	res := s.exec(ctx, 15*time.Second, "demo_worker", s.w.Args("start")...)
	if res.Code != 0 {
		return fmt.Errorf("starting the worker failed: %v", orCode(res))
	}
	s.recordPID()
	s.say("$ worker_listener serve --config $DEMO/worker_listener.yaml   (in the background)")
	// In the demo's own environment and directory, like every command.
	s.listener, err = rig.StartListener(ctx, rig.Serve{Bin: s.bin["worker_listener"], Config: s.listenerConf,
		Log: s.listenerLog, Env: s.r.env, Dir: s.dir, Timeout: 10 * time.Second})
	if err != nil {
		return errors.New(s.shown(err.Error()))
	}
	s.say("listener pid %d is listening on 127.0.0.1:%s", s.listener.PID(), s.listenPort)
	return nil
}

// currentPID reads the worker's pid file (0 when there is none).
func (s *story) currentPID() int { return s.w.PID() }

// recordPID remembers every worker pid, so cleanup can check them all.
func (s *story) recordPID() int {
	pid := s.currentPID()
	if pid != 0 && (len(s.workerPIDs) == 0 || s.workerPIDs[len(s.workerPIDs)-1] != pid) {
		s.workerPIDs = append(s.workerPIDs, pid)
	}
	return pid
}

// waitWorkerGone waits (bounded) for a crashed worker to be gone.
func (s *story) waitWorkerGone(ctx context.Context, pid int) {
	deadline := s.now().Add(5 * time.Second)
	for s.w.Owns(pid) && s.now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
}

func orCode(res result) error {
	if res.Err != nil {
		return res.Err
	}
	return fmt.Errorf("exit %d: %s", res.Code, strings.TrimSpace(res.Stdout+" "+res.Stderr))
}

// cleanup stops everything the demo started and says what was left. It
// uses its own time budget: ctx may already be cancelled (Ctrl-C).
func (s *story) cleanup() string {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Nagios first, so that no handler runs while the rest goes down.
	if s.nagios != nil {
		if err := s.nagios.Close(); err != nil {
			fmt.Fprintf(s.out, "demo: stopping Nagios: %v\n", err)
		}
	}
	if s.listener != nil {
		_ = s.listener.Stop(5 * time.Second)
	}
	if s.w.PIDFile != "" {
		stop := rig.Worker{Bin: s.w.Bin, PIDFile: s.w.PIDFile, StopTimeout: "3s"}
		s.r.run(ctx, 15*time.Second, stop.Bin, stop.Args("stop")...)
	}
	s.recordPID()
	var left []string
	for _, pid := range s.workerPIDs {
		if s.w.Owns(pid) {
			left = append(left, strconv.Itoa(pid))
			_ = killPID(pid)
		}
	}
	left = append(left, s.killStrays()...)
	kept := "temp dir removed"
	if s.cfg.Keep {
		kept = "temp dir kept: " + s.dir
	} else if err := os.RemoveAll(s.dir); err != nil {
		kept = "could not remove the temp dir: " + err.Error()
	}
	if len(left) > 0 {
		return fmt.Sprintf("processes %s had to be killed at the end; %s", strings.Join(left, ", "), kept)
	}
	return "nothing: every process stopped; " + kept
}

// killStrays kills any process whose command line names the temp dir: only
// the demo's own processes can.
func (s *story) killStrays() []string {
	var left []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(b), s.dir+"/") {
			continue
		}
		if !proc.Alive(pid) { // a zombie has exited; it only awaits its reaper
			continue
		}
		left = append(left, strconv.Itoa(pid))
		_ = killPID(pid)
	}
	return left
}
