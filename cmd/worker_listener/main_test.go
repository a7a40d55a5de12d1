package main

import (
	"bufio"
	"bytes"
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
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/rig/rigtest"
	"github.com/selfheal/selfheal/internal/lab/testutil"
	"github.com/selfheal/selfheal/internal/proc"
	"github.com/selfheal/selfheal/internal/protocol"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.Cleanup()
	os.Exit(code)
}

// env is a temp dir with a fleet key and this agent's host key issued from
// it (in-process, as handle_worker genkey and issue-key make them), action
// scripts and a config.
type env struct {
	t         *testing.T
	dir       string
	agent     string
	fleet     protocol.Key // the monitoring side's
	key       protocol.Key // the agent's host key
	keyPath   string
	fleetPath string
	cfg       string
}

// envScripts are the actions' scripts: mark.sh appends to $MARK; slow.sh
// appends its pid (its process group's id: the agent starts each action in
// a group of its own) to $MARK.pid and to $MARK.started that it started,
// then waits (bounded) for $RELEASE.
var envScripts = map[string]string{
	"mark.sh": "#!/bin/sh\necho ran >> \"$MARK\"\n",
	"slow.sh": "#!/bin/sh\necho $$ >> \"$MARK.pid\"\necho started >> \"$MARK.started\"\ni=0\nwhile [ ! -e \"$RELEASE\" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done\necho ran >> \"$MARK\"\n",
	// iv.sh records when each run of $ACTION begins and ends (ns).
	"iv.sh": "#!/bin/sh\necho \"begin $ACTION $(date +%s%N)\" >> \"$LOG\"\nsleep 0.2\necho \"end $ACTION $(date +%s%N)\" >> \"$LOG\"\n",
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), agent: "worker1"}
	e.keyPath = filepath.Join(e.dir, "fleet1.key")
	f := rigtest.Prepare(t, rig.Kit{Dir: e.dir, FleetID: "fleet1", Agent: e.agent, Scripts: envScripts, Config: e.config(e.keyPath)})
	if f.KeyFile != e.keyPath {
		t.Fatalf("the rig wrote the key to %s, the config names %s", f.KeyFile, e.keyPath)
	}
	e.fleet, e.key, e.fleetPath, e.cfg = f.Fleet, f.Key, f.FleetFile, f.Config
	return e
}

// config lists the services: demo (mark.sh), slow and slow2 (slow.sh,
// 60s, each with its own release file), and iv (iv.sh for stop, start and
// restart). The budget stays out of the way of tests not about it.
func (e *env) config(keys ...string) rig.ListenerConfig {
	slow := func(name string) rig.Service {
		return rig.Service{Name: name, Actions: map[string]rig.Action{"restart": {
			Argv: []string{filepath.Join(e.dir, "slow.sh")}, Timeout: "60s",
			Env: map[string]string{"MARK": filepath.Join(e.dir, "mark-"+name), "RELEASE": filepath.Join(e.dir, "release-"+name)}}}}
	}
	iv := func(action string) rig.Action {
		return rig.Action{Argv: []string{filepath.Join(e.dir, "iv.sh")}, Timeout: "10s",
			Env: map[string]string{"ACTION": action, "LOG": filepath.Join(e.dir, "iv.log")}}
	}
	return rig.ListenerConfig{
		Listen: "127.0.0.1:0", Agent: "worker1", Keys: keys, Allow: rig.Loopback,
		AuditLog: filepath.Join(e.dir, "audit.log"), StateDir: filepath.Join(e.dir, "state"), ShutdownGrace: "30s",
		Budget: &rig.Budget{Max: 1000, Window: "1h", MinGap: "0s"},
		Services: []rig.Service{
			{Name: "demo", Actions: map[string]rig.Action{"restart": {
				Argv: []string{filepath.Join(e.dir, "mark.sh")}, Env: map[string]string{"MARK": filepath.Join(e.dir, "mark")}}}},
			slow("slow"), slow("slow2"),
			{Name: "iv", Actions: map[string]rig.Action{"stop": iv("stop"), "start": iv("start"), "restart": iv("restart")}},
		},
	}
}

