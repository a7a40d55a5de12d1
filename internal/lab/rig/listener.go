package rig

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/selfheal/selfheal/internal/proc"
	"github.com/selfheal/selfheal/internal/protocol"
)

// Kit is what Prepare writes for a listener, all in Dir.
type Kit struct {
	Dir     string // required; created if need be, removed by the caller
	FleetID string // the fleet key's id; default "fleet1"
	Agent   string // the agent's identity; default "worker1"
	// Issue, when set, is the handle_worker binary, and the keys are made
	// the documented way (handle_worker genkey, issue-key); otherwise
	// NewKeys.
	Issue string
	// Fleet, when set, is an existing fleet key file: the agent's host key
	// is issued from it (a second agent of the same fleet), and no fleet
	// key is made.
	Fleet string
	// Scripts are action scripts, file name -> body, written executable
	// into Dir.
	Scripts map[string]string
	// Config is written to Dir/listener.yaml. Without Keys it lists the
	// kit's key; without StateDir it uses Dir/state. The state directory
	// is created.
	Config ListenerConfig
}

// Files are what Prepare wrote: the in-process listener of
// internal/listener's tests loads Config itself; StartListener runs the
// binary on it.
type Files struct {
	Dir       string
	Agent     string
	FleetFile string       // Dir/FLEETID.fleet.key: what the monitoring side holds
	Fleet     protocol.Key // the fleet key, for clients
	KeyFile   string       // Dir/FLEETID.key: the agent's host key, listed in the config
	Key       protocol.Key // the host key
	Config    string       // Dir/listener.yaml
}

// Prepare writes a listener's key, scripts and config.
func Prepare(ctx context.Context, k Kit) (Files, error) {
	if k.Dir == "" {
		return Files{}, errors.New("rig: Kit.Dir is required")
	}
	if k.FleetID == "" {
		k.FleetID = "fleet1"
	}
	if k.Agent == "" {
		k.Agent = "worker1"
	}
	if err := os.MkdirAll(k.Dir, 0o700); err != nil {
		return Files{}, err
	}
	f := Files{Dir: k.Dir, Agent: k.Agent, FleetFile: filepath.Join(k.Dir, k.FleetID+".fleet.key"),
		KeyFile: filepath.Join(k.Dir, k.FleetID+".key"), Config: filepath.Join(k.Dir, "listener.yaml")}
	var err error
	switch {
	case k.Fleet != "":
		f.FleetFile = k.Fleet
		f.Fleet, f.Key, err = IssueHostKey(ctx, k.Issue, k.Fleet, k.Agent, f.KeyFile)
	case k.Issue != "":
		f.Fleet, f.Key, err = IssueKeys(ctx, k.Issue, k.FleetID, k.Agent, f.FleetFile, f.KeyFile)
	default:
		f.Fleet, f.Key, err = NewKeys(k.FleetID, k.Agent, f.FleetFile, f.KeyFile)
	}
	if err != nil {
		return f, err
	}
	for name, body := range k.Scripts {
		if err := os.WriteFile(filepath.Join(k.Dir, name), []byte(body), 0o755); err != nil {
			return f, err
		}
	}
	c := k.Config
	if c.Agent == "" {
		c.Agent = k.Agent
	}
	if len(c.Keys) == 0 {
		c.Keys = []string{f.KeyFile}
	}
	if c.StateDir == "" {
		c.StateDir = filepath.Join(k.Dir, "state")
	}
	if err := os.MkdirAll(c.StateDir, 0o700); err != nil {
		return f, err
	}
	return f, c.Write(f.Config)
}

