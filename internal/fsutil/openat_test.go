package fsutil

import (
	"fmt"
	"github.com/selfheal/selfheal/internal/lab/testutil"

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

// setup is a checked directory d (the state dir) and, beside it, what a
// local attacker points symlinks at: victim holds "victim\n".
func setup(t *testing.T) (d *Dir, dirPath, victim string) {
	t.Helper()
	root := t.TempDir()
	dirPath = filepath.Join(root, "state")
	if err := os.Mkdir(dirPath, 0o700); err != nil {
		t.Fatal(err)
	}
	victim = testutil.Victim(t, root)
	d, err := OpenDir(dirPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, dirPath, victim
}

func assertSymlinkRefused(t *testing.T, err error, path string) {
	t.Helper()
	if !errors.Is(err, ErrSymlink) || !strings.Contains(err.Error(), path+" is a symlink: refusing to follow it") {
		t.Fatalf("err = %v, want a refusal of the symlink %s", err, path)
	}
}

// TestDirRefusesPlantedSymlinks: a symlink planted as the name, to an
// existing file or to one that does not exist, is not followed by any
// way of opening (the target is neither written nor created).
func TestDirRefusesPlantedSymlinks(t *testing.T) {
	open := map[string]func(d *Dir, name string) error{
		"OpenFile append": func(d *Dir, name string) error {
			f, err := d.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
			if err == nil {
				f.Write([]byte("attacker's line\n"))
				f.Close()
			}
			return err
		},
		"OpenFile truncate": func(d *Dir, name string) error {
			f, err := d.OpenFile(name, os.O_WRONLY|os.O_TRUNC, 0)
			if err == nil {
				f.Close()
			}
			return err
		},
		"ReadRegular": func(d *Dir, name string) error {
			_, _, err := d.ReadRegular(name, 100)
			return err
		},
		"Lock": func(d *Dir, name string) error {
			unlock, err := d.Lock(context.Background(), name, 0o600, 0)
			if err == nil {
				unlock()
			}
			return err
		},
		"Subdir": func(d *Dir, name string) error {
			s, err := d.Subdir(name, 0o700)
			if err == nil {
				s.Close()
			}
			return err
		},
	}
	for what, do := range open {
		t.Run(what, func(t *testing.T) {
			d, dirPath, victim := setup(t)
			if err := os.Symlink(victim, filepath.Join(dirPath, "to-victim")); err != nil {
				t.Fatal(err)
			}
			missing := filepath.Join(filepath.Dir(dirPath), "created-by-root")
			if err := os.Symlink(missing, filepath.Join(dirPath, "dangling")); err != nil {
				t.Fatal(err)
			}
			assertSymlinkRefused(t, do(d, "to-victim"), filepath.Join(dirPath, "to-victim"))
			testutil.AssertVictim(t, victim)
			assertSymlinkRefused(t, do(d, "dangling"), filepath.Join(dirPath, "dangling"))
			if _, err := os.Lstat(missing); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the dangling symlink's target was created: %v", err)
			}
		})
	}
}

// TestWriteAtomicReplacesPlantedSymlink: WriteAtomic renames over a symlink
// (planted before the first write or between two) instead of writing
// through it.
func TestWriteAtomicReplacesPlantedSymlink(t *testing.T) {
	d, dirPath, victim := setup(t)
	path := filepath.Join(dirPath, "state.json")
	for i, plantFirst := range []bool{true, false, true} {
		if plantFirst {
			os.Remove(path)
			if err := os.Symlink(victim, path); err != nil {
				t.Fatal(err)
			}
		}
		data := []byte(strings.Repeat("s", i+1) + "\n")
		if err := d.WriteFileAtomic("state.json", data, 0o600); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		testutil.AssertVictim(t, victim)
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
			t.Fatalf("write %d: %s is %v %v, want a regular 0600 file", i, path, fi.Mode(), err)
		}
		if b, _ := os.ReadFile(path); string(b) != string(data) {
			t.Fatalf("write %d: read %q", i, b)
		}
	}
}

