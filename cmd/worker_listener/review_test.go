package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/testutil"
)

// TestHupWhileStarting: a SIGHUP that arrives while serve is still loading
// its config (systemctl reload right after start) must not kill the agent
// by SIGHUP's default action. A key file that is a FIFO holds the agent in
// open(2) at a known point; that config is then refused, so the agent must
// exit 1 with its own message, not die of the signal.
func TestHupWhileStarting(t *testing.T) {
	e := newEnv(t)
	fifo := filepath.Join(e.dir, "fifo.key")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	e.writeConfig(fifo)
	var stderr bytes.Buffer
	cmd := exec.Command(testutil.Binary(t, "worker_listener"), "serve", "--config", e.cfg)
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
		t.Skip("cannot see the agent block on the FIFO (no /proc/PID/task/*/wchan)")
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the signal be delivered first
	// Non-blocking: if the agent died of the signal there is no reader.
	if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
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
