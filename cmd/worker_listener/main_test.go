package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/protocol"
	"github.com/selfheal/selfheal/internal/lab/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.Cleanup()
	os.Exit(code)
}

// env is a temp dir with a key, action scripts and a config.
type env struct {
	t       *testing.T
	dir     string
	key     protocol.Key
	keyPath string
	cfg     string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir()}
	e.keyPath = filepath.Join(e.dir, "nagios1.key")
	out, err := exec.Command(testutil.Binary(t, "worker_listener"), "genkey", "--id", "nagios1", "--out", e.keyPath).CombinedOutput()
	if err != nil {
		t.Fatalf("genkey: %v\n%s", err, out)
	}
	if e.key, err = protocol.LoadKeyFile(e.keyPath); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(e.dir, "mark.sh"), []byte("#!/bin/sh\necho ran >> \"$MARK\"\n"), 0o755)
	os.WriteFile(filepath.Join(e.dir, "slow.sh"), []byte("#!/bin/sh\n: > \"$MARK.started\"\ni=0\nwhile [ ! -e \"$RELEASE\" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done\necho ran >> \"$MARK\"\n"), 0o755)
	e.cfg = filepath.Join(e.dir, "listener.yaml")
	e.writeConfig(e.keyPath)
	return e
}

func (e *env) yaml(keys ...string) string {
	return fmt.Sprintf(`listen: 127.0.0.1:0
keys: [%s]
allow: ["127.0.0.1/32", "::1/128"]
audit_log: %s/audit.log
state_dir: %s/state
shutdown_grace: 30s
services:
  demo:
    actions:
      restart: {argv: [%s/mark.sh], env: {MARK: %s/mark}}
  slow:
    actions:
      restart: {argv: [%s/slow.sh], timeout: 60s, env: {MARK: %s/mark-slow, RELEASE: %s/release}}
`, strings.Join(keys, ", "), e.dir, e.dir, e.dir, e.dir, e.dir, e.dir, e.dir)
}

func (e *env) writeConfig(keys ...string) {
	if err := os.WriteFile(e.cfg, []byte(e.yaml(keys...)), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) marks(name string) int {
	b, _ := os.ReadFile(filepath.Join(e.dir, name))
	return strings.Count(string(b), "\n")
}

func do(t *testing.T, addr string, k protocol.Key, verb protocol.Verb, svc string) (protocol.Reply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return protocol.NewClient(protocol.ClientConfig{Addr: addr, Key: k}).Do(ctx, verb, svc)
}

// daemon is a running `worker_listener serve` with its stderr log parsed.
type daemon struct {
	cmd  *exec.Cmd
	addr string
	mu   sync.Mutex
	log  strings.Builder
	exit chan error // receives the exit once; done is closed then
	done chan struct{}
}

func startServe(t *testing.T, e *env, extra ...*os.File) *daemon {
	t.Helper()
	bin := testutil.Binary(t, "worker_listener")
	var cmd *exec.Cmd
	if len(extra) > 0 {
		// systemd sets LISTEN_PID to the service's own pid: exec keeps it.
		cmd = exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" serve --config "$1"`, bin, e.cfg)
		cmd.ExtraFiles = extra
	} else {
		cmd = exec.Command(bin, "serve", "--config", e.cfg)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, exit: make(chan error, 1), done: make(chan struct{})}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			d.mu.Lock()
			d.log.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
			var m struct {
				Message string   `json:"message"`
				Listen  []string `json:"listen"`
			}
			if json.Unmarshal(sc.Bytes(), &m) == nil && m.Message == "serving" && len(m.Listen) > 0 {
				addrc <- m.Listen[0]
			}
		}
		d.exit <- cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
		}
	})
	select {
	case d.addr = <-addrc:
	case err := <-d.exit:
		t.Fatalf("worker_listener exited: %v\n%s", err, d.logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("worker_listener did not start\n%s", d.logs())
	}
	return d
}

func (d *daemon) logs() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.String()
}

