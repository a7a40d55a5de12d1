// Package loop assembles the whole self-healing loop on one machine for
// the end-to-end tests, the time-to-heal benchmark and `make demo-nagios`:
// a detached demo_worker, a worker_listener allowed to restart it, and a
// real Nagios Core 4 or Icinga 2 (package engine) that runs check_worker
// and handle_worker from the very sample definitions in nagios-config/.
//
// Everything lives under Options.Dir and on 127.0.0.1 ports chosen by the
// kernel; Close stops every process it started (the engine first, so that no
// handler fires during teardown, then the listener, then the worker through
// its pid file).
package loop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/selfheal/selfheal/internal/lab/engine"
)

// The names the loop gives the sample's host, service and listener target.
const (
	HostName = "worker1"
	Service  = "worker"
	Target   = "demo"
)

// Binaries are the four programs of the suite, by name.
var Binaries = []string{"check_worker", "handle_worker", "worker_listener", "demo_worker"}

// Options vary one loop. Kind, Dir, ConfigDir and Bin are required.
type Options struct {
	Kind engine.Kind
	// Engine is the nagios4/icinga2 executable; empty finds it on PATH.
	Engine string
	// Dir holds everything the loop writes (keys, logs, state, configs);
	// the caller creates and removes it. The engine's own directory is a
	// short one under /tmp, removed by Close.
	Dir string
	// ConfigDir is the repository's nagios-config directory.
	ConfigDir string
	// Bin maps each name in Binaries to its executable.
	Bin map[string]string

	// MaxRestarts is the restart budget (default 3, per hour).
	MaxRestarts int
	// MinGap is the least time between restarts (default 1s).
	MinGap string
	// Recheck is how long after a restart the handler forces a re-check
	// (default 1s).
	Recheck string
	// CheckTimeout is check_worker -t in seconds (default 2).
	CheckTimeout int
	// MaxAge is check_worker --max-age (default "2s,3s").
	MaxAge string
	// StaleHang starts the first worker so that, when hung, it still
	// answers /status at once: only its stale heartbeat shows the hang
	// (check_worker --max-age), not a timeout. Restarted workers are
	// ordinary daemons.
	StaleHang bool
	// NoListener leaves the listener port closed (the listener is down).
	NoListener bool
	// WrongKey gives the handler a different secret under the listener's
	// key id, so that every request fails authentication.
	WrongKey bool
}

func (o *Options) defaults() {
	if o.MaxRestarts == 0 {
		o.MaxRestarts = 3
	}
	if o.MinGap == "" {
		o.MinGap = "1s"
	}
	if o.Recheck == "" {
		o.Recheck = "1s"
	}
	if o.CheckTimeout == 0 {
		o.CheckTimeout = 2
	}
	if o.MaxAge == "" {
		o.MaxAge = "2s,3s"
	}
}

// Loop is one running loop.
type Loop struct {
	Opts         Options
	WorkerAddr   string // the worker's status address (127.0.0.1:port)
	ListenerPort int
	PIDFile      string // the worker's pid file
	WorkerLog    string
	AuditLog     string // worker_listener's audit log (JSON lines)
	ListenerLog  string // worker_listener's stdout/stderr
	HandlerLog   string // handle_worker's log (JSON lines)
	EngineOut    string // the engine's stdout/stderr
	Inst         *engine.Instance

	binDir  string
	closers []func() error
}

// Start builds and starts the loop, and returns once the engine has
// recorded the healthy worker as OK. On error everything started is
// stopped again.
func Start(ctx context.Context, opts Options) (l *Loop, err error) {
	opts.defaults()
	if opts.Dir == "" || opts.ConfigDir == "" {
		return nil, errors.New("loop: Dir and ConfigDir are required")
	}
	l = &Loop{Opts: opts}
	defer func() {
		if err != nil {
			l.Close()
			l = nil
		}
	}()
	// One directory with all four binaries: $USER1$ / SelfhealPluginDir.
	l.binDir = filepath.Join(opts.Dir, "bin")
	if err := os.MkdirAll(l.binDir, 0o755); err != nil {
		return l, err
	}
	for _, name := range Binaries {
		src, ok := opts.Bin[name]
		if !ok {
			return l, fmt.Errorf("loop: no path for %s", name)
		}
		abs, err := filepath.Abs(src)
		if err != nil {
			return l, err
		}
		if err := os.Symlink(abs, filepath.Join(l.binDir, name)); err != nil && !os.IsExist(err) {
			return l, err
		}
	}
	wport, err := freePort()
	if err != nil {
		return l, err
	}
	if l.ListenerPort, err = freePort(); err != nil {
		return l, err
	}
	l.WorkerAddr = "127.0.0.1:" + strconv.Itoa(wport)
	l.PIDFile = l.path("worker.pid")
	l.WorkerLog = l.path("worker.log")
	l.AuditLog = l.path("audit.log")
	l.ListenerLog = l.path("listener.out")
	l.HandlerLog = l.path("handle_worker.log")
	l.EngineOut = l.path("engine.out")

	listenerKey := l.path("listener.key")
	if _, err := l.Run(ctx, "worker_listener", "genkey", "--id", "selfheal-lab", "--out", listenerKey); err != nil {
		return l, err
	}
	handlerKey := listenerKey
	if opts.WrongKey {
		handlerKey = l.path("handler.key")
		if _, err := l.Run(ctx, "worker_listener", "genkey", "--id", "selfheal-lab", "--out", handlerKey); err != nil {
			return l, err
		}
	}
	if err := l.startWorker(ctx); err != nil {
		return l, err
	}
	if !opts.NoListener {
		if err := l.startListener(ctx, listenerKey); err != nil {
			return l, err
		}
	}
	if err := l.startEngine(ctx, wport, handlerKey); err != nil {
		return l, err
	}
	return l, nil
}

