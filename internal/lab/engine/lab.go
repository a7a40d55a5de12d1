// Package engine runs a throwaway, real Nagios Core 4 or Icinga 2 for
// tests, benchmarks and demos.
//
// Each Instance lives in its own short temp directory under /tmp (Nagios
// 4.4.6 aborts when its query socket path reaches 108 bytes) and reads and
// writes nothing outside it: every path in the generated main config points
// inside the directory. The object definitions are loaded from files the
// caller names, as they are, so the project's sample definitions in
// nagios-config/ are what actually runs; site-specific values come in the
// way a site supplies them: $USERn$ macros in a resource.cfg for Nagios,
// global constants for Icinga 2.
//
// The instance runs as the current user (nagios_user=root when that is
// root, -DRunAsUser for Icinga 2), with one-second intervals
// (interval_length=1) and the settings that make scheduling deterministic.
// Everything it records can be read back: status.dat (service state, state
// type, attempt, comments) and the Nagios-format log. External commands go
// through the command FIFO, opened non-blocking and bounded in time.
//
// Typical use:
//
//	inst, err := engine.New(engine.Config{Kind: engine.Nagios4, ObjectFiles: files, Resources: res})
//	defer inst.Close()
//	err = inst.Start(ctx)
//	st, err := inst.WaitService(ctx, "worker1", "worker", engine.StateIs(nagios.Critical, true))
package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/selfheal/selfheal/internal/proc"
)

// Kind selects the monitoring engine.
type Kind string

// The engines the lab can run.
const (
	Nagios4 Kind = "nagios4"
	Icinga2 Kind = "icinga2"
)

// Config describes one instance. Only Kind is required.
type Config struct {
	Kind Kind
	// Binary is the engine's executable; empty finds "nagios4" or "icinga2"
	// on PATH (then /usr/sbin).
	Binary string
	// Dir is the instance directory; empty creates a short one under /tmp,
	// removed by Close. A caller-supplied Dir is left in place.
	Dir string
	// ObjectFiles are object definition files loaded as they are
	// (cfg_file= for Nagios, include for Icinga 2). Paths are made absolute.
	ObjectFiles []string
	// Objects is extra object definition text written to a file inside the
	// directory and loaded after ObjectFiles (e.g. a test's host and service).
	Objects string
	// Resources are the site-specific values. Nagios: "USER1" -> value
	// lines in resource.cfg ($USER1$). Icinga 2: global string constants
	// (const Name = "value"), declared before any object file is read.
	// In values, "${dir}" and "${command_file}" expand to the instance's
	// directory and command FIFO (Icinga 2 has no macro for the latter).
	Resources map[string]string
	// Constants (Icinga 2 only) are global constants written verbatim as
	// Icinga expressions (e.g. "1s", "3"), for non-string values.
	Constants map[string]string
	// MainConfigFiles (Nagios only) are files of main-config settings
	// (key=value) merged into the generated nagios.cfg, e.g. the settings
	// the sample says handle_worker's feedback needs. Keys that name a
	// path (command_file, log_file, ...) are relocated into Dir.
	MainConfigFiles []string
	// Settings (Nagios only) override any main-config setting last.
	Settings map[string]string
	// Stderr receives the engine's own stdout and stderr; nil discards.
	Stderr *os.File
}

// Instance is one prepared (and possibly running) engine.
type Instance struct {
	Kind Kind
	// Dir is the instance directory.
	Dir string
	// MainConfig is the generated nagios.cfg or icinga2.conf.
	MainConfig string
	// CommandFile is the external command FIFO (created by the engine).
	CommandFile string
	// StatusFile is status.dat (Nagios format for both engines).
	StatusFile string
	// LogFile is the Nagios-format log (Icinga 2: the CompatLogger's).
	LogFile string
	// MainLog is Icinga 2's own FileLogger log; empty for Nagios.
	MainLog string
	// DebugFile is Nagios' debug log (microsecond timestamps); empty for Icinga 2.
	DebugFile string

	cfg     Config
	binary  string
	ownDir  bool
	baseArg []string
	// ready, when set, replaces Start's readiness test (FIFO and
	// status.dat), for an instance that has neither (api.go).
	ready func(context.Context) (bool, error)

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	waitEr error
}

