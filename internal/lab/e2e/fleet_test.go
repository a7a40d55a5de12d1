package e2e

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/testutil"
	"github.com/selfheal/selfheal/internal/protocol"
)

// fleetAgent is one worker_listener of a fleet on a loopback address, whose
// demo restart appends a line to a counter file.
type fleetAgent struct {
	files rig.Files
	ln    *rig.Listener
	host  string // its loopback address
	port  int
	count string
	audit string
}

// startFleetAgent runs agent on host (127.0.0.x), with its host key issued
// from fleet (a new fleet when fleet is ""), the documented way.
func startFleetAgent(t *testing.T, agent, host, fleet string) *fleetAgent {
	t.Helper()
	dir := t.TempDir()
	port := freePortOn(t, host)
	a := &fleetAgent{host: host, port: port, count: filepath.Join(dir, "count"), audit: filepath.Join(dir, "audit.log")}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var err error
	a.files, err = rig.Prepare(ctx, rig.Kit{Dir: dir, Agent: agent, Issue: testutil.Binary(t, "handle_worker"), Fleet: fleet,
		Config: rig.ListenerConfig{
			Listen: net.JoinHostPort(host, strconv.Itoa(port)), Allow: []string{"127.0.0.0/8"}, AuditLog: a.audit,
			Services: []rig.Service{{Name: rig.Target, Actions: map[string]rig.Action{
				"restart": {Argv: []string{"/bin/sh", "-c", "echo restarted >> " + a.count + "; echo restarted"}, Timeout: "10s"}}}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	a.ln, err = rig.StartListener(ctx, rig.Serve{Bin: testutil.Binary(t, "worker_listener"), Config: a.files.Config,
		Log: filepath.Join(dir, "listener.log"), Ping: &a.files.Fleet, PingAgent: agent})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.ln.Stop(10 * time.Second) })
	return a
}

// runs counts the restarts the agent's action ran.
func (a *fleetAgent) runs(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(a.count)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// freePortOn returns a port free on host a moment ago.
func freePortOn(t *testing.T, host string) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Skipf("cannot listen on %s: %v", host, err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestRedirectedRequestIsRefused: Nagios' restart for worker1 that the
// network delivers to worker2 (same fleet, its own host key) runs nothing
// there, and the handler does not report ok.
func TestRedirectedRequestIsRefused(t *testing.T) {
	t.Parallel()
	w1 := startFleetAgent(t, "worker1", "127.0.0.1", "")
	w2 := startFleetAgent(t, "worker2", "127.0.0.2", w1.files.FleetFile)
	if w1.files.Fleet.ID != w2.files.Fleet.ID || bytes.Equal(w1.files.Key.Secret, w2.files.Key.Secret) {
		t.Fatalf("want two host keys of one fleet: %s/%s, %s/%s", w1.files.Fleet.ID, w1.files.Key.Agent, w2.files.Fleet.ID, w2.files.Key.Agent)
	}
	stateDir := t.TempDir()
	log := filepath.Join(t.TempDir(), "handler.log")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Nagios' macros for worker1; the connection goes to worker2 (as a
	// stale DNS entry or a moved address would send it).
	cmd := exec.CommandContext(ctx, testutil.Binary(t, "handle_worker"), "event",
		"--key-file", w1.files.FleetFile, "--agent", "worker1", "--fault", "42", "--target", rig.Target,
		"--address", w2.host, "--port", strconv.Itoa(w2.port), "--state-dir", stateDir, "--log-file", log, "--deadline", "5s",
		"CRITICAL", "HARD", "3", w1.host, "worker1", "worker")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err == nil || !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Errorf("handle_worker for worker1 at worker2's address: %v, want a non-zero exit\n%s", err, out)
	}
	if strings.Contains(string(out), "restart "+rig.Target+" ok") || strings.Contains(string(out), "auto-restart ok") {
		t.Errorf("the handler reports ok for a restart worker1 never saw:\n%s", out)
	}
	recs, err := rig.ReadHandlerLog(log)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Outcome == "ok" || r.Exit == 0 {
			t.Errorf("handler log: %s", r.Raw)
		}
	}
	if n := w2.runs(t); n != 0 {
		t.Errorf("worker2 ran %d restarts for a request meant for worker1", n)
	}
	if n := w1.runs(t); n != 0 {
		t.Errorf("worker1 ran %d restarts: nothing was sent to it", n)
	}
	audit, err := rig.ReadAudit(w2.audit)
	if err != nil {
		t.Fatal(err)
	}
	var denied int
	for _, r := range audit {
		if r.Verb == "restart" && r.Outcome == "denied" {
			denied++
		}
		if r.Origin == "run" || (r.Outcome == "ok" && r.Verb != "ping") {
			t.Errorf("worker2's audit log: %s", r.Raw)
		}
	}
	if denied == 0 {
		t.Errorf("worker2's audit log has no denied restart:\n%v", audit)
	}
	t.Logf("handle_worker: %s", strings.TrimSpace(string(out)))
}

// TestProvisioningOneLiner runs the README's per-host one-liner through
// /bin/sh (without the ssh hop: loopback only), then starts the agent on
// the key it wrote.
func TestProvisioningOneLiner(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bins := map[string]string{}
	for _, name := range rig.Binaries {
		bins[name] = testutil.Binary(t, name)
	}
	binDir := filepath.Join(dir, "bin")
	if err := rig.LinkBinaries(binDir, bins); err != nil {
		t.Fatal(err)
	}
	fleetFile := filepath.Join(dir, "fleet1.key")
	hostKey := filepath.Join(dir, "keys", "fleet1.key")
	if err := os.Mkdir(filepath.Dir(hostKey), 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sh := func(script string) (string, error) {
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", script)
		cmd.Env = []string{"PATH=" + binDir + ":/usr/bin:/bin"}
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := sh("handle_worker genkey --id fleet1 --out " + fleetFile); err != nil {
		t.Fatalf("genkey: %v\n%s", err, out)
	}
	oneLiner := "handle_worker issue-key --key-file " + fleetFile + " --agent worker1 | worker_listener import-key --out " + hostKey
	out, err := sh(oneLiner)
	if err != nil {
		t.Fatalf("%s: %v\n%s", oneLiner, err, out)
	}
	if !strings.Contains(out, "worker1") || !strings.Contains(out, hostKey) {
		t.Errorf("import-key says %q; want it to name the agent and the file", out)
	}
	fi, err := os.Stat(hostKey)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("host key mode %04o, want 0600", fi.Mode().Perm())
	}
	fleet, err := protocol.LoadKeyFile(fleetFile)
	if err != nil {
		t.Fatal(err)
	}
	got, err := protocol.LoadKeyFile(hostKey)
	if err != nil {
		t.Fatal(err)
	}
	want, err := fleet.ForAgent("worker1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != protocol.HostKey || got.ID != "fleet1" || got.Agent != "worker1" || !bytes.Equal(got.Secret, want.Secret) {
		t.Errorf("imported key: %s %s %s; want worker1's host key of fleet1", got.Kind, got.ID, got.Agent)
	}
	before, _ := os.ReadFile(hostKey)
	// Again: import-key refuses to overwrite, and the key stays as it was.
	if out, err := sh(oneLiner); err == nil {
		t.Errorf("the one-liner overwrote an existing key:\n%s", out)
	}
	if after, _ := os.ReadFile(hostKey); !bytes.Equal(before, after) {
		t.Error("the existing host key changed")
	}
	// The fleet key is never a host's key.
	if out, err := sh("worker_listener import-key --out " + filepath.Join(dir, "keys", "fleet.key") + " < " + fleetFile); err == nil ||
		!strings.Contains(out, "monitoring nodes") {
		t.Errorf("import-key of the fleet key: %v: %s; want it refused", err, out)
	}

	// The agent starts on the imported key and answers a ping signed from
	// the fleet key, as handle_worker signs.
	lport, err := rig.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	agentDir := filepath.Join(dir, "agent")
	cfg := rig.ListenerConfig{Listen: "127.0.0.1:" + strconv.Itoa(lport), Agent: "worker1", Keys: []string{hostKey},
		Allow: rig.Loopback, AuditLog: filepath.Join(agentDir, "audit.log"), StateDir: filepath.Join(agentDir, "state"),
		Services: []rig.Service{{Name: rig.Target, Actions: map[string]rig.Action{"restart": {Argv: []string{"/bin/true"}}}}}}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(agentDir, "listener.yaml")
	if err := cfg.Write(conf); err != nil {
		t.Fatal(err)
	}
	if out, err := sh("worker_listener check-config --config " + conf); err != nil {
		t.Fatalf("check-config: %v\n%s", err, out)
	}
	ln, err := rig.StartListener(ctx, rig.Serve{Bin: bins["worker_listener"], Config: conf, Log: filepath.Join(agentDir, "listener.log"),
		Ping: &fleet, PingAgent: "worker1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ln.Stop(10 * time.Second); err != nil {
		t.Error(err)
	}
}
