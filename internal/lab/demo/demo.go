package main

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
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/proc"
)

// Config selects the story; it is also the command line.
type Config struct {
	BinDir string `required:"" type:"existingdir" help:"Directory holding check_worker, handle_worker, worker_listener and demo_worker (make build's bin/)."`
	Nagios bool   `help:"Run the story under a real Nagios Core 4 (needs nagios4)."`
	Keep   bool   `help:"Keep the temp directory for inspection (its processes are still stopped)."`
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

// The demo's restart budget, kept by the agent (its config's budget:):
// small, so the story ends in seconds. The agent's defaults are 3 restarts
// an hour, at least 2 minutes apart.
const (
	maxRestarts = 3
	window      = "10m"
	minGap      = "0s"
	// The plugin's timeout: short, so the hang shows in 2 seconds.
	checkTimeout = 2
	maxAge       = "5,10"
	maxRounds    = 6 // flapping rounds, bounded whatever the handler does
	// The fleet key's id, as the docs make it.
	fleetID = "fleet1"
)

// story is one run of the demo and everything it started.
type story struct {
	cfg Config
	out io.Writer
	now func() time.Time
	t0  time.Time
	r   *runner

	dir        string            // the temp dir ($DEMO in the narration)
	bin        map[string]string // binary name -> path
	w          rig.Worker        // the worker, behind its pid file
	listenPort string
	// agent is the agent's name: the host name Nagios knows it by,
	// lower-cased (handle_worker's default for --agent).
	agent string
	// fleetFile is the monitoring node's fleet key; keyFile the worker
	// host's own host key, issued from it.
	fleetFile, keyFile                string
	problem                           int // the last $SERVICEPROBLEMID$ the demo handed out
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
	s := &story{cfg: cfg, out: deps.Out, now: deps.Now, t0: deps.Now(), bin: map[string]string{}, agent: demoHost}
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
	s.fleetFile = filepath.Join(dir, "monitoring", fleetID+".key")
	s.keyFile = filepath.Join(dir, "keys", fleetID+".key")
	// Stop (4 s) plus start (5 s) fit the restart action's 10 s timeout.
	s.w = rig.Worker{Bin: s.bin["demo_worker"], PIDFile: filepath.Join(dir, "worker.pid"), LogFile: filepath.Join(dir, "worker.log"),
		StartTimeout: "5s", StopTimeout: "4s"}
	s.listenerConf = filepath.Join(dir, "worker_listener.yaml")
	s.listenerLog = filepath.Join(dir, "listener.log")
	s.audit = filepath.Join(dir, "audit.log")
	s.handlerLog = filepath.Join(dir, "handler.log")
	s.handlerState = filepath.Join(dir, "handler")
	for _, d := range []string{filepath.Join(dir, "monitoring"), filepath.Join(dir, "keys"), s.handlerState, filepath.Join(dir, "listener-state")} {
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
	shownArgs = min(shownArgs, len(args))
	line := s.shownArgs(name, args[:shownArgs])
	if shownArgs < len(args) {
		line += " [same flags as above]"
	}
	fmt.Fprintf(s.out, "%s $ %s\n", s.stamp(), line)
	res := s.r.run(ctx, timeout, s.bin[name], args...)
	s.printOutput(name, res, maxLines)
	return res
}

// shownArgs is a command line as the narration shows it.
func (s *story) shownArgs(name string, args []string) string {
	parts := []string{name}
	for _, a := range args {
		parts = append(parts, s.shown(a))
	}
	return strings.Join(parts, " ")
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
	if code < 0 || code > 3 {
		return "not a plugin state"
	}
	return nagios.State(code).String()
}

// firstLine is the plugin's status line without perfdata.
func firstLine(out string) string {
	if l := outputLines(out, true); len(l) > 0 {
		return l[0]
	}
	return "(no output)"
}

// ---- set-up shared by both stories ----

// writeListenerConfig writes the listener's config: its name, its host
// key, the restart budget, and one service, demo, whose actions run
// demo_worker's daemon mode (no shell, fixed argv). 10 s plus 5 s of kill
// grace stays inside the handler's 18 s deadline, so even a restart that
// times out is reported.
func (s *story) writeListenerConfig() error {
	actions := map[string]rig.Action{}
	for _, verb := range []string{"restart", "start", "stop", "status"} {
		actions[verb] = rig.Action{Argv: s.w.Argv(verb), Timeout: "10s", KillGrace: "5s"}
	}
	return rig.ListenerConfig{
		Comment:  "Written by `make demo`: the listener may run exactly these actions.",
		Listen:   "127.0.0.1:" + s.listenPort,
		Agent:    s.agent,
		Keys:     []string{s.keyFile},
		Allow:    rig.Loopback,
		AuditLog: s.audit,
		StateDir: filepath.Join(s.dir, "listener-state"),
		Budget:   &rig.Budget{Max: maxRestarts, Window: window, MinGap: minGap},
		Services: []rig.Service{{Name: "demo", Actions: actions}},
	}.Write(s.listenerConf)
}

// keys makes the keys the documented way: the fleet key once on the
// monitoring node, then the worker host's own key, issued from it and
// imported on the host in one line (over ssh in real life).
func (s *story) keys(ctx context.Context) error {
	s.say("On the monitoring node ($DEMO/monitoring), once: the fleet key. It never leaves that node.")
	if res := s.exec(ctx, 10*time.Second, "handle_worker", rig.FleetKeyArgs(fleetID, s.fleetFile)...); res.Code != 0 {
		return fmt.Errorf("genkey failed: %v", orCode(res))
	}
	s.say("For the worker host: its own key, for agent %q (the host's name in Nagios, lower-cased),", s.agent)
	s.say("issued on the monitoring node and imported on the host (in real life: | ssh root@HOST worker_listener ...):")
	issue := append([]string{s.bin["handle_worker"]}, "issue-key", "--key-file", s.fleetFile, "--agent", s.agent)
	imp := []string{s.bin["worker_listener"], "import-key", "--out", s.keyFile}
	fmt.Fprintf(s.out, "%s $ %s | %s\n", s.stamp(), s.shownArgs("handle_worker", issue[1:]), s.shownArgs("worker_listener", imp[1:]))
	res := s.r.pipe(ctx, 10*time.Second, issue, imp)
	s.printOutput("worker_listener", res, 4)
	if res.Err != nil || res.Code != 0 {
		return fmt.Errorf("issuing the host key failed: %v", orCode(res))
	}
	s.say("The worker host holds only that key: it signs for agent %q and nothing else.", s.agent)
	return nil
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

	s.step("1. Set up: the keys, the listener and the worker")
	s.say("Everything lives in $DEMO = %s; nothing is written elsewhere.", s.dir)
	if err := s.keys(ctx); err != nil {
		return err
	}
	if err := s.writeListenerConfig(); err != nil {
		return err
	}
	s.say("Wrote $DEMO/worker_listener.yaml: agent: %s, keys: [$DEMO/keys/%s.key], and service \"demo\" with", s.agent, fleetID)
	s.say("start/stop/restart/status actions, each a fixed argv running `demo_worker daemon ACTION`;")
	s.say("requests from 127.0.0.1, signed for agent %s, only. The agent keeps the restart budget:", s.agent)
	s.say("budget: {max: %d, window: %s, min_gap: %s}, one budget for every node that asks.", maxRestarts, window, minGap)
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