// New prepares an instance: creates its directory and writes the main
// config, the resource/constants file and the extra objects. It does not
// start anything.
func New(cfg Config) (*Instance, error) {
	if cfg.Kind != Nagios4 && cfg.Kind != Icinga2 {
		return nil, fmt.Errorf("engine: unknown kind %q", cfg.Kind)
	}
	bin := cfg.Binary
	if bin == "" {
		var err error
		if bin, err = findBinary(string(cfg.Kind)); err != nil {
			return nil, err
		}
	}
	inst := &Instance{Kind: cfg.Kind, cfg: cfg, binary: bin, Dir: cfg.Dir}
	if inst.Dir == "" {
		// Short on purpose: the query socket path must stay < 108 bytes.
		d, err := os.MkdirTemp("/tmp", "nl")
		if err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
		inst.Dir, inst.ownDir = d, true
	}
	abs, err := filepath.Abs(inst.Dir)
	if err != nil {
		return nil, err
	}
	inst.Dir = abs
	for i, f := range cfg.ObjectFiles {
		if cfg.ObjectFiles[i], err = filepath.Abs(f); err != nil {
			return nil, err
		}
	}
	switch cfg.Kind {
	case Nagios4:
		err = inst.writeNagios()
	case Icinga2:
		err = inst.writeIcinga()
	}
	if err != nil {
		inst.Close()
		return nil, err
	}
	return inst, nil
}

func findBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	p := filepath.Join("/usr/sbin", name)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("engine: %s not found on PATH or in /usr/sbin", name)
}

// runAs returns the user and group names the engine should run as: the
// current ones, so that every file the lab writes is writable by it.
func runAs() (string, string, error) {
	u, err := user.Current()
	if err != nil {
		return "", "", fmt.Errorf("engine: current user: %w", err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		return "", "", fmt.Errorf("engine: current group: %w", err)
	}
	return u.Username, g.Name, nil
}

// Validate runs the engine's own config check (nagios4 -v, icinga2 daemon
// -C) and returns its output; err is non-nil when the check fails.
func (in *Instance) Validate(ctx context.Context) (string, error) {
	var args []string
	switch in.Kind {
	case Nagios4:
		args = []string{"-v", in.MainConfig}
	case Icinga2:
		args = append([]string{"daemon", "-C"}, in.baseArg...)
	}
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, in.binary, args...)
	cmd.Dir = in.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("engine: %s config check failed: %w", in.Kind, err)
	}
	return string(out), nil
}

// Start launches the engine in its own process group and waits (bounded by
// ctx) until it has written its first status.dat and created the command
// FIFO, i.e. until it is ready to run checks and accept commands.
func (in *Instance) Start(ctx context.Context) error {
	in.mu.Lock()
	if in.cmd != nil {
		in.mu.Unlock()
		return errors.New("engine: already started")
	}
	var args []string
	switch in.Kind {
	case Nagios4:
		args = []string{in.MainConfig}
	case Icinga2:
		if err := in.resetIcingaState(); err != nil {
			in.mu.Unlock()
			return err
		}
		args = append([]string{"daemon"}, in.baseArg...)
	}
	cmd := exec.Command(in.binary, args...)
	cmd.Dir = in.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if in.cfg.Stderr != nil {
		cmd.Stdout, cmd.Stderr = in.cfg.Stderr, in.cfg.Stderr
	}
	if err := cmd.Start(); err != nil {
		in.mu.Unlock()
		return fmt.Errorf("engine: start %s: %w", in.Kind, err)
	}
	in.cmd = cmd
	in.done = make(chan struct{})
	go func() {
		err := cmd.Wait()
		in.mu.Lock()
		in.waitEr = err
		in.mu.Unlock()
		close(in.done)
	}()
	in.mu.Unlock()

	err := poll(ctx, 50*time.Millisecond, func() (bool, error) {
		select {
		case <-in.done:
			// The log goes with the temp dir: quote its end.
			return false, fmt.Errorf("engine: %s exited during start-up: %v (see %s):\n%s", in.Kind, in.waitErr(), in.startupLog(), logTail(in.startupLog()))
		default:
		}
		if in.ready != nil {
			return in.ready(ctx)
		}
		if !isFIFO(in.CommandFile) {
			return false, nil
		}
		fi, err := os.Stat(in.StatusFile)
		return err == nil && fi.Size() > 0, nil
	})
	if err != nil {
		in.Stop()
		return err
	}
	return nil
}

// logTail is the last lines of a log, for an error that outlives it.
func logTail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

