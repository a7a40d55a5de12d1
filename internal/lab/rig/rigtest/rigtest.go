// Package rigtest is the rig for tests: each helper calls its rig
// counterpart, fails the test on error and stops what it started when the
// test ends. It is apart from package rig so that rig, which demo_worker
// links, does not import testing; and apart from testutil, which the
// engine's own tests import (rig imports the engine).
package rigtest

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/testutil"
	"github.com/selfheal/selfheal/internal/protocol"
)

// Prepare is rig.Prepare; an empty Dir is a new temp dir of the test's.
func Prepare(t testing.TB, k rig.Kit) rig.Files {
	t.Helper()
	if k.Dir == "" {
		k.Dir = t.TempDir()
	}
	f, err := rig.Prepare(context.Background(), k)
	if err != nil {
		t.Fatalf("preparing the listener's files: %v", err)
	}
	return f
}

// Serve is rig.StartListener; the listener is stopped (SIGTERM, SIGKILL
// after 10 s) when the test ends.
func Serve(t testing.TB, o rig.Serve) *rig.Listener {
	t.Helper()
	l, err := rig.StartListener(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Stop(10 * time.Second) })
	return l
}

// HandlerListener is a real worker_listener on loopback for handle_worker's
// tests, with keys issued the documented way (handle_worker genkey and
// issue-key): the handler holds the fleet key, the agent its host key.
// Its services, each with a restart (and start and status for demo):
//
//	demo    restart appends a line to a counter file and prints "restarted"
//	failing restart prints "boom" and exits 7
//	slow    restart sleeps 30s under a 1s timeout
//	hang    restart appends a line to the counter file, then sleeps 30s
//	        under a 5s timeout (for killing the client mid-request)
type HandlerListener struct {
	Host  string // 127.0.0.1
	Port  int
	Agent string // the agent's identity
	// KeyFile and Key are the fleet key: what handle_worker holds.
	KeyFile string
	Key     protocol.Key
	// HostKeyFile and HostKey are the agent's host key, in its config.
	HostKeyFile string
	HostKey     protocol.Key
	Dir         string
	AuditLog    string
	count       string
}

// HandlerOptions change StartHandlerListener's agent.
type HandlerOptions struct {
	// Agent is the agent's identity; default "worker1".
	Agent string
	// Budget is every service's restart budget. The default, 3 per hour
	// with no min gap, lets a test restart several faults in a row; a
	// test of the agent's budget sets its own.
	Budget *rig.Budget
	// Bin is the worker_listener binary; default the one under test
	// (SELFHEAL_BIN). A test of a rolling upgrade runs an older build.
	Bin string
	// Breaker is the agent's mass-failure breaker (nil: its default).
	Breaker *rig.Breaker
	// Fleet is another listener's fleet key file: this agent's host key
	// is issued from it (a second agent of one fleet, one handler key).
	Fleet string
}

// DefaultTestBudget is StartHandlerListener's budget unless told.
var DefaultTestBudget = rig.Budget{Max: 3, Window: "1h", MinGap: "0s"}

// StartHandlerListener runs `worker_listener serve` on a loopback socket it
// is handed as systemd would (LISTEN_FDS), so there is no port to race for,
// and stops it (the whole process group) when the test ends. At most one
// HandlerOptions is used.
func StartHandlerListener(t testing.TB, opts ...HandlerOptions) *HandlerListener {
	t.Helper()
	var o HandlerOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.Budget == nil {
		b := DefaultTestBudget
		o.Budget = &b
	}
	bin := o.Bin
	if bin == "" {
		bin = testutil.Binary(t, "worker_listener")
	}
	dir := t.TempDir()
	count := filepath.Join(dir, "count")
	audit := filepath.Join(dir, "audit.log")
	sh := func(script string) []string { return []string{"/bin/sh", "-c", script} }
	f := Prepare(t, rig.Kit{Dir: dir, Agent: o.Agent, Fleet: o.Fleet, Issue: testutil.Binary(t, "handle_worker"), Config: rig.ListenerConfig{
		Listen: "127.0.0.1:1", // unused: the socket is handed over
		Allow:  rig.Loopback, AuditLog: audit, Budget: o.Budget, Breaker: o.Breaker,
		ReplayWindow: "10m", ShutdownGrace: "2s", Limits: rig.Limits{Rate: 1000, Burst: 1000},
		Services: []rig.Service{
			{Name: "demo", Actions: map[string]rig.Action{
				"restart": {Argv: sh("echo restarted >> " + count + "; echo restarted"), Timeout: "10s"},
				"start":   {Argv: sh("echo started >> " + count + "; echo started"), Timeout: "10s"},
				"status":  {Argv: sh("echo 'demo is running'; echo 'pid 42'"), Timeout: "10s"},
			}},
			{Name: "failing", Actions: map[string]rig.Action{
				"restart": {Argv: sh("echo boom; exit 7"), Timeout: "10s"}}},
			{Name: "slow", Actions: map[string]rig.Action{
				"restart": {Argv: []string{"/bin/sleep", "30"}, Timeout: "1s", KillGrace: "1s"}}},
			{Name: "hang", Actions: map[string]rig.Action{
				"restart": {Argv: sh("echo hang >> " + count + "; exec /bin/sleep 30"), Timeout: "5s", KillGrace: "1s"}}},
		},
	}})
	// The socket accepts connections at once; the ping proves the agent
	// behind it is serving with our key.
	l := Serve(t, rig.Serve{Bin: bin, Config: f.Config, Log: filepath.Join(dir, "listener.log"),
		Activate: true, Ping: &f.Key, Timeout: 30 * time.Second})
	host, port, err := net.SplitHostPort(l.Addr)
	if err != nil {
		t.Fatal(err)
	}
	h := &HandlerListener{Host: host, Agent: f.Agent, KeyFile: f.FleetFile, Key: f.Fleet, HostKeyFile: f.KeyFile, HostKey: f.Key,
		Dir: dir, AuditLog: audit, count: count}
	if h.Port, err = strconv.Atoi(port); err != nil {
		t.Fatal(err)
	}
	return h
}

// Addr is host:port.
func (l *HandlerListener) Addr() string { return net.JoinHostPort(l.Host, strconv.Itoa(l.Port)) }

// Actions counts the restart/start actions of demo (and hang) that ran.
func (l *HandlerListener) Actions(t testing.TB) int {
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

// OtherKeyFile writes a fleet key with the listener's fleet id (fleet1)
// but another secret, 0600: every host key it derives is wrong.
func OtherKeyFile(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "wrong.fleet.key")
	k, err := protocol.GenerateFleetKey("fleet1")
	if err == nil {
		err = protocol.WriteKeyFile(p, k)
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// ClosedPort returns a loopback port nothing listens on (it was just
// released; nothing in the tests binds ports by number).
func ClosedPort(t testing.TB) int {
	t.Helper()
	p, err := rig.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