func (e *env) release(svc string) {
	if err := os.WriteFile(filepath.Join(e.dir, "release-"+svc), nil, 0o600); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) writeConfig(keys ...string) {
	if err := e.config(keys...).Write(e.cfg); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) marks(name string) int {
	b, _ := os.ReadFile(filepath.Join(e.dir, name))
	return strings.Count(string(b), "\n")
}

// do sends verb for svc without a fault, signed with k: a fleet key (for
// agent worker1) or a host key (for its agent).
func do(t *testing.T, addr string, k protocol.Key, verb protocol.Verb, svc string) (protocol.Reply, error) {
	return doFault(t, addr, k, verb, svc, "-")
}

func doFault(t *testing.T, addr string, k protocol.Key, verb protocol.Verb, svc, fault string) (protocol.Reply, error) {
	t.Helper()
	agent := k.Agent
	if k.Kind == protocol.FleetKey {
		agent = "worker1"
	}
	c, err := protocol.NewClient(protocol.ClientConfig{Addr: addr, Key: k, Agent: agent})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return c.Do(ctx, verb, svc, fault)
}

// startServe runs `worker_listener serve` on the env's config, on its own
// port (listen 127.0.0.1:0) or on a socket handed over as systemd does.
func startServe(t *testing.T, e *env, activate bool) *rig.Listener {
	t.Helper()
	return rigtest.Serve(t, rig.Serve{Bin: testutil.Binary(t, "worker_listener"), Config: e.cfg,
		Log: filepath.Join(e.dir, "listener.log"), Activate: activate, Timeout: 30 * time.Second})
}

