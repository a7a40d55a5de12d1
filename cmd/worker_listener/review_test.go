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

	"github.com/selfheal/selfheal/internal/lab/testutil"
)

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
	time.Sleep(100 * time.Millisecond) // let the signal be delivered first
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
