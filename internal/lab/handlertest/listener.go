// Package handlertest starts a real worker_listener binary on loopback for
// handle_worker's tests, with a fresh key and a config in a temp dir.
package handlertest

import (
	"context"
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

	"github.com/selfheal/selfheal/internal/protocol"
	"github.com/selfheal/selfheal/internal/lab/testutil"
)

// Listener is a running worker_listener.
type Listener struct {
	Host    string // 127.0.0.1
	Port    int
	KeyFile string
	Key     protocol.Key
	Dir     string
	count   string
}

// Services configured, each with a restart (and status for "demo"):
//
//	demo    restart appends a line to a counter file and prints "restarted"
//	failing restart prints "boom" and exits 7
//	slow    restart sleeps 30s under a 1s timeout
//	hang    restart sleeps 30s under a 5s timeout (for killing the client mid-request)
const config = `listen: 127.0.0.1:1
keys: ["%[1]s/nagios1.key"]
allow: ["127.0.0.1/32", "::1/128"]
audit_log: "%[1]s/audit.log"
state_dir: "%[1]s/state"
replay_window: 10m
shutdown_grace: 2s
limits: {rate: 1000, burst: 1000}
services:
  demo:
    actions:
      restart: {argv: [/bin/sh, -c, "echo restarted >> %[1]s/count; echo restarted"], timeout: 10s}
      start:   {argv: [/bin/sh, -c, "echo started >> %[1]s/count; echo started"], timeout: 10s}
      status:  {argv: [/bin/sh, -c, "echo 'demo is running'; echo 'pid 42'"], timeout: 10s}
  failing:
    actions:
      restart: {argv: [/bin/sh, -c, "echo boom; exit 7"], timeout: 10s}
  slow:
    actions:
      restart: {argv: [/bin/sleep, "30"], timeout: 1s, kill_grace: 1s}
  hang:
    actions:
      restart: {argv: [/bin/sleep, "30"], timeout: 5s, kill_grace: 1s}
`

// Start runs `worker_listener serve` on a loopback socket it is handed as
// systemd would (LISTEN_FDS), so there is no port to race for, and stops
// it (the whole process group) when the test ends.
func Start(t testing.TB) *Listener {
	t.Helper()
	bin := testutil.Binary(t, "worker_listener")
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	l := &Listener{Host: "127.0.0.1", Dir: dir, KeyFile: filepath.Join(dir, "nagios1.key"), count: filepath.Join(dir, "count")}
	if out, err := exec.Command(bin, "genkey", "--id", "nagios1", "--out", l.KeyFile).CombinedOutput(); err != nil {
		t.Fatalf("worker_listener genkey: %v\n%s", err, out)
	}
	k, err := protocol.LoadKeyFile(l.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	l.Key = k
	cfgPath := filepath.Join(dir, "listener.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(config, dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Port = ln.Addr().(*net.TCPAddr).Port
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	// LISTEN_PID must be the listener's own pid: sh sets it and execs.
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" serve --config "$1"`, bin, cfgPath)
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, err := os.Create(filepath.Join(dir, "listener.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	// The socket already accepts connections; a ping proves the agent
	// behind it is serving with our key.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := protocol.NewClient(protocol.ClientConfig{Addr: l.Addr(), Key: k}).Do(ctx, protocol.VerbPing, "")
	if err != nil || rep.Outcome != protocol.OutcomeOK {
		b, _ := os.ReadFile(filepath.Join(dir, "listener.log"))
		t.Fatalf("worker_listener not serving: %v %+v\n%s", err, rep, b)
	}
	return l
}

// Addr is host:port.
func (l *Listener) Addr() string { return net.JoinHostPort(l.Host, strconv.Itoa(l.Port)) }

// Actions counts the demo service's restart/start actions that ran.
func (l *Listener) Actions(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile(l.count)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// OtherKeyFile writes a key with the same id but another secret, 0600.
func OtherKeyFile(t testing.TB) string {
	t.Helper()
	k, err := protocol.GenerateKey("nagios1")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "wrong.key")
	if err := protocol.WriteKeyFile(p, k); err != nil {
		t.Fatal(err)
	}
	return p
}

// ClosedPort returns a loopback port nothing listens on (it was just
// released; nothing in the tests binds ports by number).
func ClosedPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return p
}