func (l *Loop) path(name string) string { return filepath.Join(l.Opts.Dir, name) }

// Bin returns the path of one of the suite's binaries.
func (l *Loop) Bin(name string) string { return filepath.Join(l.binDir, name) }

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Run runs one of the suite's binaries to completion (at most 30 s) and
// returns its combined output; a non-zero exit is an error.
func (l *Loop) Run(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.Bin(name), args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytesTrim(out))
	}
	return string(out), nil
}

func bytesTrim(b []byte) string { return strings.TrimSpace(string(b)) }

func (l *Loop) daemonArgs(action string) []string {
	return []string{"daemon", action, "--listen", l.WorkerAddr, "--pid-file", l.PIDFile, "--log-file", l.WorkerLog}
}

func (l *Loop) startWorker(ctx context.Context) error {
	if l.Opts.StaleHang {
		if err := l.startStaleHangWorker(ctx); err != nil {
			return err
		}
	} else if _, err := l.Run(ctx, "demo_worker", l.daemonArgs("start")...); err != nil {
		return err
	}
	l.closers = append(l.closers, func() error {
		// Detached, and maybe restarted by the listener since: stop it
		// through its pid file, then make sure.
		pid := l.WorkerPID()
		_, err := l.Run(context.Background(), "demo_worker", l.daemonArgs("stop")...)
		// Only if it still is our worker: a stale pid file may name a
		// recycled pid by now.
		if cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); err == nil && pid > 0 &&
			strings.Contains(string(cmdline), l.WorkerAddr) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		return err
	})
	return nil
}

