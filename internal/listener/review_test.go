package listener

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/protocol"
)

// TestNonceCacheForgetsExpired: expired nonces leave memory within about a
// window, not only when the cache reaches maxNonces.
func TestNonceCacheForgetsExpired(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c, err := OpenNonceCache(t.TempDir(), time.Minute, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 100; i++ {
		if err := c.Use(fmt.Sprintf("%032x", i), now.Unix(), now); err != nil {
			t.Fatal(err)
		}
	}
	later := now.Add(130 * time.Second)
	if err := c.Use(strings.Repeat("f", 32), later.Unix(), later); err != nil {
		t.Fatal(err)
	}
	if n := len(c.seen); n != 1 {
		t.Fatalf("%d nonces in memory two windows later, want 1", n)
	}
}

// TestReplayAfterWindowWidened: a request accepted under a 60 s window is
// still refused as a replay after a reload widens the window to 10 m.
func TestReplayAfterWindowWidened(t *testing.T) {
	h := newHarness(t, opts{extra: "replay_window: 60s\n"})
	srv, now, advance := fakeClockServer(t, h)

	first := h.valid(protocol.VerbRestart, "demo", now())
	if got := h.raw(first); !strings.HasPrefix(got, "SH1 ok ") {
		t.Fatalf("first request: %q", got)
	}
	advance(70 * time.Second)
	if got := h.raw(h.valid(protocol.VerbRestart, "demo", now())); !strings.HasPrefix(got, "SH1 ok ") {
		t.Fatalf("second request: %q", got)
	}
	if err := os.WriteFile(h.cfgPath, []byte(h.configYAML(opts{extra: "replay_window: 10m\n"})), 0o600); err != nil {
		t.Fatal(err)
	}
	wide, err := Load(h.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Reload(wide); err != nil {
		t.Fatal(err)
	}
	if got := h.raw(first); got != "SH1 denied -1 0 - -\n" {
		t.Fatalf("replay of a 70 s old request after widening the window: %q", got)
	}
	if n := h.marks("demo"); n != 2 {
		t.Fatalf("%d runs, want 2: the replay ran", n)
	}
}

// TestCheckExecutableReplaceable: an action binary that someone else could
// replace is refused even when its own mode and its immediate directory
// look fine: a writable ancestor, a symlink into a writable directory, a
// foreign owner.
func TestCheckExecutableReplaceable(t *testing.T) {
	dir := t.TempDir()
	mk := func(path string, mode os.FileMode) string {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := mk(filepath.Join(dir, "safe", "a.sh"), 0o755)
	deep := mk(filepath.Join(dir, "open", "sub", "a.sh"), 0o755)
	target := mk(filepath.Join(dir, "open2", "b.sh"), 0o755)
	for _, d := range []string{filepath.Join(dir, "open"), filepath.Join(dir, "open2")} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(dir, "safe", "link.sh")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	goodLink := filepath.Join(dir, "safe", "good-link.sh")
	if err := os.Symlink(good, goodLink); err != nil {
		t.Fatal(err)
	}
	if err := checkExecutable(good); err != nil {
		t.Fatalf("safe binary refused: %v", err)
	}
	if err := checkExecutable(goodLink); err != nil {
		t.Fatalf("safe symlink refused: %v", err)
	}
	rows := map[string]string{
		"world-writable ancestor directory":       deep,
		"symlink into a world-writable directory": link,
	}
	if os.Geteuid() == 0 {
		foreign := mk(filepath.Join(dir, "safe", "foreign.sh"), 0o755)
		if err := os.Chown(foreign, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		rows["owned by another user"] = foreign
	}
	for name, bin := range rows {
		t.Run(name, func(t *testing.T) {
			if err := checkExecutable(bin); err == nil {
				t.Fatalf("%s accepted", bin)
			}
		})
	}
}

// TestRefusalsDoNotFloodAudit: a source outside the allow list gets
// "denied" on every connection, but cannot make the agent write one audit
// line per connection; a later line counts the ones skipped.
func TestRefusalsDoNotFloodAudit(t *testing.T) {
	h := newHarness(t, opts{allow: "[127.0.0.1/32]"})
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	start := time.Now()
	sent := 0
	for ; sent < 1500 && time.Since(start) < 20*time.Second; sent++ {
		c, err := d.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		c.Close()
		if string(buf[:n]) != "SH1 denied -1 0 - -\n" {
			t.Fatalf("connection %d from outside the allow list: %q", sent, buf[:n])
		}
	}
	elapsed := time.Since(start)
	logged := strings.Count(h.audit.String(), "source not in allow list")
	if limit := refusalLogBurst + int(elapsed.Seconds()*refusalLogRate) + 5; logged > limit {
		t.Fatalf("%d audit lines for %d refused connections in %s (limit %d)", logged, sent, elapsed, limit)
	}
	time.Sleep(200 * time.Millisecond) // the budget refills a little
	c, err := d.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Read(make([]byte, 64))
	c.Close()
	// The agent replies first and audits after, so poll (bounded) for the lines.
	if !auditEventually(h, `"unlogged_refusals":`) {
		t.Fatalf("no line counts the skipped refusals:\n%s", h.audit.String()[max(0, len(h.audit.String())-2000):])
	}
	if rep, err := h.do(protocol.VerbRestart, "demo"); err != nil || rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("legitimate restart after the flood: %+v %v", rep, err)
	}
	if !auditEventually(h, `"outcome":"ok"`) {
		t.Fatal("the legitimate restart was not audited")
	}
}

// auditEventually reports whether the audit log holds s within 10 s.
func auditEventually(h *harness, s string) bool {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if strings.Contains(h.audit.String(), s) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// TestTimestampCheckedOnArrival: the replay window is measured when the
// request arrives, not when its connection was opened, so a peer cannot
// stretch the window by holding a connection open before sending.
func TestTimestampCheckedOnArrival(t *testing.T) {
	h := newHarness(t, opts{extra: "replay_window: 60s\n", limits: "{read_timeout: 1m}"})
	srv, now, advance := fakeClockServer(t, h)

	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	// Wait until the agent has taken the connection (and its clock).
	deadline := time.Now().Add(10 * time.Second)
	for srv.active.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	opened := now()
	advance(40 * time.Second)
	// 50 s old when the connection opened, 90 s old when it arrives.
	if _, err := c.Write(h.valid(protocol.VerbRestart, "demo", opened.Add(-50*time.Second))); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	n, _ := c.Read(buf)
	if got := string(buf[:n]); got != "SH1 denied -1 0 - -\n" {
		t.Fatalf("a request 90 s old on arrival: %q", got)
	}
	if h.marks("demo") != 0 {
		t.Fatal("the stale request ran")
	}
}

// fakeClockServer replaces the harness's agent with one on a clock the
// test moves by hand, serving on a new loopback port (h.addr follows it).
func fakeClockServer(t *testing.T, h *harness) (srv *Server, now func() time.Time, advance func(time.Duration)) {
	t.Helper()
	h.shutdown()
	var mu sync.Mutex
	clock := time.Now()
	now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance = func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	cfg, err := Load(h.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if srv, err = NewServer(cfg, Deps{Audit: h.audit, Now: now}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	h.addr = ln.Addr().String()
	return srv, now, advance
}
