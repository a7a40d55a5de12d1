package rig

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
	"github.com/selfheal/selfheal/internal/nagios"
)

// LoopOptions vary one loop. Kind, Dir, ConfigDir and Bin are required.
type LoopOptions struct {
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

	// MaxRestarts is the agent's restart budget (default 3, per hour:
	// the budget's window is always 1h here).
	MaxRestarts int
	// MinGap is the agent's least time between restarts (default 1s);
	// MaxGap caps its back-off ("" the agent's default; MinGap: off).
	MinGap string
	MaxGap string
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
	// MaxAttempts overrides the sample's 3 check attempts; Volatile makes
	// the worker's service volatile (Nagios only).
	MaxAttempts int
	Volatile    bool
	// Extra adds that many more worker services on the host (worker02,
	// worker03, ...; targets demo02, ...), each with its own demo_worker.
	Extra int
	// HandlerArgs are extra handle_worker flags for the node ($USER6$:
	// breaker tuning, --ignore), as an admin sets them in resource.cfg.
	HandlerArgs string
	// Breaker is the agent's breaker (nil: its default).
	Breaker *Breaker
	// WrongKey gives the handler another fleet's key under the same fleet
	// id: the host key it derives is not the agent's, so every request
	// fails authentication.
	WrongKey bool
}

// DefaultHandlerArgs is the sample resource.cfg's $USER6$: the defaults,
// spelled out (Nagios refuses an empty $USERn$).
const DefaultHandlerArgs = "--breaker-threshold=10 --breaker-window=5m --breaker-quiet=2m"

