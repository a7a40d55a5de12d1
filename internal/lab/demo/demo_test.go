package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/testutil"
	"github.com/selfheal/selfheal/internal/proc"
)

// demoPkg is this command, built as `make demo` builds it.
const demoPkg = "internal/lab/demo"

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.Cleanup()
	os.Exit(code)
}

// binDir puts the four real binaries side by side, as `make build` does,
// in a bin/ next to the repository's nagios-config/ (demo --nagios reads
// the sample definitions from there).
func binDir(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := os.Symlink(filepath.Join(testutil.ModuleRoot(t), "nagios-config"), filepath.Join(root, "nagios-config")); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "bin")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range rig.Binaries {
		if err := os.Symlink(testutil.Binary(t, b), filepath.Join(dir, b)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// sandbox is where the demo may write: TMPDIR, HOME and the working
// directory each point at an empty directory of the test's own.
type sandbox struct{ tmp, home, cwd string }

func newSandbox(t *testing.T) sandbox {
	root := t.TempDir()
	s := sandbox{filepath.Join(root, "tmp"), filepath.Join(root, "home"), filepath.Join(root, "cwd")}
	for _, d := range []string{s.tmp, s.home, s.cwd} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func (s sandbox) command(ctx context.Context, bin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = s.cwd
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.home, "TMPDIR=" + s.tmp}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// assertClean checks the demo left nothing: no file in its sandbox (the
// temp dir is removed) and no process whose command line names it.
func (s sandbox) assertClean(t *testing.T) {
	t.Helper()
	for _, d := range []string{s.tmp, s.home, s.cwd} {
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			t.Errorf("the demo left %s behind", filepath.Join(d, e.Name()))
		}
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(s.tmp)) {
			if pid, _ := strconv.Atoi(e.Name()); proc.Alive(pid) { // a zombie has exited
				t.Errorf("process %s left behind: %s", e.Name(), bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
			}
		}
	}
}

// summaryLine returns the value of one "  name   value" summary line.
func summaryLine(t *testing.T, out, name string) string {
	t.Helper()
	_, after, ok := strings.Cut(out, "== Summary\n")
	if !ok {
		t.Fatalf("no summary in the output:\n%s", out)
	}
	for _, l := range strings.Split(after, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), name); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %q in the summary:\n%s", name, after)
	return ""
}

// runDemo runs the demo with extra args in a sandbox and checks
// the outcomes every story must have.
func runDemo(t *testing.T, timeout time.Duration, extra ...string) string {
	t.Helper()
	bins := binDir(t)
	sb := newSandbox(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := sb.command(ctx, testutil.Program(t, demoPkg), append([]string{"--bin-dir", bins}, extra...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	text := out.String()
	if err != nil {
		t.Fatalf("the demo failed: %v\n%s", err, text)
	}
	healed := summaryLine(t, text, "healed")
	m := regexp.MustCompile(`^pid (\d+) -> pid (\d+), WORKER OK`).FindStringSubmatch(healed)
	if m == nil || m[1] == m[2] {
		t.Errorf("healed: %q, want a new pid and OK", healed)
	}
	if v := summaryLine(t, text, "before the fault"); !strings.HasPrefix(v, "WORKER OK") {
		t.Errorf("before the fault: %q", v)
	}
	if v := summaryLine(t, text, "during the hang"); !strings.HasPrefix(v, "WORKER CRITICAL") {
		t.Errorf("during the hang: %q", v)
	}
	if v := summaryLine(t, text, "flapping"); !strings.Contains(v, "3 restarts in the budget, then healing stopped") ||
		!strings.Contains(v, "budget spent") {
		t.Errorf("flapping: %q, want the budget spent", v)
	}
	// The agent said so: its last audit line is the refusal.
	if !regexp.MustCompile(`"outcome":"spent"`).MatchString(text[strings.LastIndex(text, "audit log"):]) {
		t.Errorf("the story does not end with the agent's spent:\n%s", text)
	}
	if v := summaryLine(t, text, "left behind"); !strings.HasPrefix(v, "nothing") {
		t.Errorf("left behind: %q", v)
	}
	sb.assertClean(t)
	return text
}

// TestMakeDemoNagios runs what `make demo-nagios` runs, under a real
// Nagios Core 4, and checks that Nagios itself recorded the story.
func TestMakeDemoNagios(t *testing.T) {
	testutil.LookTool(t, "nagios4", "/usr/sbin/nagios4")
	text := runDemo(t, 4*time.Minute, "--nagios")
	for _, want := range []string{
		"nagios.log: SERVICE ALERT: worker1;worker;CRITICAL;HARD;3;WORKER CRITICAL",
		"nagios.log: SERVICE EVENT HANDLER: worker1;worker;CRITICAL;HARD;3;selfheal-handle-worker",
		"handle_worker: auto-restart ok",
		"nagios.log: SERVICE ALERT: worker1;worker;OK;HARD;3;WORKER OK",
		"tail -f ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the Nagios story lacks %q:\n%s", want, text)
		}
	}
}

// TestMakeDemo runs what `make demo` runs, with the real binaries, and
// checks the story's outcomes from its narration.
func TestMakeDemo(t *testing.T) {
	text := runDemo(t, 3*time.Minute)
	// Every step is narrated with its timing, and the plugin lines shown.
	for _, want := range []string{"[  0.0s] == 1. Set up", "== 6. check_worker: healthy again",
		"$ check_worker -H 127.0.0.1", "(exit 2 = CRITICAL,", "handle_worker event CRITICAL HARD 3 127.0.0.1 localhost demo",
		"handle_worker: localhost/demo CRITICAL HARD 3: restart demo"} {
		if !strings.Contains(text, want) {
			t.Errorf("narration lacks %q", want)
		}
	}
	if v := summaryLine(t, text, "degraded"); !strings.HasPrefix(v, "WORKER WARNING") || !strings.HasSuffix(v, "no restart") {
		t.Errorf("degraded: %q", v)
	}
	if v := summaryLine(t, text, "flapping"); strings.HasSuffix(v, "(exit 0)") {
		t.Errorf("flapping: %q: the refusing handler must exit non-zero", v)
	}
}

// TestDemoInterrupted sends Ctrl-C in the middle of the story: the demo
// stops everything it started and says so.
func TestDemoInterrupted(t *testing.T) {
	sb, _, cmd, stdout := startDemo(t)
	var text strings.Builder
	sc := bufio.NewScanner(stdout)
	sent := false
	for sc.Scan() {
		text.WriteString(sc.Text() + "\n")
		// The hang check takes 2 s: interrupt while it runs, with the
		// worker and the listener both up.
		if !sent && strings.Contains(sc.Text(), "fault hang injected") {
			sent = true
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
		}
	}
	err := cmd.Wait()
	if !sent {
		t.Fatalf("the story never reached the hang:\n%s", text.String())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != ExitInterrupted {
		t.Fatalf("interrupted demo: %v, want exit %d\n%s", err, ExitInterrupted, text.String())
	}
	if !strings.Contains(text.String(), "interrupted; everything it started was stopped") {
		t.Errorf("no interruption notice:\n%s", text.String())
	}
	sb.assertClean(t)
}

func TestDemoWithoutBinaries(t *testing.T) {
	var out bytes.Buffer
	code := Run(context.Background(), Config{BinDir: t.TempDir()}, Deps{Out: &out})
	if code != ExitFailed || !strings.Contains(out.String(), "make build") {
		t.Fatalf("exit %d, output %q", code, out.String())
	}
}

// TestDemoBrokenPipe is `make demo | head`: the reader goes away early, and
// the demo must still stop everything it started.
func TestDemoBrokenPipe(t *testing.T) {
	sb, ctx, cmd, stdout := startDemo(t)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		// Leave once the worker and the listener are both running.
		if strings.Contains(sc.Text(), "is listening on") {
			break
		}
	}
	stdout.Close()
	err := cmd.Wait()
	if ctx.Err() != nil {
		t.Fatalf("the demo did not end after its reader went away: %v", err)
	}
	if err == nil {
		t.Fatal("the demo claimed success with nobody reading its story")
	}
	sb.assertClean(t)
}

// startDemo starts the real demo in a sandbox with its
// stdout piped to the test; the context bounds the whole run.
func startDemo(t *testing.T) (sandbox, context.Context, *exec.Cmd, io.ReadCloser) {
	t.Helper()
	bins := binDir(t)
	sb := newSandbox(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd := sb.command(ctx, testutil.Program(t, demoPkg), "--bin-dir", bins)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return sb, ctx, cmd, stdout
}
