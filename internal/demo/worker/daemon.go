package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/proc"
)

// DaemonConfig drives `demo_worker daemon start|stop|restart|status`.
type DaemonConfig struct {
	Listen       string
	PIDFile      string
	LogFile      string // the worker's stdout and stderr; empty = /dev/null
	JobsPerSec   float64
	StartTimeout time.Duration // how long start waits for /status to answer
	StopTimeout  time.Duration // how long stop waits after SIGTERM before SIGKILL
	// Extra arguments for the worker's `run` (e.g. --ignore-sigterm).
	RunArgs []string
}

// Defaults for DaemonConfig fields left zero.
const (
	DefaultStartTimeout = 10 * time.Second
	DefaultStopTimeout  = 10 * time.Second
	killWait            = 5 * time.Second
	pollEvery           = 10 * time.Millisecond // cheap; a restart is on the time-to-heal path
)

func (c DaemonConfig) withDefaults() (DaemonConfig, error) {
	if c.StartTimeout <= 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = DefaultStopTimeout
	}
	if c.PIDFile == "" {
		return c, errors.New("--pid-file is required")
	}
	abs, err := filepath.Abs(c.PIDFile)
	if err != nil {
		return c, err
	}
	c.PIDFile = abs
	if c.LogFile != "" {
		if c.LogFile, err = filepath.Abs(c.LogFile); err != nil {
			return c, err
		}
	}
	return c, nil
}

// DaemonDeps are the daemon commands' collaborators.
type DaemonDeps struct {
	Exe  string       // the demo_worker binary to re-exec
	Env  []string     // the worker's whole environment (nil = empty)
	HTTP *http.Client // for the readiness probe; nil = a 1 s client
}

// StartResult says what start did.
type StartResult struct {
	PID            int
	AlreadyRunning bool
	StalePID       int // a dead worker's pid found in the pid file and removed
}

// StopResult says what stop did.
type StopResult struct {
	PID      int  // the worker stopped; 0 = none was running
	Killed   bool // it ignored SIGTERM for StopTimeout and got SIGKILL
	StalePID int  // a dead worker's pid found in the pid file and removed
}

// Start starts a detached worker unless one is already running for the pid
// file, and waits until it answers on /status.
func Start(ctx context.Context, cfg DaemonConfig, deps DaemonDeps) (StartResult, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return StartResult{}, err
	}
	unlock, err := lockPIDFile(ctx, cfg)
	if err != nil {
		return StartResult{}, err
	}
	defer unlock()
	return start(ctx, cfg, deps)
}

// Stop stops the worker named by the pid file: SIGTERM to its process
// group, then SIGKILL after StopTimeout. Stopping a stopped worker is not
// an error.
func Stop(ctx context.Context, cfg DaemonConfig) (StopResult, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return StopResult{}, err
	}
	unlock, err := lockPIDFile(ctx, cfg)
	if err != nil {
		return StopResult{}, err
	}
	defer unlock()
	return stop(ctx, cfg)
}

// Restart is stop then start under one lock, so two restarts at once
// cannot interleave.
func Restart(ctx context.Context, cfg DaemonConfig, deps DaemonDeps) (StopResult, StartResult, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return StopResult{}, StartResult{}, err
	}
	unlock, err := lockPIDFile(ctx, cfg)
	if err != nil {
		return StopResult{}, StartResult{}, err
	}
	defer unlock()
	sr, err := stop(ctx, cfg)
	if err != nil {
		return sr, StartResult{}, err
	}
	st, err := start(ctx, cfg, deps)
	return sr, st, err
}

// LSB init-script status codes, which `daemon status` exits with.
const (
	StatusRunning       = 0
	StatusDeadPIDFile   = 1
	StatusNotRunning    = 3
	StatusUnknownFailed = 4
)

// State reports the worker's state as an LSB status code and a line.
func State(cfg DaemonConfig) (int, int, string) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return 0, StatusUnknownFailed, err.Error()
	}
	pid, err := proc.ReadPIDFile(cfg.PIDFile)
	switch {
	case err != nil:
		return 0, StatusUnknownFailed, err.Error()
	case pid == 0:
		return 0, StatusNotRunning, "not running (no pid file)"
	case !Owns(pid, cfg.PIDFile):
		return pid, StatusDeadPIDFile, fmt.Sprintf("not running, but pid file %s names pid %d", cfg.PIDFile, pid)
	}
	return pid, StatusRunning, fmt.Sprintf("running, pid %d", pid)
}

