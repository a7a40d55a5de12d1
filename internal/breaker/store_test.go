package breaker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/fsutil"
)

func openStore(t testing.TB, dir string, threshold int) Store {
	t.Helper()
	d, err := fsutil.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return Store{Dir: d, Name: "breaker", Config: Config{Threshold: threshold}, Poll: time.Millisecond}
}

// TestStorePersists: the state is in the file, 0600, and a new Store on
// the same directory continues it; Try writes nothing.
func TestStorePersists(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, 1)
	ctx := t.Context()
	if v, err := s.Try(ctx, t0, "never-asked", "1"); err != nil || !v.Allow || v.Count != 1 {
		t.Fatalf("try on nothing: %+v %v", v, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "breaker.json")); !os.IsNotExist(err) {
		t.Fatalf("try wrote the file: %v", err)
	}
	if v, err := s.Admit(ctx, t0, "a", "1"); err != nil || !v.Allow {
		t.Fatalf("a: %+v %v", v, err)
	}
	fi, err := os.Stat(filepath.Join(dir, "breaker.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v", fi, err)
	}
	s2 := openStore(t, dir, 1)
	if v, err := s2.Admit(ctx, t0.Add(time.Second), "b", "1"); err != nil || v.Allow || v.State != Open || v.Count != 2 {
		t.Fatalf("b, from another Store: %+v %v", v, err)
	}
	if v, err := s.Try(ctx, t0.Add(time.Second), "never-asked", "1"); err != nil || v.Allow || v.State != Open || v.Count != 3 {
		t.Fatalf("try while open: %+v %v", v, err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "breaker.json"))
	if !strings.Contains(string(b), `"state":"open"`) || !strings.Contains(string(b), `"version":1`) {
		t.Fatalf("state file: %s", b)
	}
	// The temp file of a writer killed under the lock is removed.
	os.WriteFile(filepath.Join(dir, "breaker.json.tmp-0"), nil, 0o600)
	if _, err := s.Admit(ctx, t0.Add(2*time.Second), "a", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "breaker.json.tmp-0")); !os.IsNotExist(err) {
		t.Fatal("temp file left")
	}
}

