package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/testutil"
	"github.com/selfheal/selfheal/internal/status"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.Cleanup()
	os.Exit(code)
}

func serve(t *testing.T, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestBinary runs the real, statically built binary and checks exit codes
// and stdout for every kind of answer.
func TestBinary(t *testing.T) {
	bin := testutil.Binary(t, "check_worker")
	ok := serve(t, `{"status":"ok","message":"all fine"}`)
	warn := serve(t, `{"status":"ok","metrics":[{"name":"queue_depth","value":150}]}`)
	crit := serve(t, `{"status":"critical","message":"db down"}`)
	dep := serve(t, `{"status":"critical","message":"db down","checks":[{"name":"database","status":"critical","scope":"dependency","message":"refused"}]}`)
	okHost, okPort, _ := net.SplitHostPort(ok)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()

	// Accepts and never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()

	// TLS files it cannot read: its own failure, UNKNOWN at once, never a
	// hang past -t (a FIFO) or an out-of-memory crash (exit 2, /dev/zero).
	fifo := filepath.Join(t.TempDir(), "ca.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		args   []string
		code   int
		prefix string // stdout must start with this
		oneLn  bool   // stdout must be exactly one line
		maxDur time.Duration
	}{
		{"ok via -H -p", []string{"-H", okHost, "-p", okPort}, 0, "WORKER OK - all fine", true, 0},
		{"ok via -u URL", []string{"-u", "http://" + ok + "/status"}, 0, "WORKER OK - all fine", true, 0},
		{"warning", []string{"-u", "http://" + warn + "/status", "--metric", "queue_depth,warn=100,crit=500"}, 1, "WORKER WARNING - metric queue_depth=150 breaks warning range 100", false, 0},
		{"critical", []string{"-u", "http://" + crit + "/status"}, 2, "WORKER CRITICAL - worker reports CRITICAL: db down", true, 0},
		{"dependency", []string{"-u", "http://" + dep + "/status"}, 2, "WORKER CRITICAL - dependency failure (not the worker's own fault): check database (dependency) CRITICAL: refused", false, 0},
		{"connection refused", []string{"-u", "http://" + refused + "/status"}, 2, "WORKER CRITICAL - connection refused", true, 0},
		{"timeout", []string{"-u", "http://" + silent.Addr().String() + "/status", "-t", "1"}, 2, "WORKER CRITICAL - no answer within the timeout", true, 3 * time.Second},
		{"timeout state", []string{"-u", "http://" + silent.Addr().String() + "/status", "-t", "1:unknown"}, 3, "WORKER UNKNOWN - no answer within the timeout", true, 3 * time.Second},
		{"help", []string{"-h"}, 3, "Usage: check_worker", false, 0},
		{"long help", []string{"--help"}, 3, "Usage: check_worker", false, 0},
		{"version", []string{"-V"}, 3, "check_worker ", true, 0},
		{"unknown flag", []string{"-H", "x", "--bogus"}, 3, "UNKNOWN - unknown flag --bogus", true, 0},
		{"short name as a long flag", []string{"--H", okHost, "-p", okPort}, 3, "UNKNOWN - unknown flag --H", true, 0},
		{"no target", []string{}, 3, "UNKNOWN - no target", true, 0},
		{"bad range", []string{"-H", okHost, "-p", okPort, "-w", "abc"}, 3, "UNKNOWN - -w/-c response time: invalid threshold range", true, 0},
		{"bad metric", []string{"-H", okHost, "--metric", "queue_depth"}, 3, "UNKNOWN - metric \"queue_depth\"", true, 0},
		{"bad timeout", []string{"-H", okHost, "-t", "0"}, 3, "UNKNOWN - timeout", true, 0},
		{"bad timeout state", []string{"-H", okHost, "-t", "5:maybe"}, 3, "UNKNOWN - timeout state", true, 0},
		{"bad port", []string{"-H", okHost, "-p", "70000"}, 3, "UNKNOWN - -p 70000", true, 0},
		{"both -u and -H", []string{"-H", okHost, "-u", "http://" + ok + "/"}, 3, "UNKNOWN - give either", true, 0},
		{"bad header", []string{"-H", okHost, "--header", "no colon here"}, 3, "UNKNOWN - header", true, 0},
		{"missing CA file", []string{"-H", okHost, "--ssl", "--ca-file", "/nonexistent/ca.pem"}, 3, "UNKNOWN - configuration error: CA file", true, 0},
		{"CA file is a FIFO", []string{"-H", okHost, "--ssl", "-t", "1", "--ca-file", fifo}, 3, "UNKNOWN - configuration error: CA file", true, 3 * time.Second},
		{"CA file is /dev/zero", []string{"-H", okHost, "--ssl", "-t", "1", "--ca-file", "/dev/zero"}, 3, "UNKNOWN - configuration error: CA file", true, 3 * time.Second},
		{"key file is a FIFO", []string{"-H", okHost, "--ssl", "-t", "1", "--cert-file", fifo, "--key-file", fifo}, 3, "UNKNOWN - configuration error: client", true, 3 * time.Second},
		{"bad max-age", []string{"-H", okHost, "--max-age", "300"}, 3, "UNKNOWN - max-age", true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var stdout, stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, bin, tt.args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			begin := time.Now()
			err := cmd.Run()
			took := time.Since(begin)
			code := cmd.ProcessState.ExitCode()
			if err != nil && code < 0 {
				t.Fatalf("run: %v", err)
			}
			out := stdout.String()
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, stderr.String())
			}
			if !strings.HasPrefix(out, tt.prefix) {
				t.Errorf("stdout %q does not start with %q", out, tt.prefix)
			}
			if tt.oneLn && strings.Count(out, "\n") != 1 {
				t.Errorf("want exactly one line, got %q", out)
			}
			if tt.maxDur > 0 && took > tt.maxDur {
				t.Errorf("took %v, want under %v", took, tt.maxDur)
			}
			if strings.HasPrefix(tt.prefix, "WORKER") && stderr.Len() != 0 {
				t.Errorf("stderr not empty without -v: %q", stderr.String())
			}
			// Every check answer carries the counters handle_worker reads.
			if strings.HasPrefix(tt.prefix, "WORKER") {
				line1, _, _ := strings.Cut(out, "\n")
				_, perf, _ := strings.Cut(line1, "|")
				self, dep, ok := status.ScopeFromPerfdata(perf)
				if !ok || (code == 2) != (self+dep > 0) || status.DependencyOnly(perf) != (tt.name == "dependency") {
					t.Errorf("critical counters %d, %d (ok %v) in %q", self, dep, ok, out)
				}
			}
		})
	}
}