// waitLog waits (bounded) until the listener has logged s n times.
func waitLog(t *testing.T, l *rig.Listener, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(l.Logs(), s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q %d times:\n%s", s, n, l.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestImportKeyAndCheckConfig: import-key writes the host key piped to it
// (handle_worker issue-key ... | ssh host worker_listener import-key), 0600,
// never over a file, and refuses a fleet key; genkey is gone from the
// agent; check-config and serve refuse a bad config naming the fix.
func TestImportKeyAndCheckConfig(t *testing.T) {
	e := newEnv(t)
	bin := testutil.Binary(t, "worker_listener")
	fi, err := os.Stat(e.keyPath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi.Mode(), err)
	}
	importKey := func(out string, stdin []byte) (string, error) {
		cmd := exec.Command(bin, "import-key", "--out", out)
		cmd.Stdin = bytes.NewReader(stdin)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	hostText, _ := e.key.MarshalText()
	imported := filepath.Join(e.dir, "imported.key")
	if out, err := importKey(imported, hostText); err != nil || !strings.Contains(out, "wrote host key for agent worker1 (fleet fleet1) to "+imported) {
		t.Fatalf("import-key: %v %s", err, out)
	}
	if fi, err := os.Stat(imported); err != nil || fi.Mode().Perm() != 0o600 || readFile(imported) != string(hostText) {
		t.Fatalf("imported key: %v %v %q", fi, err, readFile(imported))
	}
	if out, err := importKey(imported, hostText); err == nil || !strings.Contains(out, "file exists") {
		t.Fatalf("import-key overwrote a key: %v %s", err, out)
	}
	fleetText, _ := e.fleet.MarshalText()
	for name, in := range map[string][]byte{
		"a fleet key":  fleetText,
		"garbage":      []byte("not a key\n"),
		"two keys":     append(bytes.Clone(hostText), hostText...),
		"a huge stdin": bytes.Repeat([]byte("a"), 5000),
	} {
		out := filepath.Join(t.TempDir(), "k.key")
		got, err := importKey(out, in)
		if err == nil {
			t.Fatalf("import-key took %s: %s", name, got)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Fatalf("import-key of %s wrote a file", name)
		}
		if name == "a fleet key" && !strings.Contains(got, "a fleet key belongs on the monitoring nodes only") {
			t.Fatalf("fleet key refusal: %s", got)
		}
	}
	if out, err := exec.Command(bin, "genkey", "--id", "fleet1", "--out", filepath.Join(e.dir, "g.key")).CombinedOutput(); err == nil {
		t.Fatalf("worker_listener genkey still makes keys: %s", out)
	}
	if out, err := exec.Command(bin, "check-config", "--config", e.cfg).CombinedOutput(); err != nil || !strings.Contains(string(out), "config OK: agent worker1") {
		t.Fatalf("check-config: %v %s", err, out)
	}
	otherKey := filepath.Join(e.dir, "worker2.key")
	w2, _ := e.fleet.ForAgent("worker2")
	if err := protocol.WriteKeyFile(otherKey, w2); err != nil {
		t.Fatal(err)
	}
	worldWritable := filepath.Join(e.dir, "ww.sh")
	os.WriteFile(worldWritable, []byte("#!/bin/sh\n"), 0o755)
	os.Chmod(worldWritable, 0o777)
	argv := func(bin string) func(*rig.ListenerConfig) {
		return func(c *rig.ListenerConfig) {
			a := c.Services[0].Actions["restart"]
			a.Argv = []string{bin}
			c.Services[0].Actions["restart"] = a
		}
	}
	for _, tt := range []struct {
		name  string
		spoil func(*rig.ListenerConfig)
		want  string
	}{
		{"missing binary", argv(e.dir + "/nosuch.sh"), "argv[0] " + e.dir + "/nosuch.sh: does not exist"},
		{"world-writable binary", argv(worldWritable), "argv[0] " + worldWritable + ": writable by group and others (mode 0777): run chmod go-w " + worldWritable},
		{"relative binary", argv("mark.sh"), "absolute path"},
		{"unknown field", func(c *rig.ListenerConfig) { c.ShutdownGrace, c.Extra = "", "shutdown_grace_typo: 30s" }, "not found in type"},
		{"shell-like service name", func(c *rig.ListenerConfig) { c.Services[0].Name = "demo;x" }, "demo;x"},
		{"no allow list", func(c *rig.ListenerConfig) { c.Allow = nil }, "allow"},
		{"no agent", func(c *rig.ListenerConfig) { c.Agent = "" }, "agent is required"},
		{"a fleet key in keys", func(c *rig.ListenerConfig) { c.Keys = []string{e.fleetPath} },
			"a fleet key belongs on the monitoring nodes only: issue this host's key with handle_worker issue-key --agent worker1"},
		{"another agent's host key", func(c *rig.ListenerConfig) { c.Keys = []string{otherKey} },
			"worker2.key is the host key of agent"},
		{"budget min_gap over the window", func(c *rig.ListenerConfig) { c.Budget = &rig.Budget{Window: "1m", MinGap: "2m"} }, "min_gap"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bad := filepath.Join(t.TempDir(), "bad.yaml")
			c := e.config(e.keyPath)
			tt.spoil(&c)
			if err := c.Write(bad); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bin, "check-config", "--config", bad).CombinedOutput()
			if err == nil || !strings.Contains(string(out), tt.want) {
				t.Fatalf("want refusal mentioning %q, got %v: %s", tt.want, err, out)
			}
			// serve refuses the same config at startup.
			if out, err := exec.Command(bin, "serve", "--config", bad).CombinedOutput(); err == nil || !strings.Contains(string(out), tt.want) {
				t.Fatalf("serve accepted it: %v %s", err, out)
			}
		})
	}
	os.Chmod(e.keyPath, 0o644)
	out, err := exec.Command(bin, "serve", "--config", e.cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "key file "+e.keyPath+": is open to group or others (mode 0644, want 0600 or 0400): run chmod 600 "+e.keyPath) {
		t.Fatalf("serve with a 0644 key: %v %s", err, out)
	}
}

