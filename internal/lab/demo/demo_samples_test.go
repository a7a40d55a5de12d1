package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/rig/rigtest"
	"github.com/selfheal/selfheal/internal/lab/testutil"
	"github.com/selfheal/selfheal/internal/proc"
)

// TestSampleScriptsUnderListener drives nagios-config/demo's start, status,
// restart and stop scripts through a real worker_listener, as the sample
// worker_listener.yaml wires them, and checks the worker they manage.
func TestSampleScriptsUnderListener(t *testing.T) {
	bins := binDir(t)
	dir := t.TempDir()
	scripts := filepath.Join(dir, "scripts")
	if err := os.Mkdir(scripts, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(testutil.ModuleRoot(t), "nagios-config", "demo")
	for _, a := range []string{"start", "stop", "restart", "status"} {
		b, err := os.ReadFile(filepath.Join(src, a+".sh"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(scripts, a+".sh"), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The sample config must at least parse as YAML.
	sample, err := os.ReadFile(filepath.Join(src, "worker_listener.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var parsed map[string]any
	if err := yaml.Unmarshal(sample, &parsed); err != nil {
		t.Fatalf("sample worker_listener.yaml: %v", err)
	}

	wport, lport := freeTestPort(t), freeTestPort(t)
	pidFile := filepath.Join(dir, "demo.pid")
	t.Cleanup(func() {
		if pid, _ := proc.ReadPIDFile(pidFile); owns(pid, pidFile) {
			killPID(pid)
		}
	})
	env := map[string]string{"WORKER": filepath.Join(bins, "demo_worker"), "LISTEN": "127.0.0.1:" + wport,
		"PIDFILE": pidFile, "LOGFILE": filepath.Join(dir, "demo.log")}
	actions := map[string]rig.Action{}
	for _, a := range []string{"start", "stop", "restart", "status"} {
		actions[a] = rig.Action{Argv: []string{filepath.Join(scripts, a+".sh")}, Timeout: "20s", Env: env}
	}
	// The keys the documented way, with the real binary; a budget the
	// test never reaches (the agent keeps it).
	f := rigtest.Prepare(t, rig.Kit{Dir: dir, Agent: "worker1", Issue: filepath.Join(bins, "handle_worker"),
		Config: rig.ListenerConfig{
			Listen: "127.0.0.1:" + lport, Allow: []string{"127.0.0.1/32"},
			AuditLog: filepath.Join(dir, "audit.log"), StateDir: filepath.Join(dir, "state"), // the agent's own, 0700
			Budget:   &rig.Budget{Max: 10, MinGap: "0s"},
			Services: []rig.Service{{Name: "demo", Actions: actions}},
		}})
	r := &runner{dir: dir, env: []string{"PATH=/usr/bin:/bin"}, now: time.Now}
	ctx := context.Background()
	l := rigtest.Serve(t, rig.Serve{Bin: filepath.Join(bins, "worker_listener"), Config: f.Config,
		Log: filepath.Join(dir, "listener.log"), Env: r.env, Dir: dir, Timeout: 10 * time.Second})
	stateDir := filepath.Join(dir, "handler")
	if err := os.Mkdir(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	send := func(verb string) result {
		return r.run(ctx, 30*time.Second, filepath.Join(bins, "handle_worker"), "send", verb, "--host", "127.0.0.1",
			"--port", lport, "--agent", "worker1", "--target", "demo", "--key-file", f.FleetFile, "--state-dir", stateDir)
	}
	if res := send("start"); res.Code != 0 {
		t.Fatalf("start through the listener: %+v", res)
	}
	first, _ := proc.ReadPIDFile(pidFile)
	if !owns(first, pidFile) {
		t.Fatalf("no worker running after start (pid file says %d)", first)
	}
	if res := send("status"); res.Code != 0 {
		t.Fatalf("status through the listener: %+v", res)
	}
	if res := send("restart"); res.Code != 0 {
		t.Fatalf("restart through the listener: %+v", res)
	}
	second, _ := proc.ReadPIDFile(pidFile)
	if second == first || !owns(second, pidFile) {
		t.Fatalf("restart: pid %d -> %d", first, second)
	}
	if owns(first, pidFile) {
		t.Fatalf("the old worker %d survived the restart", first)
	}
	// The worker survives the listener that started it.
	_ = l.Stop(5 * time.Second)
	if !owns(second, pidFile) {
		t.Fatal("the worker died with the listener")
	}
	// stop.sh by hand, as on-call would run it, with the action's env.
	cmd := exec.Command(filepath.Join(scripts, "stop.sh"))
	cmd.Env = []string{"PATH=/usr/bin:/bin", "WORKER=" + env["WORKER"], "PIDFILE=" + pidFile}
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), fmt.Sprintf("stopped pid %d", second)) {
		t.Fatalf("stop.sh: %v: %s", err, out)
	}
}

func freeTestPort(t *testing.T) string {
	t.Helper()
	p, err := rig.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(p)
}

// owns reports whether pid is the demo worker run with pidFile.
func owns(pid int, pidFile string) bool { return rig.Worker{PIDFile: pidFile}.Owns(pid) }
