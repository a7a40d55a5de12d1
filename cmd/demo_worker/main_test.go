package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/testutil"
	"github.com/selfheal/selfheal/internal/proc"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.Cleanup()
	os.Exit(code)
}

// freeAddr returns a loopback address with a port that was free a moment
// ago (the worker binds it itself, so there is a small, accepted race).
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := rig.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

type result struct {
	code   int
	stdout string
	stderr string
}

// runBin runs the real binary, bounded in time. WaitDelay turns "a child
// still holds our pipes" into an error the test reports.
func runBin(t *testing.T, bin string, extra []*os.File, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.ExtraFiles = extra
	cmd.WaitDelay = 5 * time.Second
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("%v did not finish in 60s", args)
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		t.Fatalf("%v: a child kept stdout/stderr open after exit (not detached)", args)
	}
	return result{cmd.ProcessState.ExitCode(), out.String(), errb.String()}
}

// killFromPIDFile is the safety net: whatever a test left running dies.
func killFromPIDFile(t *testing.T, pidFile string) {
	t.Cleanup(func() {
		if pid, err := proc.ReadPIDFile(pidFile); err == nil && pid > 1 {
			syscall.Kill(-pid, syscall.SIGKILL)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

func gone(pid int) bool { return !proc.Alive(pid) }

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !gone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still alive", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func pidOf(t *testing.T, pidFile string) int {
	t.Helper()
	pid, err := proc.ReadPIDFile(pidFile)
	if err != nil || pid == 0 {
		t.Fatalf("pid file %s: %d, %v", pidFile, pid, err)
	}
	return pid
}

func TestDaemonLifecycle(t *testing.T) {
	bin := testutil.Binary(t, "demo_worker")
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "w.pid")
	addr := freeAddr(t)
	killFromPIDFile(t, pidFile)

	// An inherited descriptor without close-on-exec (as a listener's pipe
	// or a systemd socket would be) must not reach the worker.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	pipeID, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", pw.Fd()))

	r := runBin(t, bin, []*os.File{pw}, "daemon", "start", "--listen", addr, "--pid-file", pidFile)
	if r.code != 0 || !strings.Contains(r.stdout, "started pid") {
		t.Fatalf("start: %+v", r)
	}
	pid := pidOf(t, pidFile)
	if !strings.Contains(r.stdout, strconv.Itoa(pid)) {
		t.Fatalf("start output %q does not name pid %d", r.stdout, pid)
	}
	if st, err := proc.ReadStat(pid); err != nil || st.Session != pid {
		t.Fatalf("worker pid %d: session %d (%v), want its own session", pid, st.Session, err)
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if target == pipeID {
			t.Errorf("worker holds the caller's inherited pipe on fd %s", fd.Name())
		}
		if n, _ := strconv.Atoi(fd.Name()); n <= 2 && target != os.DevNull {
			t.Errorf("worker fd %d is %s, want %s", n, target, os.DevNull)
		}
	}
	resp, err := http.Get("http://" + addr + "/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/status: %s", resp.Status)
	}

	if r := runBin(t, bin, nil, "daemon", "status", "--pid-file", pidFile); r.code != 0 {
		t.Fatalf("status of a running worker: %+v", r)
	}
	// start is idempotent.
	if r := runBin(t, bin, nil, "daemon", "start", "--listen", addr, "--pid-file", pidFile); r.code != 0 ||
		!strings.Contains(r.stdout, "already running") || pidOf(t, pidFile) != pid {
		t.Fatalf("second start: %+v", r)
	}

	r = runBin(t, bin, nil, "daemon", "restart", "--listen", addr, "--pid-file", pidFile)
	newPID := pidOf(t, pidFile)
	if r.code != 0 || newPID == pid || !strings.Contains(r.stdout, fmt.Sprintf("started pid %d", newPID)) {
		t.Fatalf("restart: %+v (old %d, new %d)", r, pid, newPID)
	}
	waitGone(t, pid)

	// A crash leaves a stale pid file: status says so (LSB 1), start copes.
	if r := runBin(t, bin, nil, "fault", "crash", "--listen", addr); r.code != 0 {
		t.Fatalf("fault crash: %+v", r)
	}
	waitGone(t, newPID)
	if r := runBin(t, bin, nil, "daemon", "status", "--pid-file", pidFile); r.code != 1 {
		t.Fatalf("status after crash: %+v, want exit 1", r)
	}
	r = runBin(t, bin, nil, "daemon", "start", "--listen", addr, "--pid-file", pidFile)
	if r.code != 0 || !strings.Contains(r.stdout, "stale") {
		t.Fatalf("start after crash: %+v", r)
	}
	third := pidOf(t, pidFile)

	if r := runBin(t, bin, nil, "daemon", "stop", "--pid-file", pidFile); r.code != 0 ||
		!strings.Contains(r.stdout, fmt.Sprintf("stopped pid %d", third)) {
		t.Fatalf("stop: %+v", r)
	}
	waitGone(t, third)
	if _, err := os.Stat(pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pid file left after stop: %v", err)
	}
	if r := runBin(t, bin, nil, "daemon", "status", "--pid-file", pidFile); r.code != 3 {
		t.Fatalf("status when stopped: %+v, want exit 3", r)
	}
	if r := runBin(t, bin, nil, "daemon", "stop", "--pid-file", pidFile); r.code != 0 {
		t.Fatalf("stopping a stopped worker: %+v", r)
	}
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	bin := testutil.Binary(t, "demo_worker")
	pidFile := filepath.Join(t.TempDir(), "w.pid")
	addr := freeAddr(t)
	killFromPIDFile(t, pidFile)
	if r := runBin(t, bin, nil, "daemon", "start", "--ignore-sigterm", "--listen", addr, "--pid-file", pidFile); r.code != 0 {
		t.Fatalf("start: %+v", r)
	}
	pid := pidOf(t, pidFile)
	r := runBin(t, bin, nil, "daemon", "stop", "--stop-timeout", "300ms", "--pid-file", pidFile)
	if r.code != 0 || !strings.Contains(r.stdout, "SIGKILL") {
		t.Fatalf("stop of a worker ignoring SIGTERM: %+v", r)
	}
	waitGone(t, pid)
}

func TestFaultsThroughTheCLI(t *testing.T) {
	bin := testutil.Binary(t, "demo_worker")
	dir := t.TempDir()
	pidFile, logFile := filepath.Join(dir, "w.pid"), filepath.Join(dir, "w.log")
	addr := freeAddr(t)
	killFromPIDFile(t, pidFile)
	if r := runBin(t, bin, nil, "daemon", "start", "--listen", addr, "--pid-file", pidFile, "--log-file", logFile,
		"--hang-status-delay", "300ms"); r.code != 0 {
		t.Fatalf("start: %+v", r)
	}
	defer runBin(t, bin, nil, "daemon", "stop", "--pid-file", pidFile)
	for _, f := range []string{"degrade", "fail", "depfail", "hang"} {
		if r := runBin(t, bin, nil, "fault", f, "--listen", addr); r.code != 0 {
			t.Fatalf("fault %s: %+v", f, r)
		}
	}
	// --hang-status-delay reached the worker: hung, /status answers late
	// instead of not at all, and says it is hung and critical.
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + addr + "/status")
	if err != nil {
		t.Fatalf("/status of the hung worker with a 300ms stall: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "hung (injected fault)") || !strings.Contains(string(body), `"status": "critical"`) ||
		!strings.Contains(string(body), "injected fault: depfail") {
		t.Fatalf("hung worker's status: %s", body)
	}
	if r := runBin(t, bin, nil, "fault", "clear", "--listen", addr); r.code != 0 {
		t.Fatalf("fault clear: %+v", r)
	}
	log, err := os.ReadFile(logFile)
	if err != nil || !strings.Contains(string(log), "fault=hang") {
		t.Fatalf("log file does not record the faults: %q, %v", log, err)
	}
}

func TestUsageAndFailureExitCodes(t *testing.T) {
	bin := testutil.Binary(t, "demo_worker")
	tests := []struct {
		args []string
		code int
	}{
		{[]string{"fault", "explode", "--listen", "127.0.0.1:1"}, exitUsage},
		{[]string{"daemon", "start", "--pid-file", "x.pid"}, exitUsage},
		{[]string{"daemon", "bounce", "--pid-file", "x.pid"}, exitUsage},
		{[]string{"run"}, exitUsage},
		{[]string{"fault", "hang", "--listen", freeAddr(t)}, exitFail}, // nobody listening
		{[]string{"--version"}, exitOK},
	}
	for _, tt := range tests {
		if r := runBin(t, bin, nil, tt.args...); r.code != tt.code {
			t.Errorf("%v: exit %d, want %d (%+v)", tt.args, r.code, tt.code, r)
		}
	}
}
