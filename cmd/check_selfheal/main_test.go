package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/rig/rigtest"
	"github.com/selfheal/selfheal/internal/lab/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.Cleanup()
	os.Exit(code)
}

func runIt(args ...string) (int, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String()
}

// TestOwnFailuresAreUnknown: every failure of the check itself is
// UNKNOWN (3) with one line, never CRITICAL; -h and -V exit 3 too.
func TestOwnFailuresAreUnknown(t *testing.T) {
	dir := t.TempDir()
	loose := filepath.Join(dir, "loose.key")
	if err := os.WriteFile(loose, []byte("selfheal-fleet-v1 fleet1 "+strings.Repeat("ab", 32)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{nil, `UNKNOWN - expected one of "agent", "node"`},
		{[]string{"agent"}, "UNKNOWN - missing flags"},
		{[]string{"agent", "-H", "127.0.0.1", "--agent", "web1", "--key-file", filepath.Join(dir, "missing.key")}, "UNKNOWN - key file"},
		{[]string{"agent", "-H", "127.0.0.1", "--agent", "web1", "--key-file", loose}, "UNKNOWN - key file " + loose + " refused"},
		{[]string{"agent", "-H", "10.0.0.1", "--key-file", loose}, "UNKNOWN - -H 10.0.0.1 is an address: give --agent"},
		{[]string{"agent", "-H", "web1", "--agent", "Bad Name", "--key-file", loose}, `UNKNOWN - agent name "bad name"`},
		{[]string{"agent", "-H", "web1", "--key-file", loose, "-w", "abc"}, "UNKNOWN - -w/-c clock offset"},
		{[]string{"agent", "-H", "web1", "--key-file", loose, "--target", "Bad Name"}, `UNKNOWN - --target "Bad Name"`},
		{[]string{"agent", "-H", "web1", "--key-file", loose, "-t", "0"}, `UNKNOWN - timeout "0"`},
		{[]string{"node", "--breaker-threshold", "0"}, "UNKNOWN - breaker threshold 0"},
		{[]string{"node", "--icinga-api", "http://x"}, "UNKNOWN - --icinga-api"},
		{[]string{"node", "--bogus"}, "UNKNOWN - unknown flag --bogus"},
	}
	for _, tt := range tests {
		code, out := runIt(tt.args...)
		if code != 3 || !strings.HasPrefix(out, tt.want) || strings.Count(out, "\n") != 1 {
			t.Errorf("%q: exit %d, %q; want 3 and %q", tt.args, code, out, tt.want)
		}
	}
	for _, a := range [][]string{{"-h"}, {"agent", "-h"}, {"-V"}} {
		if code, out := runIt(a...); code != 3 || out == "" {
			t.Errorf("%q: exit %d %q, want 3 with text", a, code, out)
		}
	}
}

// TestBinaryAgainstAgent: the built plugin, as Nagios runs it from the
// sample command, against a real agent: OK, then CRITICAL once the key is
// wrong, within -t.
func TestBinaryAgainstAgent(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	bin := testutil.Binary(t, "check_selfheal")
	for _, tt := range []struct {
		key  string
		code int
		want string
	}{
		{l.KeyFile, 0, "SELFHEAL OK - agent worker1: worker_listener "},
		{rigtest.OtherKeyFile(t), 2, "SELFHEAL CRITICAL - agent worker1: "},
	} {
		start := time.Now()
		cmd := exec.Command(bin, "agent", "-H", l.Host, "-p", strconv.Itoa(l.Port), "--agent", "WORKER1", "--key-file", tt.key, "-t", "5")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := cmd.ProcessState.ExitCode()
		if err != nil && code < 0 {
			t.Fatal(err)
		}
		if code != tt.code || !strings.HasPrefix(stdout.String(), tt.want) || stderr.Len() > 0 {
			t.Errorf("exit %d, stdout %q, stderr %q; want %d and %q", code, stdout.String(), stderr.String(), tt.code, tt.want)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("took %s", el)
		}
	}
}
