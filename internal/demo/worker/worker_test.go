package worker

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/selfheal/selfheal/internal/proc"
	"github.com/selfheal/selfheal/internal/status"
)

func checkByName(t *testing.T, d status.Document, name string) status.Check {
	t.Helper()
	for _, c := range d.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", name, d.Checks)
	return status.Check{}
}

func TestDocumentReflectsFaults(t *testing.T) {
	tests := []struct {
		faults  []Fault
		overall string
		check   string // the sub-check the fault shows in
		state   string
	}{
		{nil, "ok", "store", "ok"},
		{[]Fault{FaultDegrade}, "warning", "latency", "warning"},
		{[]Fault{FaultFail}, "critical", "store", "critical"},
		{[]Fault{FaultDegrade, FaultFail}, "critical", "latency", "warning"},
		{[]Fault{FaultFail, FaultClear}, "ok", "store", "ok"},
		{[]Fault{FaultHang, FaultClear}, "ok", "latency", "ok"},
		{[]Fault{FaultDepFail}, "critical", "database", "critical"},
		{[]Fault{FaultDepFail}, "critical", "store", "ok"},
		{[]Fault{FaultDepFail, FaultClear}, "ok", "database", "ok"},
	}
	for _, tt := range tests {
		w := newWorker(Config{QueueCap: 10}.withDefaults(), time.Now, 4242)
		for _, f := range tt.faults {
			w.inject(f)
		}
		d := w.Document()
		if d.Status != tt.overall {
			t.Errorf("faults %v: status %q, want %q", tt.faults, d.Status, tt.overall)
		}
		if c := checkByName(t, d, tt.check); c.Status != tt.state {
			t.Errorf("faults %v: check %s = %q, want %q", tt.faults, tt.check, c.Status, tt.state)
		}
		if !strings.Contains(d.Message, "pid 4242") {
			t.Errorf("message %q does not name the pid", d.Message)
		}
		if d.Heartbeat == nil || d.StartedAt == nil {
			t.Errorf("heartbeat or started_at missing")
		}
	}
}

func TestQueueCheck(t *testing.T) {
	tests := []struct {
		depth, capacity int
		want            string
	}{
		{0, 10, "ok"}, {7, 10, "ok"}, {8, 10, "warning"}, {9, 10, "warning"}, {10, 10, "critical"},
	}
	for _, tt := range tests {
		if got := queueCheck(tt.depth, tt.capacity, 0).Status; got != tt.want {
			t.Errorf("queueCheck(%d, %d) = %q, want %q", tt.depth, tt.capacity, got, tt.want)
		}
	}
}

func TestParseFault(t *testing.T) {
	for _, f := range Faults {
		if got, err := ParseFault(string(f)); err != nil || got != f {
			t.Errorf("ParseFault(%q) = %q, %v", f, got, err)
		}
	}
	for _, bad := range []string{"", "CRASH", "reboot", "hang "} {
		if _, err := ParseFault(bad); err == nil {
			t.Errorf("ParseFault(%q) accepted", bad)
		}
	}
}

