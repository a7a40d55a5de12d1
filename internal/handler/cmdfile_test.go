package handler

import (
	"errors"
	"github.com/selfheal/selfheal/internal/nagios"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fifoReader makes a real FIFO and opens its read end without blocking,
// the way Nagios holds its command file open.
func fifoReader(t *testing.T) (string, *os.File) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "nagios.cmd")
	if err := syscall.Mkfifo(p, 0o660); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), p)
	t.Cleanup(func() { f.Close() })
	return p, f
}

func readAvailable(t *testing.T, f *os.File) string {
	t.Helper()
	buf := make([]byte, 8192)
	n, err := syscall.Read(int(f.Fd()), buf)
	if err != nil {
		t.Fatalf("reading the FIFO: %v", err)
	}
	return string(buf[:n])
}

func TestCommandFileExactLines(t *testing.T) {
	p, r := fifoReader(t)
	now := time.Unix(1764000000, 0)
	err := CommandFile{Path: p}.Write(now,
		AddSvcComment("web1", "Worker Svc", false, "handle_worker", "auto-restart ok in 1.2s"),
		ScheduleForcedSvcCheck("web1", "Worker Svc", now.Add(2*time.Second)),
	)
	if err != nil {
		t.Fatal(err)
	}
	want := "[1764000000] ADD_SVC_COMMENT;web1;Worker Svc;0;handle_worker;auto-restart ok in 1.2s\n" +
		"[1764000000] SCHEDULE_FORCED_SVC_CHECK;web1;Worker Svc;1764000002\n"
	if got := readAvailable(t, r); got != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
}

func TestCommandFileSanitises(t *testing.T) {
	p, r := fifoReader(t)
	now := time.Unix(100, 0)
	err := CommandFile{Path: p}.Write(now,
		AddSvcComment("h;1", "s\nX", true, "a", "line1\n[1] SHUTDOWN_PROGRAM\r\u202e; still the comment"+strings.Repeat("z", 2000)))
	if err != nil {
		t.Fatal(err)
	}
	got := readAvailable(t, r)
	if strings.Count(got, "\n") != 1 || !strings.HasSuffix(got, "\n") {
		t.Fatalf("injected a second line: %q", got)
	}
	if !strings.HasPrefix(got, "[100] ADD_SVC_COMMENT;h_1;s X;1;a;line1 [1] SHUTDOWN_PROGRAM  ; still the comment") {
		t.Fatalf("got %q", got)
	}
	if len(got) > 700 {
		t.Fatalf("comment not bounded: %d bytes", len(got))
	}
}

func TestCommandFileNoReader(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nagios.cmd")
	if err := syscall.Mkfifo(p, 0o660); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- CommandFile{Path: p}.Write(time.Now(), ScheduleForcedSvcCheck("h", "s", time.Now())) }()
	select {
	case err := <-done:
		if !errors.Is(err, nagios.ErrNoReader) {
			t.Fatalf("err = %v, want ErrNoReader", err)
		}
		if !strings.Contains(err.Error(), "check_external_commands") {
			t.Fatalf("error does not say what to check: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Write hung on a FIFO without a reader")
	}
}

func TestCommandFileRefusesNonFIFO(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "regular")
	os.WriteFile(regular, nil, 0o600)
	missing := filepath.Join(dir, "missing")
	for _, p := range []string{regular, missing, dir} {
		if err := (CommandFile{Path: p}).Write(time.Now(), ScheduleForcedSvcCheck("h", "s", time.Now())); err == nil {
			t.Errorf("Write(%s) succeeded", p)
		}
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("writing to a missing path created a file nobody reads")
	}
	if b, _ := os.ReadFile(regular); len(b) != 0 {
		t.Error("wrote into a regular file")
	}
}

func TestCommandFileAtomicBound(t *testing.T) {
	p, r := fifoReader(t)
	var cmds []Command
	for i := 0; i < 20; i++ {
		cmds = append(cmds, AddSvcComment("h", "s", false, "a", strings.Repeat("x", 400)))
	}
	err := CommandFile{Path: p}.Write(time.Now(), cmds...)
	if err == nil || !strings.Contains(err.Error(), "atomically") {
		t.Fatalf("err = %v, want a refusal of a non-atomic write", err)
	}
	buf := make([]byte, 10)
	if n, _ := syscall.Read(int(r.Fd()), buf); n > 0 {
		t.Fatal("part of an oversized batch was written")
	}
}