// SIGHUP reloads keys; a bad config is refused and the old one stays;
// SIGTERM drains a running action before exiting 0.
func TestServeReloadAndDrain(t *testing.T) {
	e := newEnv(t)
	d := startServe(t, e, false)
	if rep, err := do(t, d.Addr, e.key, protocol.VerbPing, ""); err != nil || rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("ping: %+v %v", rep, err)
	}
	// Rotation: a second fleet's host key for this agent, added, reloaded.
	k2Path := filepath.Join(e.dir, "fleet2.key")
	k2, _, err := rig.NewKeys("fleet2", "worker1", filepath.Join(e.dir, "fleet2.fleet.key"), k2Path)
	if err != nil {
		t.Fatal(err)
	}
	if rep, _ := do(t, d.Addr, k2, protocol.VerbPing, ""); rep.Outcome != protocol.OutcomeDenied {
		t.Fatalf("unknown key before reload: %+v", rep)
	}
	e.writeConfig(e.keyPath, k2Path)
	d.Signal(syscall.SIGHUP)
	waitLog(t, d, "config reloaded", 1)
	if rep, err := do(t, d.Addr, k2, protocol.VerbRestart, "demo"); err != nil || rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("new key after reload: %+v %v", rep, err)
	}
	// A bad config (a typo) is refused; both keys keep working.
	typo, err := e.config(k2Path).YAML()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(e.cfg, []byte(strings.Replace(string(typo), "services:", "servicez:", 1)), 0o600)
	d.Signal(syscall.SIGHUP)
	waitLog(t, d, "reload refused", 1)
	for _, k := range []protocol.Key{e.key, k2} {
		if rep, err := do(t, d.Addr, k, protocol.VerbRestart, "demo"); err != nil || rep.Outcome != protocol.OutcomeOK {
			t.Fatalf("key %s after a refused reload: %+v %v", k.ID, rep, err)
		}
	}
	if e.marks("mark") != 3 {
		t.Fatalf("marks %d", e.marks("mark"))
	}
	// Drain: a running action finishes and its caller gets the reply.
	res := make(chan protocol.Reply, 1)
	go func() {
		rep, err := do(t, d.Addr, e.key, protocol.VerbRestart, "slow")
		if err != nil {
			t.Error(err)
		}
		res <- rep
	}()
	deadline := time.Now().Add(20 * time.Second)
	for { // until the slow action runs: it writes mark-slow.started
		if _, err := os.Stat(filepath.Join(e.dir, "mark-slow.started")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("slow action never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A reload while the action runs does not drop its connection.
	e.writeConfig(e.keyPath, k2Path)
	d.Signal(syscall.SIGHUP)
	waitLog(t, d, "config reloaded", 2)
	d.Signal(syscall.SIGTERM)
	// New connections are refused once draining has begun.
	deadline = time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", d.Addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting after SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-d.Done():
		t.Fatalf("exited before the running action finished: %v", d.Err())
	case <-time.After(300 * time.Millisecond):
	}
	e.release("slow")
	if rep := <-res; rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("drained request: %+v", rep)
	}
	select {
	case <-d.Done():
		if err := d.Err(); err != nil {
			t.Fatalf("exit after drain: %v\n%s", err, d.Logs())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not exit after the drain")
	}
	audit := readFile(filepath.Join(e.dir, "audit.log"))
	if strings.Count(audit, "\n") < 6 || strings.Contains(audit, fmt.Sprintf("%x", e.key.Secret)) {
		t.Fatalf("audit log:\n%s", audit)
	}
}

// TestHupWhileStarting: a SIGHUP that arrives while serve is still loading
// its config (systemctl reload right after start) must not kill the agent
// by SIGHUP's default action. A config file that is a FIFO holds the agent
// in open(2) at a known point; we then feed it a broken config, so the
// agent must exit 1 with its own message, not die of the signal. (Key and
// certificate files are opened non-blocking, so they cannot hold it.)
func TestHupWhileStarting(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "listener.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(testutil.Binary(t, "worker_listener"), "serve", "--config", fifo)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	// Wait (bounded) until a thread of the agent blocks opening the FIFO.
	blocked := false
	for deadline := time.Now().Add(20 * time.Second); !blocked && time.Now().Before(deadline); {
		tasks, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "task", "*", "wchan"))
		for _, w := range tasks {
			if b, _ := os.ReadFile(w); strings.Contains(string(b), "wait_for_partner") {
				blocked = true
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !blocked {
		t.Fatal("the agent never blocked opening the config FIFO (no /proc/PID/task/*/wchan showing wait_for_partner)")
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The signal first: wait until the kernel no longer holds it pending
	// for the process (its handler took it), or the process is gone.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "status"))
		_, pend, _ := strings.Cut(string(b), "\nShdPnd:\t")
		mask, perr := strconv.ParseUint(strings.TrimSpace(strings.SplitN(pend, "\n", 2)[0]), 16, 64)
		if err != nil || (perr == nil && mask&(1<<(syscall.SIGHUP-1)) == 0) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SIGHUP still pending after 30 s: %q", pend)
		}
	}
	// Non-blocking: if the agent died of the signal there is no reader.
	if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		w.Write([]byte("listen: [broken\n"))
		w.Close()
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not exit")
	}
	if st := cmd.ProcessState; st.ExitCode() != 1 || !strings.Contains(stderr.String(), "config refused") {
		t.Fatalf("agent ended with %v; want exit 1 with \"config refused\"\n%s", st, stderr.String())
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// TestCrashDuringRestart: the agent is SIGKILLed while a restart runs. The
// fault's record, written before the action started, survives: the next
// agent answers that fault "failed, agent stopped" and does not run it
// again; the restart counts against the budget.
func TestCrashDuringRestart(t *testing.T) {
	e := newEnv(t)
	t.Cleanup(func() {
		// The orphaned action (the killed agent's) writes into the temp
		// dir: it must be gone, its whole group, before the dir goes.
		e.release("slow")
		for _, f := range strings.Fields(readFile(filepath.Join(e.dir, "mark-slow.pid"))) {
			pgid, _ := strconv.Atoi(f)
			for deadline := time.Now().Add(60 * time.Second); pgid > 0 && proc.GroupAlive(pgid); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					syscall.Kill(-pgid, syscall.SIGKILL)
					t.Errorf("the orphaned slow.sh (group %d) did not end within 60s of its release: killed", pgid)
					break
				}
			}
		}
	})
	d := startServe(t, e, false)
	res := make(chan error, 1)
	go func() {
		_, err := doFault(t, d.Addr, e.fleet, protocol.VerbRestart, "slow", "4711")
		res <- err
	}()
	deadline := time.Now().Add(20 * time.Second)
	for e.marks("mark-slow.started") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("slow action never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.Signal(syscall.SIGKILL) // the agent only: the action has its own group
	<-d.Done()
	if err := <-res; !errors.Is(err, protocol.ErrNoReply) {
		t.Fatalf("client of the killed agent: %v", err)
	}
	d = startServe(t, e, false)
	rep, err := doFault(t, d.Addr, e.fleet, protocol.VerbRestart, "slow", "4711")
	if err != nil || rep.Outcome != protocol.OutcomeFailed || rep.Origin != protocol.OriginRecorded ||
		rep.Output != "agent stopped during this restart; not run again" || rep.Budget.Used != 1 {
		t.Fatalf("the fault after the crash: %+v %v", rep, err)
	}
	if n := e.marks("mark-slow.started"); n != 1 {
		t.Fatalf("the restart started %d times", n)
	}
}

// systemd socket activation: the listening socket arrives as fd 3.
func TestSocketActivation(t *testing.T) {
	e := newEnv(t)
	d := startServe(t, e, true)
	if d.Socket == "" || d.Addr != d.Socket {
		t.Fatalf("serving on %s, want the passed socket %q", d.Addr, d.Socket)
	}
	if rep, err := do(t, d.Socket, e.key, protocol.VerbRestart, "demo"); err != nil || rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("restart: %+v %v", rep, err)
	}
	if e.marks("mark") != 1 {
		t.Fatal("action did not run")
	}
}