func (in *Instance) startupLog() string {
	if in.Kind == Icinga2 {
		return in.MainLog
	}
	return in.LogFile
}

func (in *Instance) waitErr() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.waitEr
}

// Running reports whether the engine process is still alive.
func (in *Instance) Running() bool {
	in.mu.Lock()
	done := in.done
	in.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// PID returns the engine's process id, or 0 when it was never started.
func (in *Instance) PID() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cmd == nil || in.cmd.Process == nil {
		return 0
	}
	return in.cmd.Process.Pid
}

// Stop sends SIGTERM, waits up to 10 s for the engine to exit (Nagios' workers
// sleep on exit: ~1.7 s), then SIGKILLs whatever is left: its process group
// and every descendant recorded before the SIGTERM (Nagios 4's workers and
// the checks and handlers they run live in process groups of their own).
// It returns once all of them are gone, or an error after a bounded wait.
// Stop is idempotent.
func (in *Instance) Stop() error {
	in.mu.Lock()
	cmd, done := in.cmd, in.done
	in.mu.Unlock()
	if cmd == nil {
		return nil
	}
	pgid := cmd.Process.Pid
	kids := descendants(pgid)
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	kids = append(kids, descendants(pgid)...)
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	for _, k := range kids {
		if k.alive() {
			_ = syscall.Kill(k.pid, syscall.SIGKILL)
		}
	}
	// SIGKILL cannot be ignored; the bounds only wait for a loaded
	// machine to schedule the exits and the reaping.
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		return fmt.Errorf("engine: %s pid %d did not exit", in.Kind, pgid)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		left := 0
		for _, k := range kids {
			if k.alive() {
				left++
			}
		}
		if left == 0 && !proc.GroupAlive(pgid) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("engine: processes of %s (pid %d) still alive after SIGKILL", in.Kind, pgid)
}

// Close stops the engine and removes the directory if New created it.
func (in *Instance) Close() error {
	err := in.Stop()
	if in.ownDir {
		if rerr := os.RemoveAll(in.Dir); err == nil {
			err = rerr
		}
	}
	return err
}

// poll calls f every interval until it returns true or an error, or ctx ends.
func poll(ctx context.Context, every time.Duration, f func() (bool, error)) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		ok, err := f()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func writeFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(content), 0o644)
}

func mkdirs(dirs ...string) error {
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("engine: %w", err)
		}
	}
	return nil
}

// quoteIcinga renders s as an Icinga 2 string literal.
func quoteIcinga(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`).Replace(s) + `"`
}

// expand replaces ${dir} and ${command_file} in a resource value.
func (in *Instance) expand(v string) string {
	return strings.NewReplacer("${dir}", in.Dir, "${command_file}", in.CommandFile).Replace(v)
}

// Reload does what `service nagios4 reload` and `systemctl reload nagios4`
// do: SIGHUP to Nagios, which rereads its config in the same process. It
// returns once Nagios has logged the restart and written a status.dat
// after it (Nagios 4 only).
func (in *Instance) Reload(ctx context.Context) error {
	if in.Kind != Nagios4 {
		return fmt.Errorf("engine: Reload is for Nagios 4, not %s", in.Kind)
	}
	pid := in.PID()
	if pid == 0 || !in.Running() {
		return errors.New("engine: not running")
	}
	mark := 0
	if es, err := ReadLog(in.LogFile); err == nil {
		mark = len(es)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("engine: SIGHUP: %w", err)
	}
	var at time.Time
	return poll(ctx, 50*time.Millisecond, func() (bool, error) {
		if !in.Running() {
			return false, fmt.Errorf("engine: %s exited on SIGHUP: %v (see %s)", in.Kind, in.waitErr(), in.LogFile)
		}
		if at.IsZero() {
			es, _ := ReadLog(in.LogFile)
			for _, e := range es[min(mark, len(es)):] {
				if strings.Contains(e.Raw, "Caught SIGHUP, restarting") {
					at = e.Time
				}
			}
			return false, nil
		}
		// status.dat's created= is whole seconds: one written in a later
		// second than the log line is the restarted Nagios'.
		st, err := ReadStatus(in.StatusFile)
		if err != nil {
			return false, nil
		}
		for _, b := range st.Blocks {
			if b.Type == "info" {
				c, _ := strconv.ParseInt(b.Fields["created"], 10, 64)
				return c > at.Unix(), nil
			}
		}
		return false, nil
	})
}