func (d *daemon) waitLog(t *testing.T, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(d.logs(), s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q %d times:\n%s", s, n, d.logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestGenkeyAndCheckConfig(t *testing.T) {
	e := newEnv(t)
	bin := testutil.Binary(t, "worker_listener")
	fi, err := os.Stat(e.keyPath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi.Mode(), err)
	}
	if out, err := exec.Command(bin, "genkey", "--id", "nagios1", "--out", e.keyPath).CombinedOutput(); err == nil {
		t.Fatalf("genkey overwrote a key: %s", out)
	}
	if out, err := exec.Command(bin, "check-config", "--config", e.cfg).CombinedOutput(); err != nil || !strings.Contains(string(out), "config OK") {
		t.Fatalf("check-config: %v %s", err, out)
	}
	worldWritable := filepath.Join(e.dir, "ww.sh")
	os.WriteFile(worldWritable, []byte("#!/bin/sh\n"), 0o755)
	os.Chmod(worldWritable, 0o777)
	for _, tt := range []struct {
		name, from, to, want string
	}{
		{"missing binary", "/mark.sh]", "/nosuch.sh]", "no such file"},
		{"world-writable binary", "/mark.sh]", "/ww.sh]", "group/world-writable"},
		{"relative binary", e.dir + "/mark.sh]", "mark.sh]", "absolute path"},
		{"unknown field", "shutdown_grace:", "shutdown_grace_typo:", "not found in type"},
		{"shell-like service name", "  demo:", "  \"demo;x\":", "demo;x"},
		{"no allow list", `allow: ["127.0.0.1/32", "::1/128"]`, "allow: []", "allow"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bad := filepath.Join(t.TempDir(), "bad.yaml")
			os.WriteFile(bad, []byte(strings.Replace(e.yaml(e.keyPath), tt.from, tt.to, 1)), 0o600)
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
	if err == nil || !strings.Contains(string(out), "must not be accessible by group or others") {
		t.Fatalf("serve with a 0644 key: %v %s", err, out)
	}
}

// SIGHUP reloads keys; a bad config is refused and the old one stays;
// SIGTERM drains a running action before exiting 0.
func TestServeReloadAndDrain(t *testing.T) {
	e := newEnv(t)
	d := startServe(t, e)
	if rep, err := do(t, d.addr, e.key, protocol.VerbPing, ""); err != nil || rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("ping: %+v %v", rep, err)
	}
	// Rotation: add a second key, reload.
	k2Path := filepath.Join(e.dir, "nagios2.key")
	if err := exec.Command(testutil.Binary(t, "worker_listener"), "genkey", "--id", "nagios2", "--out", k2Path).Run(); err != nil {
		t.Fatal(err)
	}
	k2, _ := protocol.LoadKeyFile(k2Path)
	if rep, _ := do(t, d.addr, k2, protocol.VerbPing, ""); rep.Outcome != protocol.OutcomeDenied {
		t.Fatalf("unknown key before reload: %+v", rep)
	}
	e.writeConfig(e.keyPath, k2Path)
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog(t, "config reloaded", 1)
	if rep, err := do(t, d.addr, k2, protocol.VerbRestart, "demo"); err != nil || rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("new key after reload: %+v %v", rep, err)
	}
	// A bad config (a typo) is refused; both keys keep working.
	os.WriteFile(e.cfg, []byte(strings.Replace(e.yaml(k2Path), "services:", "servicez:", 1)), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog(t, "reload refused", 1)
	for _, k := range []protocol.Key{e.key, k2} {
		if rep, err := do(t, d.addr, k, protocol.VerbRestart, "demo"); err != nil || rep.Outcome != protocol.OutcomeOK {
			t.Fatalf("key %s after a refused reload: %+v %v", k.ID, rep, err)
		}
	}
	if e.marks("mark") != 3 {
		t.Fatalf("marks %d", e.marks("mark"))
	}
	// Drain: a running action finishes and its caller gets the reply.
	res := make(chan protocol.Reply, 1)
	go func() {
		rep, err := do(t, d.addr, e.key, protocol.VerbRestart, "slow")
		if err != nil {
			t.Error(err)
		}
		res <- rep
	}()
	deadline := time.Now().Add(20 * time.Second)
	for { // until the slow action runs: it touches mark-slow.started
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
	d.cmd.Process.Signal(syscall.SIGHUP)
	d.waitLog(t, "config reloaded", 2)
	d.cmd.Process.Signal(syscall.SIGTERM)
	// New connections are refused once draining has begun.
	deadline = time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", d.addr, time.Second)
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
	case err := <-d.exit:
		t.Fatalf("exited before the running action finished: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	os.WriteFile(filepath.Join(e.dir, "release"), nil, 0o600)
	if rep := <-res; rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("drained request: %+v", rep)
	}
	select {
	case err := <-d.exit:
		if err != nil {
			t.Fatalf("exit after drain: %v\n%s", err, d.logs())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not exit after the drain")
	}
	audit := readFile(filepath.Join(e.dir, "audit.log"))
	if strings.Count(audit, "\n") < 6 || strings.Contains(audit, fmt.Sprintf("%x", e.key.Secret)) {
		t.Fatalf("audit log:\n%s", audit)
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// systemd socket activation: the listening socket arrives as fd 3.
func TestSocketActivation(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // the child holds its own copy of the socket
	d := startServe(t, e, f)
	f.Close()
	if d.addr != addr {
		t.Fatalf("serving on %s, want the passed socket %s", d.addr, addr)
	}
	if rep, err := do(t, addr, e.key, protocol.VerbRestart, "demo"); err != nil || rep.Outcome != protocol.OutcomeOK {
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
	frame := protocol.NewRequest(e.key, protocol.VerbRestart, "demo", time.Now(), n).Marshal()
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
	if got := send(); !strings.HasPrefix(got, "SH1 ok 0 ") {
		t.Fatalf("first: %q", got)
	}
	if got := send(); got != "SH1 denied -1 0 - -\n" {
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