// TestStoreCorrupt: a file that is not a breaker's state is reported as
// ErrCorrupt by Admit and Try and left as it is: the breaker neither
// opens nor closes by itself.
func TestStoreCorrupt(t *testing.T) {
	for name, content := range map[string]string{
		"not json":      "{\"version\":1,\"state\":\"open\"",
		"wrong version": `{"version":9,"state":"closed"}`,
		"unknown state": `{"version":1,"state":"half"}`,
		"open, no time": `{"version":1,"state":"open"}`,
		"unknown field": `{"version":1,"state":"closed","extra":1}`,
		"trial no time": `{"version":1,"state":"trial","since":"2025-11-24T22:40:00Z"}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "breaker.json")
			os.WriteFile(p, []byte(content), 0o600)
			s := openStore(t, dir, 3)
			if v, err := s.Admit(t.Context(), t0, "a", "1"); !errors.Is(err, ErrCorrupt) || v.Allow || !strings.Contains(err.Error(), "fix or remove it") {
				t.Fatalf("admit: %+v %v", v, err)
			}
			if _, err := s.Try(t.Context(), t0, "never-asked", "1"); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("try: %v", err)
			}
			if b, _ := os.ReadFile(p); string(b) != content {
				t.Fatalf("the file was changed: %s", b)
			}
		})
	}
	// A symlink planted as the state file is not followed.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "elsewhere"), []byte(`{"version":1,"state":"closed"}`), 0o600)
	os.Symlink("elsewhere", filepath.Join(dir, "breaker.json"))
	if _, err := openStore(t, dir, 3).Admit(t.Context(), t0, "a", "1"); !errors.Is(err, fsutil.ErrSymlink) {
		t.Fatalf("symlink: %v", err)
	}
	// A config no breaker can use is an error, not a guess.
	if _, err := openStore(t, t.TempDir(), 0).Admit(t.Context(), t0, "a", "1"); err == nil {
		t.Fatal("threshold 0 accepted")
	}
}

// TestStoreLockBounded: a lock held elsewhere makes Admit wait only as
// long as its context.
func TestStoreLockBounded(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, 3)
	unlock, err := s.Dir.Lock(t.Context(), "breaker.lock", 0o600, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := s.Admit(ctx, t0, "a", "1"); err == nil || !strings.Contains(err.Error(), "still held") || time.Since(start) > 5*time.Second {
		t.Fatalf("admit under a held lock: %v after %s", err, time.Since(start))
	}
}

// TestStoreConcurrent: 24 goroutines, each a distinct key, against
// Threshold 5: exactly 5 are admitted, and the file counts all 24.
func TestStoreConcurrent(t *testing.T) {
	dir := t.TempDir()
	var allowed atomic.Int32
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := openStore(t, dir, 5) // a descriptor of its own, as another process would
			v, err := s.Admit(t.Context(), t0, fmt.Sprintf("k%d", i), "f")
			if err != nil {
				t.Error(err)
			}
			if v.Allow {
				allowed.Add(1)
			}
		}()
	}
	wg.Wait()
	v, err := openStore(t, dir, 5).Try(t.Context(), t0, "never-asked", "1")
	if allowed.Load() != 5 || err != nil || v.Count != 25 || v.State != Open {
		t.Fatalf("%d admitted, try %+v %v", allowed.Load(), v, err)
	}
}

// TestStoreTwoProcesses: this test binary and a child of it admit 10
// keys each at once against Threshold 5: exactly 5 run between them.
func TestStoreTwoProcesses(t *testing.T) {
	if dir := os.Getenv("BREAKER_HELPER_DIR"); dir != "" {
		fmt.Println("admitted", admitMany(t, dir, "child"))
		return
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestStoreTwoProcesses$", "-test.count=1")
	cmd.Env = append(os.Environ(), "BREAKER_HELPER_DIR="+dir)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	mine := admitMany(t, dir, "parent")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v\n%s", err, out.String())
	}
	var theirs int
	for _, l := range strings.Split(out.String(), "\n") {
		if n, ok := strings.CutPrefix(l, "admitted "); ok {
			theirs, _ = strconv.Atoi(n)
		}
	}
	v, err := openStore(t, dir, 5).Try(t.Context(), t0, "never-asked", "1")
	if mine+theirs != 5 || err != nil || v.Count != 21 {
		t.Fatalf("admitted %d here and %d in the child; try %+v %v\n%s", mine, theirs, v, err, out.String())
	}
}

func admitMany(t *testing.T, dir, prefix string) int {
	n := 0
	for i := range 10 {
		v, err := openStore(t, dir, 5).Admit(t.Context(), t0, fmt.Sprintf("%s%d", prefix, i), "f")
		if err != nil {
			t.Fatal(err)
		}
		if v.Allow {
			n++
		}
	}
	return n
}

// TestMemory: the in-memory breaker answers as the file one does, writes
// the file back once it opens (so status tools and the next start see
// it), and starts from what the file held.
func TestMemory(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)
	m := &Memory{Store: openStore(t, dir, 2), Flush: time.Hour}
	for i, want := range []bool{true, true, false} {
		v, err := m.Admit(context.Background(), t0, fmt.Sprint("s", i), "1")
		if err != nil || v.Allow != want {
			t.Fatalf("admit %d: %+v %v, want allow %v", i, v, err, want)
		}
	}
	// Open: written at once, although Flush is an hour.
	v, err := openStore(t, dir, 2).Current(context.Background(), t0)
	if err != nil || v.State != Open || v.Count != 3 {
		t.Fatalf("the file after opening: %+v %v", v, err)
	}
	// A new process starts from the file: still open.
	m2 := &Memory{Store: openStore(t, dir, 2), Flush: time.Hour}
	if v, err := m2.Admit(context.Background(), t0.Add(time.Second), "s9", "1"); err != nil || v.Allow || v.Count != 4 {
		t.Fatalf("a new process: %+v %v", v, err)
	}
}

// TestEmptyFileAndRemoval: an empty file (a replacement a power loss cut)
// reads as a closed breaker, and a serve agent's breaker starts over when
// an operator removes the file to close it.
func TestEmptyFileAndRemoval(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 12, 1, 21, 0, 0, 0, time.UTC)
	if err := os.WriteFile(filepath.Join(dir, "breaker.json"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if v, err := openStore(t, dir, 1).Admit(context.Background(), t0, "a", "1"); err != nil || !v.Allow || v.State != Closed {
		t.Fatalf("an empty file: %+v %v", v, err)
	}
	m := &Memory{Store: openStore(t, dir, 1), Flush: time.Hour}
	for _, k := range []string{"b", "c"} {
		if _, err := m.Admit(context.Background(), t0, k, "1"); err != nil {
			t.Fatal(err)
		}
	}
	if v, _ := m.Admit(context.Background(), t0, "d", "1"); v.Allow {
		t.Fatalf("the breaker did not open: %+v", v)
	}
	if err := os.Remove(filepath.Join(dir, "breaker.json")); err != nil {
		t.Fatal(err)
	}
	if v, err := m.Admit(context.Background(), t0, "e", "1"); err != nil || !v.Allow || v.Count != 1 {
		t.Fatalf("after the file was removed: %+v %v", v, err)
	}
}