func (o *LoopOptions) defaults() {
	if o.HandlerArgs == "" {
		o.HandlerArgs = DefaultHandlerArgs
	}
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

// Loop is the whole self-healing loop, running: a detached demo_worker, a
// worker_listener allowed to restart it, and a real Nagios Core 4 or
// Icinga 2 that runs check_worker and handle_worker from the very sample
// definitions in nagios-config/. It is what the end-to-end tests and the
// time-to-heal benchmark run. Everything lives under LoopOptions.Dir and
// on 127.0.0.1 ports chosen by the kernel; Close stops every process it
// started (the engine first, so that no handler fires during teardown,
// then the listener, then the worker through its pid file).
type Loop struct {
	Opts         LoopOptions
	Agent        string // the agent's identity: HostName lower-cased
	Keys         Files  // the fleet key (the handler's), the host key, the listener's config
	Worker       Worker
	WorkerAddr   string // the worker's status address (127.0.0.1:port)
	ListenerPort int
	PIDFile      string // the worker's pid file
	WorkerLog    string
	AuditLog     string // worker_listener's audit log (JSON lines)
	ListenerLog  string // worker_listener's stdout/stderr
	HandlerLog   string // handle_worker's log (JSON lines)
	EngineOut    string // the engine's stdout/stderr
	Inst         *engine.Instance
	// Extras are the Extra services, in order.
	Extras []ExtraService

	binDir  string
	closers []func() error
}

// StartLoop builds and starts the loop, and returns once the engine has
// recorded the healthy worker as OK. On error everything started is
// stopped again.
func StartLoop(ctx context.Context, opts LoopOptions) (l *Loop, err error) {
	opts.defaults()
	if opts.Dir == "" || opts.ConfigDir == "" {
		return nil, errors.New("rig: LoopOptions.Dir and ConfigDir are required")
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
	if err := LinkBinaries(l.binDir, opts.Bin); err != nil {
		return l, err
	}
	wport, err := FreePort()
	if err != nil {
		return l, err
	}
	if l.ListenerPort, err = FreePort(); err != nil {
		return l, err
	}
	l.WorkerAddr = "127.0.0.1:" + strconv.Itoa(wport)
	l.PIDFile = l.path("worker.pid")
	l.WorkerLog = l.path("worker.log")
	l.AuditLog = l.path("audit.log")
	l.ListenerLog = l.path("listener.out")
	l.HandlerLog = l.path("handle_worker.log")
	l.EngineOut = l.path("engine.out")
	l.Worker = Worker{Bin: l.Bin("demo_worker"), Addr: l.WorkerAddr, PIDFile: l.PIDFile, LogFile: l.WorkerLog}

	// The keys made the documented way (handle_worker genkey on the
	// monitoring node, issue-key for the worker host); the agent is named
	// as the samples name it, after the Nagios host. The budget is the
	// agent's; the action's timeouts are the sample's (10 s + 5 s grace,
	// inside the handler's 18 s deadline).
	l.Agent = strings.ToLower(HostName)
	services := []Service{{Name: Target, Actions: map[string]Action{
		"restart": {Argv: l.Worker.Argv("restart"), Timeout: "10s", KillGrace: "5s"}}}}
	for i := range opts.Extra {
		name, target := ExtraName(i + 1)
		port, err := FreePort()
		if err != nil {
			return l, err
		}
		w := Worker{Bin: l.Bin("demo_worker"), Addr: "127.0.0.1:" + strconv.Itoa(port),
			PIDFile: l.path(target + ".pid"), LogFile: l.path(target + ".log")}
		l.Extras = append(l.Extras, ExtraService{Name: name, Target: target, Worker: w, Port: port})
		services = append(services, Service{Name: target, Actions: map[string]Action{
			"restart": {Argv: w.Argv("restart"), Timeout: "10s", KillGrace: "5s"}}})
	}
	files, err := Prepare(ctx, Kit{Dir: l.path("listener"), Agent: l.Agent, Issue: l.Bin("handle_worker"),
		Config: ListenerConfig{
			Listen: fmt.Sprintf("127.0.0.1:%d", l.ListenerPort), Allow: Loopback, AuditLog: l.AuditLog,
			Budget:  &Budget{Max: opts.MaxRestarts, Window: "1h", MinGap: opts.MinGap, MaxGap: opts.MaxGap},
			Breaker: opts.Breaker, Services: services,
		}})
	if err != nil {
		return l, err
	}
	l.Keys = files
	handlerKey := files.FleetFile
	if opts.WrongKey {
		handlerKey = l.path("other-fleet.key")
		if _, err := Run(ctx, l.Bin("handle_worker"), FleetKeyArgs(files.Fleet.ID, handlerKey)...); err != nil {
			return l, err
		}
	}
	if err := l.startWorker(ctx); err != nil {
		return l, err
	}
	for _, x := range l.Extras {
		if _, err := x.Worker.Daemon(ctx, "start"); err != nil {
			return l, err
		}
		l.closers = append(l.closers, func() error { return x.Worker.Shutdown(context.Background()) })
	}
	if !opts.NoListener {
		if _, err := Run(ctx, l.Bin("worker_listener"), "check-config", "--config", files.Config); err != nil {
			return l, err
		}
		// The ping signs with the fleet key, as the handler will: proof
		// that the agent serves the host key issued from it.
		// Activate: the agent is handed a socket the rig already holds, so
		// no other test can take its port between choosing and binding it
		// (the config's listen address is then unused).
		ln, err := StartListener(ctx, Serve{Bin: l.Bin("worker_listener"), Config: files.Config, Log: l.ListenerLog,
			Ping: &files.Fleet, PingAgent: l.Agent, Activate: true})
		if err != nil {
			return l, err
		}
		_, port, err := net.SplitHostPort(ln.Socket)
		if err == nil {
			l.ListenerPort, err = strconv.Atoi(port)
		}
		if err != nil {
			ln.Stop(10 * time.Second)
			return l, fmt.Errorf("rig: listener socket %q: %w", ln.Socket, err)
		}
		l.closers = append(l.closers, func() error { return ln.Stop(10 * time.Second) })
	}
	if err := l.startEngine(ctx, wport, handlerKey); err != nil {
		return l, err
	}
	return l, nil
}

// ExtraService is one more worker service of the loop's host.
type ExtraService struct {
	Name, Target string
	Worker       Worker
	Port         int
}

// ExtraName is the i-th (1-based) extra service's name and target.
func ExtraName(i int) (service, target string) {
	return fmt.Sprintf("%s%02d", ServiceName, i+1), fmt.Sprintf("%s%02d", Target, i+1)
}

// LinkBinaries makes dir hold the suite's four binaries, as symlinks to
// the paths in bin: the one plugin directory an engine is given.
func LinkBinaries(dir string, bin map[string]string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, name := range Binaries {
		src, ok := bin[name]
		if !ok {
			return fmt.Errorf("rig: no path for %s", name)
		}
		abs, err := filepath.Abs(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(abs, filepath.Join(dir, name)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	return nil
}

// StartListener starts the agent of a NoListener loop: the agent coming
// back. It binds the listen address of its config, the port the engine's
// host was given at start (Activate cannot serve here: that port is
// fixed), and answers the fleet key's ping before it returns.
func (l *Loop) StartListener(ctx context.Context) error {
	if !l.Opts.NoListener {
		return errors.New("rig: the loop's listener runs already")
	}
	ln, err := StartListener(ctx, Serve{Bin: l.Bin("worker_listener"), Config: l.Keys.Config, Log: l.ListenerLog,
		Ping: &l.Keys.Fleet, PingAgent: l.Agent})
	if err != nil {
		return err
	}
	l.closers = append(l.closers, func() error { return ln.Stop(10 * time.Second) })
	return nil
}

func (l *Loop) path(name string) string { return filepath.Join(l.Opts.Dir, name) }

// Bin returns the path of one of the suite's binaries.
func (l *Loop) Bin(name string) string { return filepath.Join(l.binDir, name) }

func (l *Loop) startWorker(ctx context.Context) error {
	if l.Opts.StaleHang {
		if err := l.startStaleHangWorker(ctx); err != nil {
			return err
		}
	} else if _, err := l.Worker.Daemon(ctx, "start"); err != nil {
		return err
	}
	l.closers = append(l.closers, func() error { return l.Worker.Shutdown(context.Background()) })
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
			return errors.New("rig: demo_worker run exited at start-up")
		case <-ctx.Done():
			return fmt.Errorf("rig: demo_worker run never wrote its pid file: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// WorkerPID reads the worker's pid file; 0 when there is none.
func (l *Loop) WorkerPID() int { return l.Worker.PID() }

// Fault injects a fault (crash, hang, degrade, fail, clear) into the worker.
func (l *Loop) Fault(ctx context.Context, name string) error { return l.Worker.Fault(ctx, name) }

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
	site := Site{Kind: o.Kind, Binary: o.Engine, Stderr: out, ConfigDir: o.ConfigDir, BinDir: l.binDir,
		KeyFile: keyFile, StateDir: stateDir, HandlerLog: l.HandlerLog,
		ListenerPort: l.ListenerPort, WorkerPort: workerPort, CheckTimeout: o.CheckTimeout, MaxAge: o.MaxAge,
		Recheck: o.Recheck, MaxAttempts: o.MaxAttempts, Volatile: o.Volatile, HandlerArgs: o.HandlerArgs}
	for _, x := range l.Extras {
		site.Extra = append(site.Extra, SiteService{Name: x.Name, Target: x.Target, Port: x.Port})
	}
	cfg, err := site.Config()
	if err != nil {
		out.Close()
		return err
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
	if _, err := inst.WaitService(ctx, HostName, ServiceName, engine.StateIs(nagios.OK, true)); err != nil {
		return fmt.Errorf("rig: the healthy worker never showed OK: %w", err)
	}
	return nil
}

// Close stops everything StartLoop started, engine first, and returns the
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

// Audit reads the agent's audit log.
func (l *Loop) Audit() ([]AuditRecord, error) { return ReadAudit(l.AuditLog) }

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
	return engine.EventHandler(HostName, ServiceName, "CRITICAL", "HARD")(e)
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
	return WaitHealed(ctx, l.Inst, mark)
}

// WaitHealed is Loop.WaitHealed for any engine instance running the rig's
// host and service (one endpoint of a zone, say).
func WaitHealed(ctx context.Context, inst *engine.Instance, mark int) (Healed, error) {
	crit := engine.Alert(HostName, ServiceName, "CRITICAL", "HARD")
	okHard := engine.Alert(HostName, ServiceName, "OK", "HARD")
	var h Healed
	for {
		h.Entries, _ = inst.Log()
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
	if _, err := inst.WaitService(ctx, HostName, ServiceName, engine.StateIs(nagios.OK, true)); err != nil {
		return h, err
	}
	return h, nil
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
		if s, ok := st.Service(HostName, ServiceName); ok {
			fmt.Fprintf(&b, "status.dat: %s hard=%v attempt=%d output=%q\n", s.State, s.Hard, s.Attempt, s.Output)
		}
		for _, c := range st.CommentsFor(HostName, ServiceName) {
			fmt.Fprintf(&b, "comment: %s: %s\n", c.Author, c.Text)
		}
	}
	return b.String()
}
