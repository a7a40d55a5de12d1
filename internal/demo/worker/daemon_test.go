package worker

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/testutil"
	"github.com/selfheal/selfheal/internal/proc"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.Cleanup()
	os.Exit(code)
}

func freeListen(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// daemonFixture is a pid file in a temp dir and the real binary; every
// worker left running for the pid file is killed at the end.
func daemonFixture(t *testing.T) (DaemonConfig, DaemonDeps) {
	t.Helper()
	dir := t.TempDir()
	cfg := DaemonConfig{Listen: freeListen(t), PIDFile: filepath.Join(dir, "w.pid"), LogFile: filepath.Join(dir, "w.log"),
		StartTimeout: 10 * time.Second, StopTimeout: 5 * time.Second}
	t.Cleanup(func() {
		for _, pid := range workersFor(cfg.PIDFile) {
			syscall.Kill(-pid, syscall.SIGKILL)
		}
	})
	return cfg, DaemonDeps{Exe: testutil.Binary(t, "demo_worker")}
}

// workersFor lists the live demo_worker processes run with pidFile.
func workersFor(pidFile string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err == nil && Owns(pid, pidFile) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestStopNeverKillsAnUnrelatedProcess(t *testing.T) {
	cfg, _ := daemonFixture(t)
	// A live process that is not our worker holds the pid (a recycled pid).
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Skipf("no sleep(1): %v", err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	if err := proc.WritePIDFile(cfg.PIDFile, sleeper.Process.Pid); err != nil {
		t.Fatal(err)
	}
	res, err := Stop(context.Background(), cfg)
	if err != nil || res.PID != 0 || res.StalePID != sleeper.Process.Pid {
		t.Fatalf("Stop: %+v, %v", res, err)
	}
	if !proc.Alive(sleeper.Process.Pid) {
		t.Fatal("Stop killed a process that was not its worker")
	}
	if _, err := os.Stat(cfg.PIDFile); !os.IsNotExist(err) {
		t.Fatal("the stale pid file was kept")
	}
	if _, code, _ := State(cfg); code != StatusNotRunning {
		t.Fatalf("State after removing the stale file: %d", code)
	}
}

func TestStateCodes(t *testing.T) {
	cfg, _ := daemonFixture(t)
	if _, code, _ := State(cfg); code != StatusNotRunning {
		t.Errorf("no pid file: %d", code)
	}
	os.WriteFile(cfg.PIDFile, []byte("garbage\n"), 0o644)
	if _, code, _ := State(cfg); code != StatusUnknownFailed {
		t.Errorf("garbage pid file: %d", code)
	}
	// A pid that exited: start and reap a short process, keep its pid.
	c := exec.Command("true")
	if err := c.Run(); err != nil {
		t.Skip(err)
	}
	proc.WritePIDFile(cfg.PIDFile, c.Process.Pid)
	if _, code, _ := State(cfg); code != StatusDeadPIDFile {
		t.Errorf("dead pid: %d", code)
	}
	if _, _, line := State(DaemonConfig{}); !strings.Contains(line, "--pid-file") {
		t.Errorf("no pid file configured: %q", line)
	}
}

func TestStartReportsAWorkerThatCannotStart(t *testing.T) {
	cfg, deps := daemonFixture(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg.Listen = ln.Addr().String() // taken: the worker cannot bind it
	_, err = Start(context.Background(), cfg, deps)
	if err == nil || !strings.Contains(err.Error(), "exited during start-up") || !strings.Contains(err.Error(), cfg.LogFile) {
		t.Fatalf("Start on a busy port: %v", err)
	}
	log, _ := os.ReadFile(cfg.LogFile)
	if !bytes.Contains(log, []byte("address already in use")) {
		t.Fatalf("the log does not say why: %q", log)
	}
	if pids := workersFor(cfg.PIDFile); len(pids) != 0 {
		t.Fatalf("workers left: %v", pids)
	}
}

func TestStartTimeoutKillsTheWorker(t *testing.T) {
	cfg, deps := daemonFixture(t)
	// A worker that never becomes ready: it neither writes the pid file
	// nor serves /status.
	deps.Exe = writeScript(t, "#!/bin/sh\nexec sleep 60\n")
	cfg.StartTimeout = 300 * time.Millisecond
	_, err := Start(context.Background(), cfg, deps)
	if err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("Start of a worker that never answers: %v", err)
	}
	// The pid in the message was killed.
	fields := strings.Fields(err.Error())
	for i, f := range fields {
		if f == "pid" && i+1 < len(fields) {
			pid, _ := strconv.Atoi(fields[i+1])
			deadline := time.Now().Add(5 * time.Second)
			for proc.Alive(pid) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if proc.Alive(pid) {
				t.Fatalf("pid %d still alive after the start timeout", pid)
			}
			return
		}
	}
	t.Fatalf("no pid in %q", err)
}

func writeScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fake_worker")
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConcurrentRestartsLeaveOneWorker(t *testing.T) {
	cfg, deps := daemonFixture(t)
	ctx := context.Background()
	first, err := Start(ctx, cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := Restart(ctx, cfg, deps)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent restart: %v", err)
		}
	}
	pid, code, line := State(cfg)
	if code != StatusRunning || pid == first.PID {
		t.Fatalf("after the restarts: %s (first pid %d)", line, first.PID)
	}
	if pids := workersFor(cfg.PIDFile); len(pids) != 1 || pids[0] != pid {
		t.Fatalf("workers for the pid file: %v, want only %d", pids, pid)
	}
	if res, err := Stop(ctx, cfg); err != nil || res.PID != pid || res.Killed {
		t.Fatalf("Stop: %+v, %v", res, err)
	}
}