// Serve says how StartListener runs `worker_listener serve`.
type Serve struct {
	Bin    string // the worker_listener binary
	Config string
	// Log receives its stdout and stderr (appended). Start-up is over when
	// the log says "serving".
	Log string
	Env []string // nil: this process's environment
	Dir string   // working directory; "" is this process's
	// Activate hands it a fresh listening socket on 127.0.0.1, as systemd's
	// socket activation does (LISTEN_FDS=1): no port to race for, and the
	// config's listen address is not used.
	Activate bool
	// Ping, when set (the agent's host key, or a fleet key with PingAgent),
	// must be answered before StartListener returns: proof that the agent
	// serves with this key.
	Ping      *protocol.Key
	PingAgent string // default: the Ping key's own agent
	// Timeout bounds the start-up; default 15s.
	Timeout time.Duration
}

// Listener is a running worker_listener, in its own process group.
type Listener struct {
	// Addr is where it serves, from its own "serving" log line.
	Addr string
	// Socket is the address of the socket handed to it (Serve.Activate).
	Socket string
	Log    string

	cmd  *exec.Cmd
	from int64 // Log's size before it started: older lines are not its own
	done chan struct{}
	err  error // how it exited; set before done is closed
}

// activation runs bin with LISTEN_FDS=1 and LISTEN_PID set to the agent's
// own pid, as systemd does: sh learns its pid and execs the agent.
const activation = `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" serve --config "$1"`

// StartListener starts `worker_listener serve` and returns once it serves.
// On error nothing it started is left running.
func StartListener(ctx context.Context, o Serve) (*Listener, error) {
	if o.Bin == "" || o.Config == "" || o.Log == "" {
		return nil, errors.New("rig: Serve needs Bin, Config and Log")
	}
	if o.Timeout == 0 {
		o.Timeout = 15 * time.Second
	}
	logf, err := os.OpenFile(o.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	fi, err := logf.Stat()
	if err != nil {
		return nil, err
	}
	l := &Listener{Log: o.Log, from: fi.Size(), done: make(chan struct{})}
	cmd := exec.Command(o.Bin, "serve", "--config", o.Config)
	if o.Activate {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		sock, err := ln.(*net.TCPListener).File()
		l.Socket = ln.Addr().String()
		ln.Close() // the duplicate in sock stays open, and listening
		if err != nil {
			return nil, err
		}
		defer sock.Close()
		cmd = exec.Command("/bin/sh", "-c", activation, o.Bin, o.Config)
		cmd.ExtraFiles = []*os.File{sock}
	}
	cmd.Env, cmd.Dir = o.Env, o.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	l.cmd = cmd
	go func() { l.err = cmd.Wait(); close(l.done) }()
	if err := l.waitServing(ctx, o); err != nil {
		_ = l.Stop(time.Second)
		return nil, err
	}
	return l, nil
}

func (l *Listener) waitServing(ctx context.Context, o Serve) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	for l.Addr == "" {
		l.Addr = servingAddr(l.Logs())
		if l.Addr != "" {
			break
		}
		select {
		case <-l.done:
			return fmt.Errorf("worker_listener exited at start-up (%v): %s", l.err, strings.TrimSpace(l.Logs()))
		case <-ctx.Done():
			return fmt.Errorf("worker_listener did not say it was serving within %s: %s", o.Timeout, strings.TrimSpace(l.Logs()))
		case <-time.After(20 * time.Millisecond):
		}
	}
	if o.Ping == nil {
		return nil
	}
	agent := o.PingAgent
	if agent == "" {
		agent = o.Ping.Agent
	}
	c, err := protocol.NewClient(protocol.ClientConfig{Addr: l.Addr, Key: *o.Ping, Agent: agent})
	if err != nil {
		return err
	}
	rep, err := c.Do(ctx, protocol.VerbPing, "", "")
	if err != nil || rep.Outcome != protocol.OutcomeOK {
		return fmt.Errorf("worker_listener does not answer a ping with our key: %v %+v\n%s", err, rep, l.Logs())
	}
	return nil
}