func TestLoopbackPeer(t *testing.T) {
	tests := map[string]bool{
		"127.0.0.1:5000":        true,
		"127.8.9.10:1":          true,
		"[::1]:5000":            true,
		"[::ffff:127.0.0.1]:80": true,
		"192.0.2.7:5000":        false,
		"[2001:db8::1]:5000":    false,
		"[::ffff:192.0.2.7]:80": false,
		"garbage":               false,
		"":                      false,
	}
	for in, want := range tests {
		if got := loopbackPeer(in); got != want {
			t.Errorf("loopbackPeer(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestControlEndpointRefusesRemotePeers(t *testing.T) {
	w := newWorker(Config{}.withDefaults(), time.Now, 1)
	h := w.handler(make(chan struct{}), make(chan struct{}, 1), zerolog.Nop())
	req := httptest.NewRequest(http.MethodPost, "/fault/fail", nil)
	req.RemoteAddr = "192.0.2.7:40000"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Fatalf("remote fault request: HTTP %d, want 403", rec.Code)
	}
	if d := w.Document(); d.Status != "ok" {
		t.Fatalf("a refused fault still changed the worker: %s", d.Status)
	}
	// The same request from loopback works, and GET is not a way in.
	req = httptest.NewRequest(http.MethodGet, "/fault/fail", nil)
	req.RemoteAddr = "127.0.0.1:40000"
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code == http.StatusOK {
		t.Fatalf("GET /fault/fail was accepted")
	}
	req = httptest.NewRequest(http.MethodPost, "/fault/fail", nil)
	req.RemoteAddr = "127.0.0.1:40000"
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || w.Document().Status != "critical" {
		t.Fatalf("loopback fault: HTTP %d, status %s", rec.Code, w.Document().Status)
	}
}

func TestControlBase(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"127.0.0.1:8080", "http://127.0.0.1:8080", true},
		{":8080", "http://127.0.0.1:8080", true},
		{"0.0.0.0:8080", "http://127.0.0.1:8080", true},
		{"[::]:8080", "http://[::1]:8080", true},
		{"[::1]:8080", "http://[::1]:8080", true},
		{"localhost:8080", "http://localhost:8080", true},
		{"192.0.2.1:8080", "", false},
		{"127.0.0.1:0", "", false},
		{"127.0.0.1", "", false},
	}
	for _, tt := range tests {
		got, err := controlBase(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("controlBase(%q) = %q, %v; want %q ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// startWorker runs the worker in-process on a loopback port. wait returns
// Run's result (at most 10 s); cleanup stops the worker.
func startWorker(t *testing.T, cfg Config) (addr string, wait func() (Result, bool), stop context.CancelFunc) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Result, 1)
	go func() { done <- Run(ctx, cfg, Deps{Log: zerolog.Nop(), PID: 777, Listener: ln}) }()
	var (
		res  Result
		got  bool
		once sync.Once
	)
	wait = func() (Result, bool) {
		once.Do(func() {
			select {
			case res = <-done:
				got = true
			case <-time.After(10 * time.Second):
			}
		})
		return res, got
	}
	t.Cleanup(func() {
		cancel()
		if _, ok := wait(); !ok {
			t.Error("worker did not stop within 10s")
		}
	})
	return ln.Addr().String(), wait, cancel
}

func getDoc(t *testing.T, client *http.Client, addr string) (status.Document, error) {
	t.Helper()
	resp, err := client.Get("http://" + addr + "/status")
	if err != nil {
		return status.Document{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return status.Document{}, errors.New(resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var d status.Document
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("bad JSON %q: %v", b, err)
	}
	return d, nil
}

// eventually polls cond every 50 ms for up to 10 s (generous on a loaded
// machine; it returns as soon as cond holds).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRunWorksHangsAndRecovers(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "w.pid")
	addr, _, _ := startWorker(t, Config{JobsPerSec: 200, PIDFile: pidFile, HangStatusDelay: time.Minute})
	client := &http.Client{Timeout: 5 * time.Second}

	eventually(t, "pid file written", func() bool {
		pid, err := proc.ReadPIDFile(pidFile)
		return err == nil && pid == 777
	})
	var first status.Document
	eventually(t, "jobs processed", func() bool {
		d, err := getDoc(t, client, addr)
		first = d
		return err == nil && d.Metrics[1].Value > 0
	})
	if first.Status != "ok" {
		t.Fatalf("fresh worker status %q", first.Status)
	}
	eventually(t, "heartbeat advances", func() bool {
		d, err := getDoc(t, client, addr)
		return err == nil && d.Heartbeat.After(*first.Heartbeat)
	})

	ctx := context.Background()
	if _, err := SendFault(ctx, client, addr, FaultHang); err != nil {
		t.Fatal(err)
	}
	short := &http.Client{Timeout: 300 * time.Millisecond}
	if _, err := getDoc(t, short, addr); err == nil {
		t.Fatal("/status answered while hung")
	}
	// The control endpoint still answers; clearing resumes the work.
	if _, err := SendFault(ctx, client, addr, FaultClear); err != nil {
		t.Fatal(err)
	}
	hungAt, err := getDoc(t, client, addr)
	if err != nil {
		t.Fatalf("/status after clear: %v", err)
	}
	eventually(t, "jobs resume after clear", func() bool {
		d, err := getDoc(t, client, addr)
		return err == nil && d.Metrics[1].Value > hungAt.Metrics[1].Value
	})

	for _, tt := range []struct {
		f    Fault
		want string
	}{{FaultDegrade, "warning"}, {FaultFail, "critical"}, {FaultClear, "ok"}} {
		if _, err := SendFault(ctx, client, addr, tt.f); err != nil {
			t.Fatal(err)
		}
		d, err := getDoc(t, client, addr)
		if err != nil || d.Status != tt.want {
			t.Fatalf("after %s: status %q (%v), want %q", tt.f, d.Status, err, tt.want)
		}
	}
}

func TestHangStopsHeartbeat(t *testing.T) {
	addr, _, _ := startWorker(t, Config{JobsPerSec: 50, HangStatusDelay: 200 * time.Millisecond})
	client := &http.Client{Timeout: 5 * time.Second}
	ctx := context.Background()
	if _, err := SendFault(ctx, client, addr, FaultHang); err != nil {
		t.Fatal(err)
	}
	// With a short stall /status answers late, and the heartbeat stops
	// (a job already running when the hang came may still finish: wait for
	// two reads in a row to agree, then check it stays put).
	var a status.Document
	eventually(t, "the heartbeat stops", func() bool {
		x, err1 := getDoc(t, client, addr)
		time.Sleep(300 * time.Millisecond)
		y, err2 := getDoc(t, client, addr)
		a = y
		return err1 == nil && err2 == nil && x.Heartbeat.Equal(*y.Heartbeat)
	})
	time.Sleep(600 * time.Millisecond)
	b, err := getDoc(t, client, addr)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Heartbeat.Equal(*a.Heartbeat) {
		t.Fatalf("heartbeat moved while hung: %v -> %v", a.Heartbeat, b.Heartbeat)
	}
	if b.Metrics[1].Value != a.Metrics[1].Value {
		t.Fatalf("jobs done moved while hung: %v -> %v", a.Metrics[1].Value, b.Metrics[1].Value)
	}
	if age := time.Since(*b.Heartbeat); age < 500*time.Millisecond {
		t.Fatalf("heartbeat only %s old after the hang", age)
	}
	if !strings.Contains(b.Message, "hung") {
		t.Fatalf("message %q does not say hung", b.Message)
	}
}

func TestCrashEndsRunAndKeepsPIDFile(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "w.pid")
	addr, wait, _ := startWorker(t, Config{PIDFile: pidFile})
	line, err := SendFault(context.Background(), &http.Client{Timeout: 5 * time.Second}, addr, FaultCrash)
	if err != nil || !strings.Contains(line, "crashing") {
		t.Fatalf("crash answer %q, %v", line, err)
	}
	res, ok := wait()
	if !ok || !res.Crashed || res.Code != CrashExitCode {
		t.Fatalf("result %+v (returned: %v)", res, ok)
	}
	if _, err := os.Stat(pidFile); err != nil {
		t.Fatalf("a crash should leave its pid file: %v", err)
	}
}

func TestCleanStopRemovesPIDFile(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "w.pid")
	_, wait, cancel := startWorker(t, Config{PIDFile: pidFile})
	eventually(t, "pid file written", func() bool {
		_, err := os.Stat(pidFile)
		return err == nil
	})
	cancel()
	res, ok := wait()
	if !ok || res.Code != 0 || res.Err != nil {
		t.Fatalf("clean stop: %+v (returned: %v)", res, ok)
	}
	if _, err := os.Stat(pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pid file left after a clean stop: %v", err)
	}
}

func TestRunFailsOnBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	res := Run(context.Background(), Config{Listen: ln.Addr().String()}, Deps{Log: zerolog.Nop()})
	if res.Code == 0 || res.Err == nil {
		t.Fatalf("Run on a busy port: %+v", res)
	}
}

func TestIdleWorkerKeepsHeartbeat(t *testing.T) {
	addr, _, _ := startWorker(t, Config{JobsPerSec: 0})
	client := &http.Client{Timeout: 5 * time.Second}
	first, err := getDoc(t, client, addr)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "an idle worker's heartbeat advances", func() bool {
		d, err := getDoc(t, client, addr)
		return err == nil && d.Heartbeat.After(*first.Heartbeat) && d.Metrics[1].Value == 0
	})
}