// inetd mode with a real socket on stdin/stdout, one process per
// connection; the nonce cache is shared between processes.
func TestInetdStdin(t *testing.T) {
	e := newEnv(t)
	bin := testutil.Binary(t, "worker_listener")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serveOne := func() chan error {
		done := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				done <- err
				return
			}
			f, _ := c.(*net.TCPConn).File()
			c.Close()
			cmd := exec.Command(bin, "inetd", "--config", e.cfg, "--log-file", filepath.Join(e.dir, "inetd.log"))
			cmd.Stdin, cmd.Stdout = f, f
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err = cmd.Run()
			f.Close()
			if err != nil {
				err = fmt.Errorf("%v: %s", err, stderr.String())
			}
			done <- err
		}()
		return done
	}
	n, _ := protocol.NewNonce()
	frame := protocol.NewRequest(e.key, protocol.VerbRestart, "demo", "-", time.Now(), n).Marshal()
	send := func() string {
		done := serveOne()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		c.Write(frame)
		line, _ := bufio.NewReader(c).ReadString('\n')
		if err := <-done; err != nil {
			t.Fatalf("inetd process: %v", err)
		}
		return line
	}
	if got := send(); !strings.HasPrefix(got, "SH2 worker1 ok run 0 ") {
		t.Fatalf("first: %q", got)
	}
	if got := send(); got != "SH2 - denied - -1 0 0 - - -\n" {
		t.Fatalf("replay to a new inetd process: %q", got)
	}
	if e.marks("mark") != 1 {
		t.Fatalf("marks %d", e.marks("mark"))
	}
	if !strings.Contains(readFile(filepath.Join(e.dir, "audit.log")), "replayed nonce") {
		t.Fatal("audit log has no replay line")
	}
}