func TestWriteAtomicAt(t *testing.T) {
	d, dirPath, _ := setup(t)
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	for i, perm := range []os.FileMode{0o644, 0o600} {
		data := []byte(strings.Repeat("x", i+1) + "\n")
		if err := d.WriteFileAtomic("s", data, perm); err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(filepath.Join(dirPath, "s")); fi.Mode().Perm() != perm {
			t.Fatalf("write %d: mode %v, want %v whatever the umask", i, fi.Mode().Perm(), perm)
		}
	}
	// A failing writer leaves the old file and no temp file behind.
	boom := errors.New("boom")
	err := d.WriteAtomic("s", 0o600, func(w io.Writer) error {
		w.Write([]byte("half"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dirPath, "s")); string(b) != "xx\n" {
		t.Fatalf("failed write changed the file: %q", b)
	}
	// A rename that fails (a directory is in the way) leaves no temp either.
	if err := os.Mkdir(filepath.Join(dirPath, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteFileAtomic("sub", []byte("x"), 0o600); err == nil {
		t.Fatal("wrote over a directory")
	}
	ents, _ := os.ReadDir(dirPath)
	if len(ents) != 2 {
		t.Fatalf("left behind: %v", ents)
	}
}

// TestDirFollowsTheDirectory: once opened, a Dir writes where it was
// opened even if the path is renamed and replaced by a symlink.
func TestDirFollowsTheDirectory(t *testing.T) {
	d, dirPath, _ := setup(t)
	moved := dirPath + ".moved"
	attacker := t.TempDir()
	if err := os.Rename(dirPath, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(attacker, dirPath); err != nil {
		t.Fatal(err)
	}
	if err := d.WriteFileAtomic("nonces", []byte("n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(moved, "nonces")); err != nil {
		t.Fatalf("not in the directory opened: %v", err)
	}
	if ents, _ := os.ReadDir(attacker); len(ents) != 0 {
		t.Fatalf("written through the new symlink: %v", ents)
	}
}

func TestOpenDir(t *testing.T) {
	root := t.TempDir()
	real := filepath.Join(root, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	l := filepath.Join(root, "link")
	if err := os.Symlink(real, l); err != nil {
		t.Fatal(err)
	}
	_, err := OpenDir(l)
	assertSymlinkRefused(t, err, l)
	f := filepath.Join(root, "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenDir(f); !errors.Is(err, syscall.ENOTDIR) || errors.Is(err, ErrSymlink) {
		t.Fatalf("OpenDir(file) = %v, want ENOTDIR", err)
	}
	// A symlink before the last element is the kernel's to follow (and
	// Trust.Check's to judge).
	parent := filepath.Join(root, "parent")
	if err := os.Symlink(root, parent); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDir(filepath.Join(parent, "real"))
	if err != nil {
		t.Fatalf("OpenDir through a symlinked parent: %v", err)
	}
	d.Close()
}

func TestDirClose(t *testing.T) {
	d, _, _ := setup(t)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("second Close = %v, want ErrClosed", err)
	}
	if err := d.WriteFileAtomic("x", nil, 0o600); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("WriteFileAtomic after Close = %v, want ErrClosed", err)
	}
	if _, err := d.Lock(context.Background(), "x", 0o600, 0); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Lock after Close = %v, want ErrClosed", err)
	}
}

func TestTrustOpenDir(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	build(t, root, []node{dir("state", 0o700, 0), dir("open", 0o755, 0), link("l", "state", 0)})
	d, err := asRoot.OpenDir(filepath.Join(root, "state"), PrivateDir)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	_, err = asRoot.OpenDir(filepath.Join(root, "open"), PrivateDir)
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Path != filepath.Join(root, "open") || ps[0].Fix != "chmod 700 "+filepath.Join(root, "open") {
		t.Fatalf("err = %v, want the mode problem", err)
	}
	_, err = asRoot.OpenDir(filepath.Join(root, "l"), PrivateDir)
	assertSymlinkRefused(t, err, filepath.Join(root, "l"))
	if _, err := asRoot.OpenDir(filepath.Join(root, "state"), ConfigFile); err == nil {
		t.Fatal("a file kind for a directory")
	}
}

func TestDirOpenFile(t *testing.T) {
	d, dirPath, _ := setup(t)
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	// Created: exactly perm, the umask notwithstanding.
	f, err := d.OpenFile("audit.log", os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("a\n"))
	f.Close()
	path := filepath.Join(dirPath, "audit.log")
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o660 {
		t.Fatalf("mode %v, want 0660", fi.Mode().Perm())
	}
	// Existing: appended to, its mode kept.
	os.Chmod(path, 0o600)
	f, err = d.OpenFile("audit.log", os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("b\n"))
	f.Close()
	if b, _ := os.ReadFile(path); string(b) != "a\nb\n" {
		t.Fatalf("read %q", b)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600 kept", fi.Mode().Perm())
	}
	// A FIFO planted as the name fails at once, not blocking a writer.
	if err := syscall.Mkfifo(filepath.Join(dirPath, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []int{os.O_WRONLY | os.O_APPEND | os.O_CREATE, os.O_RDONLY} {
		done := make(chan error, 1)
		go func() {
			f, err := d.OpenFile("fifo", flag, 0o600)
			if err == nil {
				f.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, ErrNotRegular) {
				t.Fatalf("flag %#x: err = %v, want ErrNotRegular", flag, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("OpenFile blocked on a FIFO")
		}
	}
	if _, err := d.OpenFile("none", os.O_RDONLY, 0); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want ErrNotExist", err)
	}
}

func TestDirBadNames(t *testing.T) {
	d, _, _ := setup(t)
	ctx := context.Background()
	for _, name := range []string{"", ".", "..", "a/b", "../state", "/etc/passwd", "a\x00b"} {
		errs := map[string]error{}
		_, errs["OpenFile"] = d.OpenFile(name, os.O_RDONLY, 0)
		_, _, errs["ReadRegular"] = d.ReadRegular(name, 10)
		errs["WriteFileAtomic"] = d.WriteFileAtomic(name, nil, 0o600)
		errs["Remove"] = d.Remove(name)
		_, errs["Lock"] = d.Lock(ctx, name, 0o600, 0)
		_, errs["Subdir"] = d.Subdir(name, 0o700)
		for what, err := range errs {
			if !errors.Is(err, ErrBadName) {
				t.Errorf("%s(%q) = %v, want ErrBadName", what, name, err)
			}
		}
	}
}

func TestDirRemove(t *testing.T) {
	d, dirPath, victim := setup(t)
	if err := os.Symlink(victim, filepath.Join(dirPath, "l")); err != nil {
		t.Fatal(err)
	}
	if err := d.Remove("l"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dirPath, "l")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("link still there: %v", err)
	}
	testutil.AssertVictim(t, victim)
	if err := d.Remove("l"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want ErrNotExist", err)
	}
}

func TestDirRemoveTemps(t *testing.T) {
	d, dirPath, _ := setup(t)
	name := "a[b]*.json"
	// name + ".tmp-1.json" is another name's file, not a temp of name.
	keep := []string{name, "other.json.tmp-1", "ab.json.tmp-2", name + ".tmp-1.json"}
	drop := []string{name + ".tmp-123", name + ".tmp-"}
	for _, n := range append(keep, drop...) {
		if err := os.WriteFile(filepath.Join(dirPath, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d.RemoveTemps(name)
	for _, n := range keep {
		if _, err := os.Stat(filepath.Join(dirPath, n)); err != nil {
			t.Errorf("%s removed: %v", n, err)
		}
	}
	for _, n := range drop {
		if _, err := os.Stat(filepath.Join(dirPath, n)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s kept", n)
		}
	}
}

// TestDirWriteLocked: a locked writer's one temp name, left by a killed
// writer (a file, or a symlink planted there), is unlinked, never
// followed, and the write lands; another name's temp files are not its.
func TestDirWriteLocked(t *testing.T) {
	for _, durable := range []bool{false, true} {
		d, dirPath, victim := setup(t)
		name := "s.json"
		os.WriteFile(filepath.Join(dirPath, "other.json.tmp-0"), nil, 0o600)
		for i, plant := range []func(string) error{
			func(p string) error { return os.WriteFile(p, []byte("half"), 0o600) },
			func(p string) error { return os.Symlink(victim, p) },
		} {
			if err := plant(filepath.Join(dirPath, name+".tmp-0")); err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("state %d\n", i)
			if err := d.WriteLocked(name, []byte(want), 0o600, durable); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(dirPath, name)); err != nil || string(b) != want {
				t.Fatalf("durable=%v: %q, %v; want %q", durable, b, err, want)
			}
			if _, err := os.Lstat(filepath.Join(dirPath, name+".tmp-0")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("durable=%v: temp file left: %v", durable, err)
			}
			testutil.AssertVictim(t, victim)
		}
		if _, err := os.Stat(filepath.Join(dirPath, "other.json.tmp-0")); err != nil {
			t.Fatalf("another name's temp file removed: %v", err)
		}
	}
}

func TestDirSubdir(t *testing.T) {
	d, dirPath, _ := setup(t)
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	s, err := d.Subdir("services", 0o750)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteFileAtomic("web.json", []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if fi, _ := os.Stat(filepath.Join(dirPath, "services")); fi.Mode().Perm() != 0o750 {
		t.Fatalf("mode %v, want 0750 whatever the umask", fi.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(dirPath, "services", "web.json")); err != nil {
		t.Fatal(err)
	}
	// Existing: opened as it is.
	os.Chmod(filepath.Join(dirPath, "services"), 0o700)
	s, err = d.Subdir("services", 0o750)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if fi, _ := os.Stat(filepath.Join(dirPath, "services")); fi.Mode().Perm() != 0o700 {
		t.Fatalf("mode %v, want 0700 kept", fi.Mode().Perm())
	}
}

func TestDirLock(t *testing.T) {
	d, dirPath, _ := setup(t)
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	unlock, err := d.Lock(context.Background(), "lock", 0o640, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dirPath, "lock")); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, want 0640 whatever the umask", fi.Mode().Perm())
	}
	// Held: a second taker with an expired context fails at once, and the
	// error reads like flock's and matches both.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Lock(ctx, "lock", 0o640, 0); !errors.Is(err, syscall.EWOULDBLOCK) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want EWOULDBLOCK and Canceled", err)
	}
	// Another Dir on the same directory is excluded too: one flock per file.
	other, name, err := OpenParent(filepath.Join(dirPath, "lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Lock(ctx, name, 0o640, 0); !errors.Is(err, syscall.EWOULDBLOCK) {
		t.Fatalf("another Dir: err = %v, want EWOULDBLOCK", err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	unlock, err = d.Lock(ctx, "lock", 0o640, 0)
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	unlock()
}
