package handler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Helper processes: the test binary re-executed with HANDLER_TEST_HELPER
// set acts as a second handler (flock and rename are per process, so
// goroutines alone would not prove the locking).
func TestMain(m *testing.M) {
	if mode := os.Getenv("HANDLER_TEST_HELPER"); mode != "" {
		os.Exit(helperMain(mode, os.Args[len(os.Args)-3:]))
	}
	os.Exit(m.Run())
}

func helperMain(mode string, args []string) int {
	dir, host, svc := args[0], args[1], args[2]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := Store{Dir: dir}
	switch mode {
	case "reserve":
		b := Budget{Max: 3, Window: time.Hour}
		allowed := false
		err := s.Update(ctx, host, svc, func(st *StateFile) error {
			now := time.Now()
			if !b.Check(st.Restarts, now).Allowed {
				return errNoWrite
			}
			allowed = true
			st.Restarts = append(st.Restarts, Record{ID: strconv.Itoa(os.Getpid()), At: now, Source: "event", Outcome: RecordPending})
			return nil
		})
		switch {
		case err == nil && allowed:
			return 0
		case errors.Is(err, errNoWrite):
			return 1
		default:
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	case "churn":
		pad := strings.Repeat("x", 3000)
		for i := 0; i < 100000 && ctx.Err() == nil; i++ {
			err := s.Update(ctx, host, svc, func(st *StateFile) error {
				st.Restarts = append(st.Restarts, Record{ID: strconv.Itoa(i), At: time.Now(), Outcome: RecordOK, Detail: pad})
				if len(st.Restarts) > 20 {
					st.Restarts = st.Restarts[1:]
				}
				return nil
			})
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
		}
		return 0
	case "update":
		err := s.Update(ctx, host, svc, func(st *StateFile) error {
			st.Restarts = append(st.Restarts, Record{ID: "x", At: time.Now(), Outcome: RecordOK})
			return nil
		})
		if err != nil {
			fmt.Println(err)
			return 1
		}
		return 0
	}
	return 3
}

func helperCmd(t *testing.T, exe, mode string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(exe, append([]string{"-test.run=^$"}, args...)...)
	cmd.Env = append(os.Environ(), "HANDLER_TEST_HELPER="+mode)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

func testExe(t *testing.T) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func TestStoreRoundTripAndFileName(t *testing.T) {
	dir := t.TempDir()
	s := Store{Dir: dir}
	ctx := context.Background()
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	err := s.Update(ctx, "web 1", "Worker/Svc;x", func(st *StateFile) error {
		st.Restarts = append(st.Restarts, Record{ID: "a", At: at, Source: "event", Verb: "restart", Outcome: RecordOK})
		st.Episode = &Episode{Opened: at}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Read(ctx, "web 1", "Worker/Svc;x")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Restarts) != 1 || !st.Restarts[0].At.Equal(at) || st.Episode == nil || !st.Episode.Opened.Equal(at) {
		t.Fatalf("round trip lost data: %+v", st)
	}
	// The name stays inside dir and is what Path says.
	p := s.Path("web 1", "Worker/Svc;x")
	if filepath.Dir(p) != dir {
		t.Fatalf("state path %s escapes %s", p, dir)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("state file mode %v is readable by others", fi.Mode())
	}
}

func TestFileBaseDistinctAndSafe(t *testing.T) {
	pairs := [][2]string{
		{"a", "b,c"}, {"a,b", "c"}, {"a", "b"}, {"A", "b"}, {"..", "x"}, {".", "x"}, {"%2E", "x"},
		{"a/b", "c"}, {"a", "b/c"}, {"x", strings.Repeat("s", 300)}, {"x", strings.Repeat("s", 301)},
		{"h", "svc with spaces"}, {"h", "svc_with_spaces"}, {"ünï", "cödé"},
	}
	seen := map[string][2]string{}
	for _, p := range pairs {
		b := fileBase(p[0], p[1])
		if strings.ContainsAny(b, "/\x00") || strings.HasPrefix(b, ".") || len(b) > 200 {
			t.Errorf("fileBase(%q) = %q: unsafe", p, b)
		}
		if other, dup := seen[b]; dup {
			t.Errorf("fileBase(%q) = fileBase(%q) = %q", p, other, b)
		}
		seen[b] = p
	}
}

// TestStoreConcurrentGoroutines: many handlers in one process race to
// reserve; the budget of 3 must hold exactly.
func TestStoreConcurrentGoroutines(t *testing.T) {
	dir := t.TempDir()
	s := Store{Dir: dir, Poll: time.Millisecond}
	b := Budget{Max: 3, Window: time.Hour}
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			err := s.Update(ctx, "h", "s", func(st *StateFile) error {
				if !b.Check(st.Restarts, time.Now()).Allowed {
					return errNoWrite
				}
				st.Restarts = append(st.Restarts, Record{ID: newID(), At: time.Now(), Outcome: RecordPending})
				return nil
			})
			if err == nil {
				mu.Lock()
				granted++
				mu.Unlock()
			} else if !errors.Is(err, errNoWrite) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	st, err := s.Read(context.Background(), "h", "s")
	if err != nil {
		t.Fatal(err)
	}
	if granted != 3 || len(st.Restarts) != 3 {
		t.Fatalf("granted %d, recorded %d; want exactly 3 of each", granted, len(st.Restarts))
	}
}

// TestStoreConcurrentProcesses: the same race between real processes.
func TestStoreConcurrentProcesses(t *testing.T) {
	dir := t.TempDir()
	exe := testExe(t)
	const n = 6
	cmds := make([]*exec.Cmd, n)
	for i := range cmds {
		cmds[i] = helperCmd(t, exe, "reserve", dir, "h", "s")
		cmds[i].Stderr = os.Stderr
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	granted, refused := 0, 0
	for _, c := range cmds {
		err := c.Wait()
		switch c.ProcessState.ExitCode() {
		case 0:
			granted++
		case 1:
			refused++
		default:
			t.Errorf("helper failed: %v", err)
		}
	}
	st, err := Store{Dir: dir}.Read(context.Background(), "h", "s")
	if err != nil {
		t.Fatal(err)
	}
	if granted != 3 || refused != n-3 || len(st.Restarts) != 3 {
		t.Fatalf("granted %d refused %d recorded %d; want 3, %d, 3", granted, refused, len(st.Restarts), n-3)
	}
}

// TestStoreSIGKILL kills a process that rewrites the state as fast as it
// can, at random moments: the file must always parse, and the temp files
// a kill leaves behind are removed by the next update.
func TestStoreSIGKILL(t *testing.T) {
	dir := t.TempDir()
	exe := testExe(t)
	s := Store{Dir: dir}
	writes := 0
	for i := 0; i < 12; i++ {
		cmd := helperCmd(t, exe, "churn", dir, "h", "s")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(20+rand.IntN(80)) * time.Millisecond)
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		if stderr.Len() > 0 {
			t.Fatalf("helper: %s", stderr.String())
		}
		_, err := readState(s.Path("h", "s"), "h", "s")
		if err != nil {
			t.Fatalf("after SIGKILL #%d: %v", i, err)
		}
		if _, err := os.Stat(s.Path("h", "s")); err == nil {
			writes++
		}
	}
	if writes == 0 {
		t.Fatal("the helper never managed a write: the test proved nothing")
	}
	if err := s.Update(context.Background(), "h", "s", func(*StateFile) error { return nil }); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*.tmp-*"))
	if len(left) != 0 {
		t.Fatalf("temp files left after an update: %v", left)
	}
}

func TestStoreCorrupt(t *testing.T) {
	tests := []struct{ name, content string }{
		{"truncated", `{"version":1,"host":"h","service":"s","restarts":[{"id":"a"`},
		{"garbage", "\x00\x01 not json"},
		{"empty", ""},
		{"other version", `{"version":2,"host":"h","service":"s","restarts":[]}`},
		{"other service", `{"version":1,"host":"h","service":"t","restarts":[]}`},
		{"unknown field", `{"version":1,"host":"h","service":"s","restarts":[],"budget_disabled":true}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Store{Dir: t.TempDir()}
			p := s.Path("h", "s")
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			called := false
			err := s.Update(context.Background(), "h", "s", func(*StateFile) error { called = true; return nil })
			if !errors.Is(err, ErrStateCorrupt) {
				t.Fatalf("err = %v, want ErrStateCorrupt", err)
			}
			if called {
				t.Fatal("fn called on a corrupt state")
			}
			b, _ := os.ReadFile(p)
			if string(b) != tt.content {
				t.Fatal("a corrupt file was modified: the evidence is gone")
			}
		})
	}
}

// TestStoreStateNotARegularFile: a FIFO where the state file should be
// fails closed at once instead of blocking the handler past its deadline
// (the context bounds the lock wait, not a read).
func TestStoreStateNotARegularFile(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	if err := syscall.Mkfifo(s.Path("h", "s"), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- s.Update(context.Background(), "h", "s", func(*StateFile) error { return nil })
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrStateCorrupt) {
			t.Fatalf("err = %v, want ErrStateCorrupt", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Update still blocked on a FIFO state file after 10s")
	}
}

func TestStoreUnusableDir(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o600)
	for _, dir := range []string{"", filepath.Join(base, "missing"), file} {
		err := Store{Dir: dir}.Update(context.Background(), "h", "s", func(*StateFile) error { return nil })
		if err == nil {
			t.Errorf("Store{%q}.Update succeeded", dir)
		}
	}
}

// TestStoreReadOnlyDir: a directory the handler cannot write must fail
// the update (the caller then fails closed). As root, permission bits do
// not bind, so the update runs in a helper process as nobody.
func TestStoreReadOnlyDir(t *testing.T) {
	for _, prepared := range []bool{false, true} {
		t.Run(fmt.Sprintf("existing_state_%v", prepared), func(t *testing.T) {
			dir := sharedTempDir(t)
			s := Store{Dir: dir}
			if prepared {
				// Lock and state usable, only the temp file cannot be made.
				if err := s.Update(context.Background(), "h", "s", func(*StateFile) error { return nil }); err != nil {
					t.Fatal(err)
				}
				os.Chmod(filepath.Join(dir, fileBase("h", "s")+".lock"), 0o666)
				os.Chmod(s.Path("h", "s"), 0o644)
			}
			before, _ := os.ReadFile(s.Path("h", "s"))
			if err := os.Chmod(dir, 0o555); err != nil {
				t.Fatal(err)
			}
			defer os.Chmod(dir, 0o755)
			if os.Geteuid() != 0 {
				err := s.Update(context.Background(), "h", "s", func(st *StateFile) error { return nil })
				if err == nil {
					t.Fatal("update in a read-only directory succeeded")
				}
			} else {
				out, code := runAsNobody(t, "update", dir, "h", "s")
				if code != 1 || !strings.Contains(out, "permission denied") {
					t.Fatalf("as nobody: exit %d, output %q; want exit 1 and permission denied", code, out)
				}
			}
			after, _ := os.ReadFile(s.Path("h", "s"))
			if string(before) != string(after) {
				t.Fatal("state changed")
			}
		})
	}
}

// sharedTempDir is a temp dir that other users can traverse (t.TempDir's
// parents are 0700).
func sharedTempDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "handler-ro-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(d, 0o755)
	t.Cleanup(func() { os.Chmod(d, 0o755); os.RemoveAll(d) })
	return d
}

// runAsNobody copies the test binary where nobody can run it and runs a
// helper mode as uid/gid 65534.
func runAsNobody(t *testing.T, mode string, args ...string) (string, int) {
	t.Helper()
	bindir := sharedTempDir(t)
	exe := filepath.Join(bindir, "handler.test")
	src, err := os.Open(testExe(t))
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.OpenFile(exe, os.O_WRONLY|os.O_CREATE, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	src.Close()
	dst.Close()
	cmd := helperCmd(t, exe, mode, args...)
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: 65534, Gid: 65534}
	cmd.Dir = bindir
	out, _ := cmd.CombinedOutput()
	return string(out), cmd.ProcessState.ExitCode()
}

// TestStoreLockTimeout: a lock held elsewhere makes Update give up when
// its context ends, with a message saying so, instead of hanging.
func TestStoreLockTimeout(t *testing.T) {
	dir := t.TempDir()
	s := Store{Dir: dir}
	f, err := os.OpenFile(filepath.Join(dir, fileBase("h", "s")+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err = s.Update(ctx, "h", "s", func(*StateFile) error { t.Error("fn called without the lock"); return nil })
	if err == nil || !strings.Contains(err.Error(), "held by another handler") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}