// TestXinetd runs the shipped xinetd sample under a real xinetd: the seed's
// deployment, one agent process per connection.
func TestXinetd(t *testing.T) {
	xinetd := testutil.LookTool(t, "xinetd", "/usr/sbin/xinetd")
	e := newEnv(t)
	bin := testutil.Binary(t, "worker_listener")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	// The shipped sample, verbatim but for this machine's paths and port.
	b, err := os.ReadFile(filepath.Join(testutil.ModuleRoot(t), "nagios-config", "listener", "xinetd.worker_listener"))
	if err != nil {
		t.Fatal(err)
	}
	sample := string(b)
	for _, r := range [][2]string{
		{"port            = 5690", fmt.Sprintf("port            = %d", port)},
		{"/usr/local/sbin/worker_listener", bin},
		{"/etc/selfheal/worker_listener.yaml", e.cfg},
		{"/var/log/selfheal/listener.log", filepath.Join(e.dir, "inetd.log")},
	} {
		if !strings.Contains(sample, r[0]) {
			t.Fatalf("the xinetd sample no longer has %q", r[0])
		}
		sample = strings.Replace(sample, r[0], r[1], 1)
	}
	if os.Geteuid() != 0 { // only root may switch users
		sample = strings.Replace(sample, "user            = root\n", "", 1)
	}
	conf := filepath.Join(e.dir, "xinetd.conf")
	os.WriteFile(conf, []byte(sample), 0o644)
	cmd := exec.Command(xinetd, "-dontfork", "-f", conf, "-pidfile", filepath.Join(e.dir, "xinetd.pid"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("xinetd never listened: %s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if rep, err := do(t, addr, e.key, protocol.VerbRestart, "demo"); err != nil || rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("through xinetd: %+v %v\n%s\n%s", rep, err, out.String(), readFile(filepath.Join(e.dir, "inetd.log")))
	}
	if rep, err := do(t, addr, e.key, protocol.VerbRestart, "nosuch"); err != nil || rep.Outcome != protocol.OutcomeDenied {
		t.Fatalf("unknown service through xinetd: %+v %v", rep, err)
	}
	if e.marks("mark") != 1 {
		t.Fatalf("marks %d", e.marks("mark"))
	}
}

// The sample systemd units pass systemd-analyze verify (with the real
// binary substituted for the install path).
func TestSystemdUnitsVerify(t *testing.T) {
	sa := testutil.LookTool(t, "systemd-analyze")
	bin := testutil.Binary(t, "worker_listener")
	dir := t.TempDir()
	src := filepath.Join(testutil.ModuleRoot(t), "nagios-config", "listener")
	units := []string{"worker_listener.service", "worker_listener.socket", "worker_listener-inetd.socket", "worker_listener-inetd@.service"}
	for _, u := range units {
		b, err := os.ReadFile(filepath.Join(src, u))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, u), []byte(strings.ReplaceAll(string(b), "/usr/local/sbin/worker_listener", bin)), 0o644)
	}
	cmd := exec.Command(sa, append([]string{"verify", "--man=no"}, units...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		for _, u := range units {
			if strings.Contains(string(out), u) {
				t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
			}
		}
		// Not about our units: the container lacks what verify needs.
		t.Skipf("systemd-analyze verify cannot run here (%v): %s", err, out)
	}
	if len(out) > 0 {
		t.Fatalf("systemd-analyze verify printed warnings:\n%s", out)
	}
}
