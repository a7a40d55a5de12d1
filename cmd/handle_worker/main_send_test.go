package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestSendOutput: send prints its human lines on stdout; the JSON log line
// goes to stderr only when stderr is not a terminal, or with --json. The
// terminal is a real pty, made by util-linux script(1) where installed.
func TestSendOutput(t *testing.T) {
	s := newSetup(t)
	args := []string{"send", "ping", "--host", "127.0.0.1", "--port", itoa(s.l.Port), "--target", "demo", "--key-file", s.l.KeyFile,
		"--state-dir", s.state, "--hostname", "web1"}
	// A pipe (as an engine or `2>file` gives): the JSON line is there.
	o := runBin(t, nil, s.bin, args...)
	if o.code != 0 || !strings.HasPrefix(o.stdout, "ping demo on "+s.l.Addr()+" ok") || strings.Contains(o.stdout, `"prog"`) {
		t.Fatalf("stdout: %d %q", o.code, o.stdout)
	}
	if !strings.HasPrefix(o.stderr, `{"level":"info","prog":"handle_worker"`) || strings.Count(o.stderr, "\n") != 1 {
		t.Fatalf("stderr to a pipe: %q, want one JSON line", o.stderr)
	}
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("no script(1) for a pty: the terminal case is TestWantJSON's")
	}
	tty := func(extra ...string) string {
		t.Helper()
		cmd := append([]string{s.bin}, append(args, extra...)...)
		o := runBin(t, nil, script, "-qec", strings.Join(cmd, " "), "/dev/null")
		if o.code != 0 {
			t.Fatalf("script: exit %d %q %q", o.code, o.stdout, o.stderr)
		}
		return strings.ReplaceAll(o.stdout, "\r\n", "\n")
	}
	if out := tty(); strings.Contains(out, `"prog"`) || !strings.HasPrefix(out, "ping demo on "+s.l.Addr()+" ok") {
		t.Fatalf("at a terminal: %q, want the human lines only", out)
	}
	if out := tty("--json"); strings.Count(out, `"prog":"handle_worker"`) != 1 || !strings.Contains(out, "ping demo on "+s.l.Addr()+" ok") {
		t.Fatalf("at a terminal with --json: %q, want the human line and the JSON line", out)
	}
}