// servingAddr finds the first address of the agent's "serving" log line.
func servingAddr(log string) string {
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		var m struct {
			Message string   `json:"message"`
			Listen  []string `json:"listen"`
		}
		if json.Unmarshal(sc.Bytes(), &m) == nil && m.Message == "serving" && len(m.Listen) > 0 {
			return m.Listen[0]
		}
	}
	return ""
}

// Logs returns what this run of the listener logged so far.
func (l *Listener) Logs() string {
	f, err := os.Open(l.Log)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(l.from, io.SeekStart); err != nil {
		return ""
	}
	var b bytes.Buffer
	_, _ = b.ReadFrom(f)
	return b.String()
}

// PID is the listener's pid (and process group).
func (l *Listener) PID() int { return l.cmd.Process.Pid }

// Signal sends sig to the listener (SIGHUP reloads, SIGTERM drains).
func (l *Listener) Signal(sig os.Signal) error { return l.cmd.Process.Signal(sig) }

// Done is closed once the listener has exited; Err then says how.
func (l *Listener) Done() <-chan struct{} { return l.done }

// Err is the listener's exit (nil for exit 0); valid once Done is closed.
func (l *Listener) Err() error {
	<-l.done
	return l.err
}

// Exited reports whether the listener has exited.
func (l *Listener) Exited() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// Stop ends the listener's process group: SIGTERM (it drains), then
// SIGKILL after grace. It is an error when SIGKILL was needed. Safe to
// call more than once.
func (l *Listener) Stop(grace time.Duration) error {
	if l == nil || l.Exited() {
		return nil
	}
	pgid := l.PID()
	killed, stopped := proc.Escalation{Grace: grace, KillWait: 10 * time.Second}.Terminate(context.Background(),
		func(sig syscall.Signal) { _ = syscall.Kill(-pgid, sig) }, l.Exited)
	switch {
	case !stopped:
		return fmt.Errorf("worker_listener (pid %d) survived SIGKILL for 10s", pgid)
	case killed:
		return fmt.Errorf("worker_listener ignored SIGTERM for %s", grace)
	}
	return nil
}

// StartTrueAgent prepares and starts, in dir, the agent the benchmarks
// heal against: worker_listener from binDir on a loopback port, agent
// "worker1" with the fleet key binDir's handle_worker issued, one service
// "demo" whose restart is /bin/true, and no budget, gap or breaker that
// could hold a run (every run is a new fault). It returns the kit's files,
// the listener (Stop it) and its port.
func StartTrueAgent(ctx context.Context, dir, binDir string) (Files, *Listener, int, error) {
	port, err := FreePort()
	if err != nil {
		return Files{}, nil, 0, err
	}
	files, err := Prepare(ctx, Kit{Dir: filepath.Join(dir, "listener"), Agent: "worker1", Issue: filepath.Join(binDir, "handle_worker"),
		Config: ListenerConfig{Listen: fmt.Sprintf("127.0.0.1:%d", port), Allow: Loopback,
			AuditLog: filepath.Join(dir, "audit.log"), Limits: Limits{Rate: 1000, Burst: 1000},
			Budget:  &Budget{Max: 10000, Window: "1h", MinGap: "0s", MaxGap: "0s"},
			Breaker: &Breaker{Enabled: new(false)},
			Services: []Service{{Name: "demo", Actions: map[string]Action{
				"restart": {Argv: []string{"/bin/true"}, Timeout: "10s"}}}}}})
	if err != nil {
		return Files{}, nil, 0, err
	}
	ln, err := StartListener(ctx, Serve{Bin: filepath.Join(binDir, "worker_listener"), Config: files.Config,
		Log: filepath.Join(dir, "listener.out"), Ping: &files.Fleet, PingAgent: "worker1", Activate: true})
	if err != nil {
		return Files{}, nil, 0, err
	}
	// The listener may have taken another port than the one asked.
	if _, p, err := net.SplitHostPort(ln.Addr); err == nil {
		port, _ = strconv.Atoi(p)
	}
	return files, ln, port, nil
}
