package engine

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestWriteCommandRefusesNonFIFO(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "nagios.cmd")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{plain, filepath.Join(dir, "missing.cmd")} {
		if err := WriteCommand(p, time.Now(), "ADD_SVC_COMMENT;h;s;1;a;b"); !errors.Is(err, ErrNotFIFO) {
			t.Errorf("%s: err = %v, want ErrNotFIFO", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.cmd")); !os.IsNotExist(err) {
		t.Error("WriteCommand created a regular file nobody reads")
	}
}

func TestWriteCommandFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "nagios.cmd")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// No reader: fails at once instead of blocking.
	done := make(chan error, 1)
	go func() { done <- WriteCommand(fifo, time.Now(), "X;1") }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNoReader) {
			t.Fatalf("err = %v, want ErrNoReader", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WriteCommand blocked on a FIFO without reader")
	}
	// With a reader: one line, stamped.
	r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ts := time.Unix(1764023000, 500000000)
	if err := WriteCommand(fifo, ts, "ADD_SVC_COMMENT;h;s;1;a;b"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	n, _ := r.Read(buf)
	if got, want := string(buf[:n]), "[1764023000.500000000] ADD_SVC_COMMENT;h;s;1;a;b\n"; got != want {
		t.Errorf("wrote %q, want %q", got, want)
	}
	if err := WriteCommand(fifo, ts, "A\nB"); err == nil {
		t.Error("accepted a command with a newline (a second, injected command)")
	}
}