// startStaleHangWorker runs `demo_worker run` as a detached child (its own
// session, like a daemon) with a /status that does not stall when hung, and
// reaps it whenever it exits (the listener's restart kills it).
func (l *Loop) startStaleHangWorker(ctx context.Context) error {
	logf, err := os.OpenFile(l.WorkerLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(l.Bin("demo_worker"), "run", "--listen", l.WorkerAddr, "--pid-file", l.PIDFile,
		"--hang-status-delay", "1ms")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	l.closers = append(l.closers, func() error {
		select {
		case <-done: // reaped already: the pid may belong to someone else now
		default:
			_ = cmd.Process.Kill()
			<-done
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for l.WorkerPID() != cmd.Process.Pid {
		select {
		case <-done:
			return errors.New("loop: demo_worker run exited at start-up")
		case <-ctx.Done():
			return fmt.Errorf("loop: demo_worker run never wrote its pid file: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// WorkerPID reads the worker's pid file; 0 when there is none.
func (l *Loop) WorkerPID() int {
	b, err := os.ReadFile(l.PIDFile)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// Fault injects a fault (crash, hang, degrade, fail, clear) into the worker.
func (l *Loop) Fault(ctx context.Context, name string) error {
	_, err := l.Run(ctx, "demo_worker", "fault", name, "--listen", l.WorkerAddr)
	return err
}

func quoteList(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = strconv.Quote(a)
	}
	return strings.Join(q, ", ")
}

func (l *Loop) startListener(ctx context.Context, keyFile string) error {
	stateDir := l.path("listener-state")
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return err
	}
	restart := append([]string{l.Bin("demo_worker")}, l.daemonArgs("restart")...)
	// Quoted YAML scalars throughout: "::1/128" unquoted in a flow
	// sequence is a YAML syntax error.
	cfg := fmt.Sprintf(`listen: "127.0.0.1:%d"
keys: [%q]
allow: ["127.0.0.1/32", "::1/128"]
audit_log: %q
state_dir: %q
services:
  %s:
    actions:
      restart: { argv: [%s], timeout: 30s }
`, l.ListenerPort, keyFile, l.AuditLog, stateDir, Target, quoteList(restart))
	cfgFile := l.path("worker_listener.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		return err
	}
	if _, err := l.Run(ctx, "worker_listener", "check-config", "--config", cfgFile); err != nil {
		return err
	}
	out, err := os.Create(l.ListenerLog)
	if err != nil {
		return err
	}
	cmd := exec.Command(l.Bin("worker_listener"), "serve", "--config", cfgFile)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	l.closers = append(l.closers, func() error {
		defer out.Close()
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
			return nil
		case <-time.After(10 * time.Second):
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return errors.New("loop: worker_listener ignored SIGTERM for 10s")
	})
	addr := "127.0.0.1:" + strconv.Itoa(l.ListenerPort)
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-done:
			b, _ := os.ReadFile(l.ListenerLog)
			return fmt.Errorf("loop: worker_listener exited at start-up: %s", bytesTrim(b))
		case <-ctx.Done():
			return fmt.Errorf("loop: worker_listener not listening on %s: %w", addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// The test's host and service, built on the sample templates; only the
// per-worker values are set here. Intervals and attempts come from the
// sample unchanged (3 attempts, check and retry interval 1, which the lab's
// interval_length=1 makes seconds; for Icinga 2, site constants).
const nagiosObjects = `# Generated by the selfheal loop, on the sample templates.
define host {
  use                    selfheal-host
  host_name              %[1]s
  address                127.0.0.1
  active_checks_enabled  0
  max_check_attempts     1
  _LISTENER_PORT         %[3]d
}
define service {
  use                  selfheal-worker
  host_name            %[1]s
  service_description  %[2]s
  _WORKER_PORT         %[4]d
  _WORKER_TARGET       %[5]s
  _WORKER_TIMEOUT      %[7]d
  _WORKER_CHECK_ARGS   --max-age %[8]s
  _HEAL_MAX_RESTARTS   %[6]d
  _HEAL_MIN_GAP        %[9]s
  _HEAL_RECHECK        %[10]s
}
`

const icingaObjects = `/* Generated by the selfheal loop, for the sample apply rule. */
object Host %[1]q {
  address = "127.0.0.1"
  check_command = "dummy"
  enable_active_checks = false
  vars.listener_port = %[3]d
  vars.selfheal_workers[%[2]q] = {
    worker_port = %[4]d
    worker_target = %[5]q
    worker_timeout = %[7]d
    worker_max_age = %[8]q
    heal_max_restarts = %[6]d
    heal_min_gap = %[9]q
    heal_recheck = %[10]q
  }
}
`

func (l *Loop) startEngine(ctx context.Context, workerPort int, keyFile string) error {
	o := l.Opts
	stateDir := l.path("handler-state")
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return err
	}
	out, err := os.Create(l.EngineOut)
	if err != nil {
		return err
	}
	cfg := engine.Config{Kind: o.Kind, Binary: o.Engine, Stderr: out}
	args := []any{HostName, Service, l.ListenerPort, workerPort, Target, o.MaxRestarts, o.CheckTimeout, o.MaxAge, o.MinGap, o.Recheck}
	switch o.Kind {
	case engine.Nagios4:
		sample := filepath.Join(o.ConfigDir, "nagios4")
		cfg.ObjectFiles = []string{filepath.Join(sample, "commands.cfg"), filepath.Join(sample, "templates.cfg")}
		cfg.MainConfigFiles = []string{filepath.Join(sample, "nagios.cfg")}
		cfg.Objects = fmt.Sprintf(nagiosObjects, args...)
		cfg.Resources = map[string]string{"USER1": l.binDir, "USER3": keyFile, "USER4": stateDir, "USER5": l.HandlerLog}
	case engine.Icinga2:
		sample := filepath.Join(o.ConfigDir, "icinga2")
		cfg.ObjectFiles = []string{filepath.Join(sample, "selfheal.conf")}
		cfg.Objects = fmt.Sprintf(icingaObjects, args...)
		cfg.Resources = map[string]string{"SelfhealPluginDir": l.binDir, "SelfhealKeyFile": keyFile,
			"SelfhealStateDir": stateDir, "SelfhealLogFile": l.HandlerLog, "SelfhealCommandFile": "${command_file}"}
		cfg.Constants = map[string]string{"SelfhealCheckInterval": "1s", "SelfhealRetryInterval": "1s", "SelfhealMaxCheckAttempts": "3"}
	default:
		out.Close()
		return fmt.Errorf("loop: unknown engine kind %q", o.Kind)
	}
	inst, err := engine.New(cfg)
	if err != nil {
		out.Close()
		return err
	}
	l.Inst = inst
	l.closers = append(l.closers, func() error { defer out.Close(); return inst.Close() })
	if text, err := inst.Validate(ctx); err != nil {
		return fmt.Errorf("%w\n%s", err, text)
	}
	if err := inst.Start(ctx); err != nil {
		return err
	}
	if _, err := inst.WaitService(ctx, HostName, Service, engine.StateIs(engine.OK, true)); err != nil {
		return fmt.Errorf("loop: the healthy worker never showed OK: %w", err)
	}
	return nil
}

// Close stops everything Start started, engine first, and returns the
// first error. It is safe to call more than once.
func (l *Loop) Close() error {
	var first error
	for i := len(l.closers) - 1; i >= 0; i-- {
		if err := l.closers[i](); err != nil && first == nil {
			first = err
		}
	}
	l.closers = nil
	return first
}

// Log returns the engine's Nagios-format log now (nil if unreadable).
func (l *Loop) Log() []engine.LogEntry {
	entries, _ := l.Inst.Log()
	return entries
}

// Mark returns the length of the engine's log now; WaitHealed looks only at
// what comes after it.
func (l *Loop) Mark() int { return len(l.Log()) }

// HardHandler matches the engine's log line for the event handler run at
// HARD CRITICAL (logged whether or not the handler succeeded).
func HardHandler(e engine.LogEntry) bool {
	return engine.EventHandler(HostName, Service, "CRITICAL", "HARD")(e)
}

// Index returns the position of the first entry matching m at or after
// from, or -1.
func Index(entries []engine.LogEntry, from int, m func(engine.LogEntry) bool) int {
	if from < 0 {
		return -1
	}
	for i := from; i < len(entries); i++ {
		if m(entries[i]) {
			return i
		}
	}
	return -1
}

// Count counts the entries matching m.
func Count(entries []engine.LogEntry, m func(engine.LogEntry) bool) int {
	n := 0
	for _, e := range entries {
		if m(e) {
			n++
		}
	}
	return n
}

// Healed is the engine's record of one heal.
type Healed struct {
	Entries               []engine.LogEntry
	ICrit, IHandler, IOK  int // positions in Entries
	Critical, Handler, OK engine.LogEntry
}

// WaitHealed waits, after mark, for the full loop as the engine's own log
// records it: HARD CRITICAL, then the handler at HARD, then OK HARD, in
// that order; and then for status.dat to say OK HARD.
func (l *Loop) WaitHealed(ctx context.Context, mark int) (Healed, error) {
	crit := engine.Alert(HostName, Service, "CRITICAL", "HARD")
	okHard := engine.Alert(HostName, Service, "OK", "HARD")
	var h Healed
	for {
		h.Entries = l.Log()
		h.ICrit = Index(h.Entries, mark, crit)
		h.IHandler = Index(h.Entries, h.ICrit, HardHandler)
		h.IOK = Index(h.Entries, h.IHandler, okHard)
		if h.ICrit >= 0 && h.IHandler >= 0 && h.IOK >= 0 {
			break
		}
		select {
		case <-ctx.Done():
			return h, fmt.Errorf("no HARD CRITICAL -> handler -> OK HARD in the engine's log (found at %d, %d, %d): %w",
				h.ICrit, h.IHandler, h.IOK, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	h.Critical, h.Handler, h.OK = h.Entries[h.ICrit], h.Entries[h.IHandler], h.Entries[h.IOK]
	if _, err := l.Inst.WaitService(ctx, HostName, Service, engine.StateIs(engine.OK, true)); err != nil {
		return h, err
	}
	return h, nil
}

// Alive reports whether pid runs; a zombie (exited, not yet reaped by
// whoever adopted the detached worker) does not count.
func Alive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || !strings.HasPrefix(s[i+1:], " Z")
}

// Report returns the loop's logs and the engine's view of the service, for
// a failing test or a confused human.
func (l *Loop) Report() string {
	var b strings.Builder
	files := []string{l.HandlerLog, l.AuditLog, l.ListenerLog, l.WorkerLog, l.EngineOut}
	if l.Inst != nil {
		files = append([]string{l.Inst.LogFile, l.Inst.MainLog}, files...)
	}
	for _, f := range files {
		if f == "" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if len(data) > 16000 {
			data = append([]byte("...\n"), data[len(data)-16000:]...)
		}
		fmt.Fprintf(&b, "==> %s <==\n%s\n", filepath.Base(f), strings.TrimSpace(string(data)))
	}
	if l.Inst == nil {
		return b.String()
	}
	if st, err := l.Inst.Status(); err == nil {
		if s, ok := st.Service(HostName, Service); ok {
			fmt.Fprintf(&b, "status.dat: %s hard=%v attempt=%d output=%q\n", engine.StateName(s.State), s.Hard, s.Attempt, s.Output)
		}
		for _, c := range st.CommentsFor(HostName, Service) {
			fmt.Fprintf(&b, "comment: %s: %s\n", c.Author, c.Text)
		}
	}
	return b.String()
}
