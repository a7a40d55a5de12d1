package proc

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestPIDFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.pid")
	if pid, err := ReadPIDFile(p); pid != 0 || err != nil {
		t.Fatalf("missing file: %d, %v", pid, err)
	}
	if err := WritePIDFile(p, 1234); err != nil {
		t.Fatal(err)
	}
	if pid, err := ReadPIDFile(p); pid != 1234 || err != nil {
		t.Fatalf("read back: %d, %v", pid, err)
	}
	RemovePIDFile(p, 999) // not ours: must stay
	if _, err := os.Stat(p); err != nil {
		t.Fatal("RemovePIDFile removed another process's pid file")
	}
	RemovePIDFile(p, 1234)
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("RemovePIDFile left our pid file")
	}
	if err := os.WriteFile(p, []byte("nonsense\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPIDFile(p); err == nil {
		t.Fatal("garbage pid file accepted")
	}
}

// TestRunsWithPIDFile asks about a real process whose command line names a
// verb and a pid file (as sh -c's spare arguments, which it ignores).
func TestRunsWithPIDFile(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "w.pid")
	cmd := exec.Command("/bin/sh", "-c", "read x", "sh", "run", "--pid-file", pidFile)
	cmd.Dir = dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	pid := cmd.Process.Pid
	for name, c := range map[string]struct {
		verb, file string
		want       bool
	}{
		"its verb and file":   {"run", pidFile, true},
		"relative to its cwd": {"run", "w.pid", false}, // relative to the test's cwd, not the process's
		"another verb":        {"daemon", pidFile, false},
		"another file":        {"run", filepath.Join(dir, "other.pid"), false},
	} {
		if got := RunsWithPIDFile(pid, c.verb, c.file); got != c.want {
			t.Errorf("%s: RunsWithPIDFile = %v, want %v", name, got, c.want)
		}
	}
	if RunsWithPIDFile(os.Getpid(), "run", pidFile) {
		t.Error("the test binary was taken for the daemon")
	}
	stdin.Close()
	cmd.Wait()
	if RunsWithPIDFile(pid, "run", pidFile) {
		t.Error("a reaped process still runs")
	}
}
