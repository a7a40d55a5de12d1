package fsutil

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestReadRegular(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok")
	if err := os.WriteFile(ok, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, 11), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, wantErr string
	}{
		{"regular", ok, ""},
		{"fifo with no writer returns at once", fifo, "not a regular file"},
		{"directory", dir, "not a regular file"},
		{"device", "/dev/zero", "not a regular file"},
		{"too large", big, "larger than 10 bytes"},
		{"missing", filepath.Join(dir, "nope"), "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done := make(chan struct{})
			var b []byte
			var mode os.FileMode
			var err error
			go func() { b, mode, err = ReadRegular(tt.path, 10); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("ReadRegular blocked")
			}
			if tt.wantErr == "" {
				if err != nil || string(b) != "hello" || mode.Perm() != 0o600 {
					t.Fatalf("got %q %v %v", b, mode, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestReadRegularRefusalKinds(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, 11), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path      string
		want, not error
	}{
		{dir, ErrNotRegular, ErrTooLarge},
		{big, ErrTooLarge, ErrNotRegular},
		{filepath.Join(dir, "nope"), os.ErrNotExist, ErrNotRegular},
	}
	for _, tt := range tests {
		_, _, err := ReadRegular(tt.path, 10)
		if !errors.Is(err, tt.want) || errors.Is(err, tt.not) {
			t.Errorf("ReadRegular(%s) = %v; want errors.Is %v and not %v", tt.path, err, tt.want, tt.not)
		}
	}
}

// TestOpenParent: a path reaches the Dir API through OpenParent, which
// follows a symlink in the directory's path (as /var/run -> /run) but
// never one under the name.
func TestOpenParent(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(dir, "run")); err != nil {
		t.Fatal(err)
	}
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	path := filepath.Join(dir, "run", "state[1].json") // glob characters in the name
	for i, perm := range []os.FileMode{0o644, 0o600} {
		d, name, err := OpenParent(path)
		if err != nil {
			t.Fatal(err)
		}
		data := []byte(strings.Repeat("x", i+1) + "\n")
		err = d.WriteFileAtomic(name, data, perm)
		d.Close()
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(real, "state[1].json"))
		if err != nil || string(b) != string(data) {
			t.Fatalf("write %d: read %q %v", i, b, err)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != perm {
			t.Fatalf("write %d: mode %v, want %v whatever the umask", i, fi.Mode().Perm(), perm)
		}
	}
	// A failing writer leaves the old file and no temp file behind.
	d, name, err := OpenParent(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	boom := errors.New("boom")
	err = d.WriteAtomic(name, 0o600, func(w io.Writer) error {
		w.Write([]byte("half"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "xx\n" {
		t.Fatalf("failed write changed the file: %q", b)
	}
	if ents, _ := os.ReadDir(real); len(ents) != 1 {
		t.Fatalf("left behind: %v", ents)
	}
	// A directory that does not exist: an error, nothing created.
	if _, _, err := OpenParent(filepath.Join(dir, "no", "x")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want ErrNotExist", err)
	}
	// The name itself is never followed: a lock through a symlink is
	// refused and its target not created.
	target := filepath.Join(dir, "target")
	if err := os.Symlink(target, filepath.Join(real, "x.lock")); err != nil {
		t.Fatal(err)
	}
	ld, lname, err := OpenParent(filepath.Join(dir, "run", "x.lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ld.Close()
	if _, err := ld.Lock(context.Background(), lname, 0o600, 0); !errors.Is(err, ErrSymlink) {
		t.Fatalf("locked through a symlink: %v", err)
	}
	if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the symlink's target was created: %v", err)
	}
}

// TestLock: the lock's waiting, on a lock file reached by its path (the
// way the agent's journal and the demo worker's daemon take theirs).
func TestLock(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.lock")
	d, name, err := OpenParent(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	unlock, err := d.Lock(context.Background(), name, 0o640, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm()&^0o640 != 0 {
		t.Fatalf("lock file %v %v", fi, err)
	}

	// Held: an expired context tries once and fails at once.
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Lock(expired, name, 0o600, 0); !errors.Is(err, syscall.EWOULDBLOCK) || !errors.Is(err, context.Canceled) ||
		err.Error() != syscall.EWOULDBLOCK.Error() {
		t.Fatalf("held, expired ctx: err = %v", err)
	}
	// Held: a deadline is waited for, not more.
	start := time.Now() // before the deadline is set: it is measured from here
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = d.Lock(ctx, name, 0o600, 5*time.Millisecond)
	if d := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || d < 100*time.Millisecond || d > 5*time.Second {
		t.Fatalf("held, 100 ms deadline: err = %v after %s", err, d)
	}
	// Released while a waiter polls: the waiter gets it.
	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		u, err := d.Lock(ctx, name, 0o600, 5*time.Millisecond)
		if err == nil {
			err = u()
		}
		got <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("waiter: %v", err)
	}
	// Free: even an expired context gets it.
	u, err := d.Lock(expired, name, 0o600, 0)
	if err != nil {
		t.Fatalf("free, expired ctx: %v", err)
	}
	u()
}
