package listener

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/protocol"
)

func TestPingAndActions(t *testing.T) {
	h := newHarness(t, opts{})
	rep, err := h.do(protocol.VerbPing, "")
	if err != nil || rep.Outcome != protocol.OutcomeOK || !strings.Contains(rep.Output, "worker_listener") {
		t.Fatalf("ping: %+v %v", rep, err)
	}
	if h.marks("demo") != 0 {
		t.Fatal("ping ran an action")
	}
	rep, err = h.do(protocol.VerbRestart, "demo")
	if err != nil || rep.Outcome != protocol.OutcomeOK || rep.ExitCode != 0 || rep.Output != "did restart" || rep.Duration <= 0 {
		t.Fatalf("restart: %+v %v", rep, err)
	}
	// A failing action: its exit code and sanitised output come back.
	rep, err = h.do(protocol.VerbRestart, "fail")
	if err != nil || rep.Outcome != protocol.OutcomeFailed || rep.ExitCode != 4 {
		t.Fatalf("fail: %+v %v", rep, err)
	}
	if !strings.Contains(rep.Output, "no such worker") || strings.ContainsAny(rep.Output, "\x1b\x00\r") {
		t.Fatalf("fail output not sanitised: %q", rep.Output)
	}
	// A verb the service has no action for is denied, and nothing runs.
	if rep, err := h.do(protocol.VerbStatus, "demo"); err != nil || rep.Outcome != protocol.OutcomeDenied {
		t.Fatalf("status without action: %+v %v", rep, err)
	}
	if h.marks("demo") != 1 {
		t.Fatalf("marks = %d", h.marks("demo"))
	}
}

// A flood of connections from one source (bounded in count and time),
// slowloris and garbage mixed, while a legitimate restart from another
// source still succeeds.
func TestFloodDoesNotStarveOthers(t *testing.T) {
	h := newHarness(t, opts{allow: []string{"127.0.0.0/8"}, limits: &rig.Limits{Rate: 5, Burst: 20, MaxConns: 64, MaxConnsPerSource: 8, ReadTimeout: "2s"}})
	flood := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 2 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var attempts, refused sync.Map
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300 && ctx.Err() == nil; i++ {
				c, err := flood.DialContext(ctx, "tcp", h.addr)
				if err != nil {
					continue
				}
				attempts.Store(fmt.Sprint(w, i), true)
				if i%2 == 0 { // slowloris: one byte, then silence
					c.Write([]byte("S"))
					c.SetReadDeadline(time.Now().Add(3 * time.Second))
				} else {
					c.Write([]byte("garbage\n"))
					c.SetReadDeadline(time.Now().Add(3 * time.Second))
				}
				buf := make([]byte, 64)
				n, _ := c.Read(buf)
				if strings.HasPrefix(string(buf[:n]), "SH1 rate-limited") {
					refused.Store(fmt.Sprint(w, i), true)
				}
				c.Close()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // the flood is on
	rep, err := h.do(protocol.VerbRestart, "demo")
	cancel()
	wg.Wait()
	if err != nil || rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("legitimate restart during the flood: %+v %v", rep, err)
	}
	if h.marks("demo") != 1 {
		t.Fatal("legitimate restart did not run")
	}
	n := 0
	refused.Range(func(any, any) bool { n++; return true })
	if n == 0 {
		a := 0
		attempts.Range(func(any, any) bool { a++; return true })
		t.Fatalf("the flood was never rate-limited (%d connections)\n%s", a, h.audit.String())
	}
}

// Connection limits: beyond max_conns the agent answers busy at once.
func TestMaxConnsBusy(t *testing.T) {
	h := newHarness(t, opts{limits: &rig.Limits{Rate: 1000, Burst: 1000, MaxConns: 2, MaxConnsPerSource: 100, ReadTimeout: "5s"}})
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.srv.active.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	rep, err := h.do(protocol.VerbRestart, "demo")
	if err != nil || rep.Outcome != protocol.OutcomeBusy {
		t.Fatalf("third connection: %+v %v", rep, err)
	}
	for _, c := range held {
		c.Close()
	}
	if h.marks("demo") != 0 {
		t.Fatal("action ran while busy")
	}
}

// A drain that runs out of shutdown_grace kills the running action (its
// caller hears "timeout") and still returns, bounded.
func TestDrainGraceKillsActions(t *testing.T) {
	h := newHarness(t, opts{grace: "500ms"})
	res := make(chan protocol.Reply, 1)
	go func() {
		rep, err := h.do(protocol.VerbRestart, "slow")
		if err != nil {
			t.Error(err)
		}
		res <- rep
	}()
	deadline := time.Now().Add(20 * time.Second)
	for h.srv.Executor().Runs() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("action never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.stop()
	select {
	case err := <-h.done:
		if err == nil || !strings.Contains(err.Error(), "grace") {
			t.Fatalf("Serve returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("drain did not end")
	}
	h.stop = nil
	if rep := <-res; rep.Outcome != protocol.OutcomeTimeout {
		t.Fatalf("caller got %+v", rep)
	}
	if h.marks("slow") != 0 {
		t.Fatal("the killed action completed")
	}
}

// TestReplayAfterWindowWidened: a request accepted under a 60 s window is
// still refused as a replay after a reload widens the window to 10 m.
func TestReplayAfterWindowWidened(t *testing.T) {
	h := newHarness(t, opts{replayWindow: "60s"})
	srv, now, advance := fakeClockServer(t, h)

	first := h.valid(protocol.VerbRestart, "demo", now())
	if got := h.raw(first); !strings.HasPrefix(got, "SH1 ok ") {
		t.Fatalf("first request: %q", got)
	}
	advance(70 * time.Second)
	if got := h.raw(h.valid(protocol.VerbRestart, "demo", now())); !strings.HasPrefix(got, "SH1 ok ") {
		t.Fatalf("second request: %q", got)
	}
	if err := h.config(opts{replayWindow: "10m"}).Write(h.cfgPath); err != nil {
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

// TestRefusalsDoNotFloodAudit: a source outside the allow list gets
// "denied" on every connection, but cannot make the agent write one audit
// line per connection; a later line counts the ones skipped.
func TestRefusalsDoNotFloodAudit(t *testing.T) {
	h := newHarness(t, opts{allow: []string{"127.0.0.1/32"}})
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

// TestTimestampCheckedOnArrival: the replay window is measured when the
// request arrives, not when its connection was opened, so a peer cannot
// stretch the window by holding a connection open before sending.
func TestTimestampCheckedOnArrival(t *testing.T) {
	h := newHarness(t, opts{replayWindow: "60s", limits: &rig.Limits{ReadTimeout: "1m"}})
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