func start(ctx context.Context, cfg DaemonConfig, deps DaemonDeps) (StartResult, error) {
	var res StartResult
	pid, err := proc.ReadPIDFile(cfg.PIDFile)
	if err != nil {
		return res, err
	}
	if pid != 0 {
		if Owns(pid, cfg.PIDFile) {
			return StartResult{PID: pid, AlreadyRunning: true}, nil
		}
		os.Remove(cfg.PIDFile)
		res.StalePID = pid
	}
	base, err := controlBase(cfg.Listen)
	if err != nil {
		return res, err
	}

	// The worker must hold none of our descriptors: under worker_listener
	// (or Nagios) an inherited pipe keeps the caller waiting for EOF.
	markInheritedCloseOnExec()
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return res, err
	}
	defer devnull.Close()
	out := devnull
	if cfg.LogFile != "" {
		f, err := os.OpenFile(cfg.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return res, fmt.Errorf("log file: %w", err)
		}
		defer f.Close()
		out = f
	}
	args := []string{"run", "--listen", cfg.Listen, "--pid-file", cfg.PIDFile,
		"--jobs-per-sec", strconv.FormatFloat(cfg.JobsPerSec, 'f', -1, 64)}
	args = append(args, cfg.RunArgs...)
	cmd := exec.Command(deps.Exe, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, out, out
	cmd.Dir = "/"
	cmd.Env = deps.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	// Setsid: a new session and process group, so the caller's group kill
	// (Nagios, Icinga, the listener's action timeout) never reaches it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("start worker: %w", err)
	}
	child := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	client := deps.HTTP
	if client == nil {
		client = &http.Client{Timeout: time.Second}
	}
	deadline := time.NewTimer(cfg.StartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			return res, fmt.Errorf("worker exited during start-up (%v); see %s", err, logHint(cfg.LogFile))
		case <-ctx.Done():
			killGroup(child, syscall.SIGKILL)
			return res, fmt.Errorf("start interrupted: %w", ctx.Err())
		case <-deadline.C:
			killGroup(child, syscall.SIGKILL)
			return res, fmt.Errorf("worker pid %d did not answer on %s/status within %s; killed it; see %s",
				child, base, cfg.StartTimeout, logHint(cfg.LogFile))
		case <-tick.C:
			if got, _ := proc.ReadPIDFile(cfg.PIDFile); got != child {
				continue
			}
			if probe(ctx, client, base+"/status") == nil {
				res.PID = child
				return res, nil
			}
		}
	}
}

func stop(ctx context.Context, cfg DaemonConfig) (StopResult, error) {
	var res StopResult
	pid, err := proc.ReadPIDFile(cfg.PIDFile)
	if err != nil || pid == 0 {
		return res, err
	}
	if !Owns(pid, cfg.PIDFile) {
		os.Remove(cfg.PIDFile)
		res.StalePID = pid
		return res, nil
	}
	res.PID = pid
	stop := proc.Escalation{Grace: cfg.StopTimeout, KillWait: killWait, Poll: pollEvery / 2}
	killed, gone := stop.Terminate(ctx,
		func(sig syscall.Signal) { killGroup(pid, sig) },
		func() bool { return !proc.Alive(pid) })
	res.Killed = killed
	if !gone {
		return res, fmt.Errorf("worker pid %d survived SIGKILL for %s", pid, killWait)
	}
	proc.RemovePIDFile(cfg.PIDFile, pid)
	return res, nil
}

// killGroup signals the worker's process group (it is a session leader, so
// its group id is its pid), falling back to the process alone. Unlike the
// listener's actions, stop then waits for the worker alone (proc.Alive),
// not for its group: a zombie worker whose adopter is slow to reap it is
// stopped, and a group leader's zombie would keep the group "alive".
func killGroup(pid int, sig syscall.Signal) {
	if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
		if syscall.Kill(-pid, sig) == nil {
			return
		}
	}
	_ = syscall.Kill(pid, sig)
}

func probe(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

// lockPIDFile serialises daemon commands on one pid file with flock on
// PIDFILE.lock, waiting at most as long as a restart can take.
func lockPIDFile(ctx context.Context, cfg DaemonConfig) (func() error, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout+cfg.StopTimeout+killWait)
	defer cancel()
	d, name, err := fsutil.OpenParent(cfg.PIDFile + ".lock")
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	defer d.Close()
	unlock, err := d.Lock(ctx, name, 0o644, pollEvery)
	switch {
	case errors.Is(err, syscall.EWOULDBLOCK):
		return nil, fmt.Errorf("another start/stop holds %s.lock: %w", cfg.PIDFile, err)
	case err != nil:
		return nil, fmt.Errorf("lock: %w", err)
	}
	return unlock, nil
}

// markInheritedCloseOnExec sets FD_CLOEXEC on every descriptor above 2.
// Go opens its own files close-on-exec, but descriptors this process
// inherited (a pipe from the listener, a socket from systemd) may not be.
func markInheritedCloseOnExec() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

func logHint(logFile string) string {
	if logFile == "" {
		return "its output (start it with --log-file to keep it)"
	}
	return logFile
}
