package rig

import (
	"context"
	"syscall"

	"github.com/selfheal/selfheal/internal/proc"
)

// Worker is a demo_worker daemon behind its pid file, driven the way the
// listener's actions drive it: `demo_worker daemon start|stop|restart|status`.
// An empty optional field is left off the command line.
type Worker struct {
	Bin          string // the demo_worker binary
	Addr         string // --listen 127.0.0.1:PORT (stop and status do without)
	PIDFile      string // --pid-file
	LogFile      string // --log-file
	StartTimeout string // --start-timeout
	StopTimeout  string // --stop-timeout
}

// Args is the daemon command line for action, without the binary.
func (w Worker) Args(action string) []string {
	args := []string{"daemon", action}
	if w.Addr != "" {
		args = append(args, "--listen", w.Addr)
	}
	args = append(args, "--pid-file", w.PIDFile)
	if w.LogFile != "" {
		args = append(args, "--log-file", w.LogFile)
	}
	if w.StartTimeout != "" {
		args = append(args, "--start-timeout", w.StartTimeout)
	}
	if w.StopTimeout != "" {
		args = append(args, "--stop-timeout", w.StopTimeout)
	}
	return args
}

// Argv is Args with the binary first: a listener action's argv.
func (w Worker) Argv(action string) []string { return append([]string{w.Bin}, w.Args(action)...) }

// Daemon runs one daemon action to completion and returns its output.
func (w Worker) Daemon(ctx context.Context, action string) (string, error) {
	return Run(ctx, w.Bin, w.Args(action)...)
}

// FaultArgs is the command line that injects a fault (crash, hang,
// degrade, fail, clear) into the worker, without the binary.
func (w Worker) FaultArgs(name string) []string { return []string{"fault", name, "--listen", w.Addr} }

// Fault injects a fault into the worker.
func (w Worker) Fault(ctx context.Context, name string) error {
	_, err := Run(ctx, w.Bin, w.FaultArgs(name)...)
	return err
}

// PID reads the pid file; 0 when there is none (or it is unreadable).
func (w Worker) PID() int {
	pid, _ := proc.ReadPIDFile(w.PIDFile)
	return pid
}

// Owns reports whether pid is a live demo_worker run with this pid file
// (never a recycled pid).
func (w Worker) Owns(pid int) bool { return proc.RunsWithPIDFile(pid, "run", w.PIDFile) }

// Shutdown stops the worker through its pid file, then SIGKILLs it if it
// still runs: detached, and maybe restarted by the listener since, it is
// nobody's child, so the pid file is the only handle on it.
func (w Worker) Shutdown(ctx context.Context) error {
	pid := w.PID()
	_, err := w.Daemon(ctx, "stop")
	if w.Owns(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return err
}
