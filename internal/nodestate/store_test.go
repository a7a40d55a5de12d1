package nodestate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/fsutil"
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
	s := Store{Dir: dir, Trust: fsutil.User(os.Getuid())}
	rec := func(i int, summary string) Record {
		return Record{Host: host, Service: svc, At: time.Now(), Source: "event", Verb: "restart", Agent: "web1",
			Fault: strconv.Itoa(os.Getpid()), Result: "healed", Attempts: i, Summary: summary}
	}
	switch mode {
	case "race":
		for i := 1; i <= 50; i++ {
			if err := s.Write(ctx, rec(i, "race")); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
		}
		return 0
	case "churn":
		pad := strings.Repeat("x", 3000)
		for i := 0; i < 100000 && ctx.Err() == nil; i++ {
			if err := s.Write(ctx, rec(i, pad)); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 2
			}
		}
		return 0
	case "write":
		if err := s.Write(ctx, rec(1, "x")); err != nil {
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

// stateDir is a temp dir the trust rule accepts as root's state dir:
// t.TempDir's own is 0755.
func stateDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if err := os.Chmod(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

func testExe(t *testing.T) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func TestStoreRoundTripAndFileName(t *testing.T) {
	dir := stateDir(t)
	s := Store{Dir: dir}
	ctx := context.Background()
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	if rec, err := s.Read("web 1", "Worker/Svc;x"); rec != nil || err != nil {
		t.Fatalf("no record yet: got %+v, %v", rec, err)
	}
	want := Record{Host: "web 1", Service: "Worker/Svc;x", At: at, Source: "event", Verb: "restart", Agent: "web1",
		Fault: "42", Result: "healed", Outcome: "ok", Origin: "run",
		Budget: &RecordBudget{Used: 1, Max: 3, WindowS: 3600}, Attempts: 2, Summary: "restart demo ok",
		Comments: []Written{{Key: "auto-restart ok|42", Name: "web 1!Worker/Svc;x!abc", At: at}},
		Pending:  []Pending{{Cmd: "DEL_SVC_COMMENT;old", Since: at, Tries: 1, Error: "timeout"}}}
	if err := s.Write(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := s.Read("web 1", "Worker/Svc;x")
	if err != nil {
		t.Fatal(err)
	}
	want.Version = stateVersion
	if got == nil || !got.At.Equal(at) || got.Budget == nil || *got.Budget != *want.Budget {
		t.Fatalf("round trip lost data: %+v", got)
	}
	got.At, got.Budget, want.At, want.Budget = at, nil, at, nil
	if !reflect.DeepEqual(*got, want) {
		t.Fatalf("round trip: got %+v, want %+v", *got, want)
	}
	// The name stays inside dir and is what Path says.
	p := s.Path("web 1", "Worker/Svc;x")
	if filepath.Dir(p) != dir {
		t.Fatalf("state path %s escapes %s", p, dir)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
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

// TestStoreConcurrentProcesses: handlers on one monitoring node writing
// the same record at once always leave one whole record of one of them,
// and no temp files once a write has ended.
func TestStoreConcurrentProcesses(t *testing.T) {
	dir := stateDir(t)
	exe := testExe(t)
	const n = 6
	cmds := make([]*exec.Cmd, n)
	pids := map[string]bool{}
	for i := range cmds {
		cmds[i] = helperCmd(t, exe, "race", dir, "h", "s")
		cmds[i].Stderr = os.Stderr
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
		pids[strconv.Itoa(cmds[i].Process.Pid)] = true
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Errorf("helper failed: %v", err)
		}
	}
	rec, err := Store{Dir: dir}.Read("h", "s")
	if err != nil {
		t.Fatal(err)
	}
	if rec == nil || !pids[rec.Fault] || rec.Attempts != 50 {
		t.Fatalf("record %+v is not one writer's last", rec)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp-*")); len(left) != 0 {
		t.Fatalf("temp files left: %v", left)
	}
}

// TestStoreSIGKILL kills a process that rewrites the state as fast as it
// can, at random moments: the file must always parse, and the temp files
// a kill leaves behind are removed by the next update.
func TestStoreSIGKILL(t *testing.T) {
	dir := stateDir(t)
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
		_, err := s.Read("h", "s")
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
	if err := s.Write(context.Background(), Record{Host: "h", Service: "s"}); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*.tmp-*"))
	if len(left) != 0 {
		t.Fatalf("temp files left after an update: %v", left)
	}
}

// TestStoreCorrupt: an unreadable record is reported, never modified by
// a read, and replaced by the next write (nothing depends on it).
func TestStoreCorrupt(t *testing.T) {
	tests := []struct{ name, content string }{
		{"truncated", `{"version":2,"host":"h","service":"s","result":"hea`},
		{"garbage", "\x00\x01 not json"},
		{"empty", ""},
		{"other version", `{"version":1,"host":"h","service":"s","restarts":[]}`},
		{"other service", `{"version":2,"host":"h","service":"t","result":"healed"}`},
		{"unknown field", `{"version":2,"host":"h","service":"s","result":"healed","budget_disabled":true}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Store{Dir: stateDir(t)}
			p := s.Path("h", "s")
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Read("h", "s"); !errors.Is(err, ErrStateCorrupt) {
				t.Fatalf("err = %v, want ErrStateCorrupt", err)
			}
			if b, _ := os.ReadFile(p); string(b) != tt.content {
				t.Fatal("a read modified the file")
			}
			if err := s.Write(context.Background(), Record{Host: "h", Service: "s", Result: "healed"}); err != nil {
				t.Fatal(err)
			}
			if rec, err := s.Read("h", "s"); err != nil || rec.Result != "healed" {
				t.Fatalf("after a write: %+v, %v", rec, err)
			}
		})
	}
}

// TestStoreStateNotARegularFile: a FIFO where the record should be is
// reported at once instead of blocking the handler past its deadline, and
// a write replaces it.
func TestStoreStateNotARegularFile(t *testing.T) {
	s := Store{Dir: stateDir(t)}
	if err := syscall.Mkfifo(s.Path("h", "s"), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Read("h", "s")
		if errors.Is(err, ErrStateCorrupt) {
			err = s.Write(context.Background(), Record{Host: "h", Service: "s"})
		} else {
			err = fmt.Errorf("read: %v, want ErrStateCorrupt", err)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still blocked on a FIFO state file after 10s")
	}
	if fi, err := os.Lstat(s.Path("h", "s")); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("the FIFO was not replaced: %v %v", fi, err)
	}
}

func TestStoreUnusableDir(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o600)
	for _, dir := range []string{"", filepath.Join(base, "missing"), file} {
		if err := (Store{Dir: dir}).Write(context.Background(), Record{Host: "h", Service: "s"}); err == nil {
			t.Errorf("Store{%q}.Write succeeded", dir)
		}
		if _, err := (Store{Dir: dir}).Read("h", "s"); err == nil {
			t.Errorf("Store{%q}.Read succeeded", dir)
		}
	}
}

// TestStoreReadOnlyDir: a state the handler cannot write fails the write
// (the caller logs it and goes on), and leaves the record as it was. As
// root, permission bits do not bind, so the update runs in a helper
// process as nobody. A directory that is not the handler's own 0700 one
// is refused by the trust rule before anything is tried, with the fix; in
// its own directory, a lock it cannot open is "permission denied".
func TestStoreReadOnlyDir(t *testing.T) {
	self := fsutil.User(os.Getuid())
	for _, prepared := range []bool{false, true} {
		t.Run(fmt.Sprintf("not_its_own/existing_state_%v", prepared), func(t *testing.T) {
			dir := sharedTempDir(t)
			s := Store{Dir: dir, Trust: self}
			if prepared {
				// Lock and state usable, only the directory is not.
				os.Chmod(dir, 0o700)
				if err := s.Write(context.Background(), Record{Host: "h", Service: "s"}); err != nil {
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
			var out string
			if os.Geteuid() != 0 {
				err := s.Write(context.Background(), Record{Host: "h", Service: "s", Result: "x"})
				if err == nil {
					t.Fatal("write in a read-only directory succeeded")
				}
				out = err.Error()
			} else {
				var code int
				out, code = runAsNobody(t, "write", dir, "h", "s")
				if code != 1 || !strings.Contains(out, "owned by uid 0 (root), not by nobody (uid 65534)") ||
					!strings.Contains(out, "run chown nobody "+dir+" && chmod 700 "+dir) {
					t.Fatalf("as nobody: exit %d, output %q; want exit 1 and the owner refused with the fix", code, out)
				}
			}
			if !strings.Contains(out, "state directory "+dir+" refused: ") || !strings.Contains(out, "has mode 0555, not 0700") {
				t.Fatalf("refusal %q does not name the directory and its mode", out)
			}
			after, _ := os.ReadFile(s.Path("h", "s"))
			if string(before) != string(after) {
				t.Fatal("state changed")
			}
		})
	}
	t.Run("its_own/lock_not_writable", func(t *testing.T) {
		dir := sharedTempDir(t)
		os.Chmod(dir, 0o700)
		owner := os.Getuid()
		if owner == 0 {
			owner = 65534 // the helper's user
			if err := os.Chown(dir, owner, owner); err != nil {
				t.Fatal(err)
			}
		}
		s := Store{Dir: dir, Trust: fsutil.Trust{UID: owner}}
		if err := s.Write(context.Background(), Record{Host: "h", Service: "s"}); err != nil {
			t.Fatal(err)
		}
		lock := filepath.Join(dir, fileBase("h", "s")+".lock")
		os.Chown(lock, owner, owner)
		os.Chmod(lock, 0o400) // its owner cannot open it for writing
		before, _ := os.ReadFile(s.Path("h", "s"))
		if os.Geteuid() != 0 {
			if err := s.Write(context.Background(), Record{Host: "h", Service: "s", Result: "x"}); err == nil || !strings.Contains(err.Error(), "permission denied") {
				t.Fatalf("write with a lock it cannot open: %v, want permission denied", err)
			}
		} else {
			out, code := runAsNobody(t, "write", dir, "h", "s")
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

// TestStoreLockTimeout: a lock held elsewhere makes Write give up when
// its context ends, with a message saying so, instead of hanging.
func TestStoreLockTimeout(t *testing.T) {
	dir := stateDir(t)
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
	err = s.Write(ctx, Record{Host: "h", Service: "s"})
	if _, serr := os.Stat(s.Path("h", "s")); serr == nil {
		t.Error("written without the lock")
	}
	if err == nil || !strings.Contains(err.Error(), "held by another handler") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}
