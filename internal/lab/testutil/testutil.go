// Package testutil holds helpers shared by the suite's tests: building the
// real binaries once per test process, and finding external tools (a real
// Nagios, check_http) with a skip that turns into a failure under CI=true.
package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	mu     sync.Mutex
	built  = map[string]string{}
	binDir string
)

// ModuleRoot returns the directory holding go.mod, found by walking up from
// the working directory (go test runs in the package directory).
func ModuleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Binary returns the path of cmd/<name> built as the Makefile builds it
// (static, -trimpath). If SELFHEAL_BIN names a directory that already holds
// the binary (make test builds into bin/ first), that one is used.
func Binary(t testing.TB, name string) string {
	t.Helper()
	if dir := os.Getenv("SELFHEAL_BIN"); dir != "" {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			abs, _ := filepath.Abs(p)
			return abs
		}
	}
	return build(t, name, "./cmd/"+name)
}

// Program returns the path of the command in pkg (a directory relative to
// the module root, such as internal/lab/demo), built once per test run:
// the lab's own commands, which `make build` does not build.
func Program(t testing.TB, pkg string) string {
	t.Helper()
	return build(t, strings.ReplaceAll(pkg, "/", "_"), "./"+pkg)
}

func build(t testing.TB, name, pkg string) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if p, ok := built[name]; ok {
		return p
	}
	if binDir == "" {
		d, err := os.MkdirTemp("", "selfheal-testbin-")
		if err != nil {
			t.Fatal(err)
		}
		binDir = d
	}
	out := filepath.Join(binDir, name)
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = ModuleRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, b)
	}
	built[name] = out
	return out
}

// Cleanup removes binaries built by Binary; call it from TestMain after m.Run.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if binDir != "" {
		os.RemoveAll(binDir)
		binDir = ""
		built = map[string]string{}
	}
}

// InCI reports whether the tests run under CI, where a missing external
// tool is a failure rather than a reason to skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// LookTool finds an external program on PATH or at one of the given
// absolute paths. When it is missing the test is skipped, or failed in CI.
func LookTool(t testing.TB, name string, alternatives ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range alternatives {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	if InCI() {
		t.Fatalf("%s is required under CI=true but was not found", name)
	}
	t.Skipf("%s not installed; skipping (CI=true makes this a failure)", name)
	return ""
}

// Victim writes dir/victim, the file a test plants a symlink to: whatever
// follows the link would change it. AssertVictim checks it did not.
func Victim(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "victim")
	if err := os.WriteFile(p, []byte(victimText), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const victimText = "victim\n"

// AssertVictim fails the test if the file Victim wrote was changed.
func AssertVictim(t testing.TB, p string) {
	t.Helper()
	if b, err := os.ReadFile(p); err != nil || string(b) != victimText {
		t.Fatalf("the symlink's target was written: %q %v", b, err)
	}
}