// TestVerboseNeverTouchesStdout: with -vvv, diagnostics go to stderr and
// stdout is byte-for-byte the plugin output, nothing else.
func TestVerboseNeverTouchesStdout(t *testing.T) {
	bin := testutil.Binary(t, "check_worker")
	addr := serve(t, `{"status":"ok","message":"fine"}`)
	for _, v := range []string{"-v", "-vv", "-vvv"} {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, "-u", "http://"+addr+"/status", v, "--header", "Authorization: Bearer TOPSECRET")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v\n%s", v, err, stderr.String())
		}
		out := stdout.String()
		if !strings.HasPrefix(out, "WORKER OK - fine |") || strings.Count(out, "\n") != 1 {
			t.Errorf("%s: stdout %q", v, out)
		}
		if !strings.Contains(stderr.String(), "DBG connect") {
			t.Errorf("%s: no diagnostics on stderr: %q", v, stderr.String())
		}
		if v == "-vvv" && !strings.Contains(stderr.String(), "body=") {
			t.Errorf("-vvv does not show the body: %q", stderr.String())
		}
		if strings.Contains(stderr.String(), "TOPSECRET") {
			t.Errorf("%s: the auth header leaked into the log", v)
		}
	}
}

// TestRunInProcess covers run() without a subprocess, including that the
// answer reaches stdout exactly once.
func TestRunInProcess(t *testing.T) {
	addr := serve(t, `{"status":"warning","message":"slow"}`)
	var stdout, stderr bytes.Buffer
	code := run([]string{"-u", "http://" + addr + "/status"}, &stdout, &stderr)
	if code != 1 || !strings.HasPrefix(stdout.String(), "WORKER WARNING - worker reports WARNING: slow") {
		t.Fatalf("code %d stdout %q", code, stdout.String())
	}
	if strings.Count(stdout.String(), "WORKER") != 1 {
		t.Fatalf("answer written twice: %q", stdout.String())
	}
}
