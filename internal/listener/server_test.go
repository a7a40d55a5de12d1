package listener

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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
	if rep.Agent != "worker1" || time.Since(rep.AgentTime).Abs() > 5*time.Second {
		t.Fatalf("ping reply from %q at %s", rep.Agent, rep.AgentTime)
	}
	rep, err = h.do(protocol.VerbRestart, "demo")
	if err != nil || rep.Outcome != protocol.OutcomeOK || rep.ExitCode != 0 || rep.Output != "did restart" || rep.Duration <= 0 {
		t.Fatalf("restart: %+v %v", rep, err)
	}
	// Signed by this agent, dated, with the origin and the budget.
	if rep.Agent != "worker1" || rep.Origin != protocol.OriginRun || time.Since(rep.AgentTime).Abs() > 5*time.Second ||
		rep.Budget != (protocol.Budget{Used: 1, Max: 10000, Window: time.Hour}) {
		t.Fatalf("restart reply: %+v", rep)
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
	var opened atomic.Int64
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
				opened.Add(1)
				if i%2 == 0 { // slowloris: one byte, then silence
					c.Write([]byte("S"))
					c.SetReadDeadline(time.Now().Add(3 * time.Second))
				} else {
					c.Write([]byte("garbage\n"))
					c.SetReadDeadline(time.Now().Add(3 * time.Second))
				}
				buf := make([]byte, 64)
				n, _ := c.Read(buf)
				if strings.HasPrefix(string(buf[:n]), "SH2 - rate-limited") {
					refused.Store(fmt.Sprint(w, i), true)
				}
				c.Close()
			}
		}()
	}
	// The flood is on: 64 of its connections made.
	for deadline := time.Now().Add(20 * time.Second); opened.Load() < 64; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			cancel()
			wg.Wait()
			t.Fatalf("the flood never got going: %d connections", opened.Load())
		}
	}
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

// Connection limits: beyond max_conns the agent answers busy at once, when
// every slot holds a request in progress (idle connections would be
// evicted instead: server_limits_test.go).
func TestMaxConnsBusy(t *testing.T) {
	h := newHarness(t, opts{limits: &rig.Limits{Rate: 1000, Burst: 1000, MaxConns: 2, MaxConnsPerSource: 100, ReadTimeout: "5s"}})
	held := make(chan protocol.Reply, 2)
	for range 2 {
		go func() {
			rep, err := h.do(protocol.VerbRestart, "slow")
			if err != nil {
				t.Error(err)
			}
			held <- rep
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.srv.Executor().Joined() < 1 && time.Now().Before(deadline) { // both inside: one runs, one joined
		time.Sleep(10 * time.Millisecond)
	}
	if h.srv.active.Load() != 2 {
		t.Fatalf("%d connections held, want 2", h.srv.active.Load())
	}
	rep, err := h.do(protocol.VerbRestart, "demo")
	if err != nil || rep.Outcome != protocol.OutcomeBusy {
		t.Fatalf("third connection: %+v %v", rep, err)
	}
	os.WriteFile(filepath.Join(h.dir, "release"), nil, 0o600)
	for range 2 {
		if rep := <-held; rep.Outcome != protocol.OutcomeOK {
			t.Fatalf("a request in progress: %+v", rep)
		}
	}
	if h.marks("demo") != 0 {
		t.Fatal("action ran while busy")
	}
	if !auditEventually(h, "max_conns reached") {
		t.Fatalf("no busy line in the audit log:\n%s", h.audit.String())
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
	if got := h.raw(first); !strings.HasPrefix(got, okPrefix) {
		t.Fatalf("first request: %q", got)
	}
	advance(70 * time.Second)
	if got := h.raw(h.valid(protocol.VerbRestart, "demo", now())); !strings.HasPrefix(got, okPrefix) {
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
	if got := h.raw(first); got != deniedLine {
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
		if string(buf[:n]) != deniedLine {
			t.Fatalf("connection %d from outside the allow list: %q", sent, buf[:n])
		}
	}
	elapsed := time.Since(start)
	logged := strings.Count(h.audit.String(), "source not in allow list")
	if limit := refusalLogBurst + int(elapsed.Seconds()*refusalLogRate) + 5; logged > limit {
		t.Fatalf("%d audit lines for %d refused connections in %s (limit %d)", logged, sent, elapsed, limit)
	}
	// Once the budget refills by a line (50 ms at 20/s), the next refusal
	// logged counts the skipped ones. Refused connections, until it shows
	// (the agent replies first and audits after).
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(h.audit.String(), `"unlogged_refusals":`); {
		if time.Now().After(deadline) {
			t.Fatalf("no line counts the skipped refusals:\n%s", h.audit.String()[max(0, len(h.audit.String())-2000):])
		}
		c, err := d.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Read(make([]byte, 64))
		c.Close()
		time.Sleep(20 * time.Millisecond) // pacing, not ordering: the loop waits on the condition
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
	// Wait until the agent has taken the connection and read its clock
	// (served counts after the read).
	deadline := time.Now().Add(10 * time.Second)
	for srv.served.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the agent never took the connection")
		}
		time.Sleep(5 * time.Millisecond)
	}
	opened := now()
	advance(40 * time.Second)
	// 50 s old when the connection opened, 90 s old when it arrives.
	nonce, _ := protocol.NewNonce()
	req := protocol.NewRequest(h.key, protocol.VerbRestart, "demo", "-", opened.Add(-50*time.Second), nonce)
	if _, err := c.Write(req.Marshal()); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	// The request is authentic: the refusal is signed, and says skew.
	rep, err := protocol.ParseReply([]byte(strings.TrimSuffix(line, "\n")), h.key, nonce)
	if err != nil || rep.Outcome != protocol.OutcomeSkew || !rep.AgentTime.Equal(now().Truncate(time.Millisecond)) {
		t.Fatalf("a request 90 s old on arrival: %q %+v %v", line, rep, err)
	}
	if h.marks("demo") != 0 {
		t.Fatal("the stale request ran")
	}
	if !auditEventually(h, `"reason":"timestamp 90s in the past (window 60s)"`) {
		t.Fatalf("audit:\n%s", h.audit.String())
	}
}

// TestSkewReply: an authentic request whose clock is off gets a signed
// skew reply with the agent's time (so the handler can say "clock off by
// N s"); nothing runs, and the audit log says skew.
func TestSkewReply(t *testing.T) {
	h := newHarness(t, opts{})
	for _, off := range []time.Duration{-2 * time.Minute, 3 * time.Minute} {
		c, err := protocol.NewClient(protocol.ClientConfig{Addr: h.addr, Key: h.fleet, Agent: h.agent,
			Now: func() time.Time { return time.Now().Add(off) }})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := c.Do(t.Context(), protocol.VerbRestart, "demo", "f1")
		if err != nil || rep.Outcome != protocol.OutcomeSkew || rep.Agent != "worker1" || rep.Origin != protocol.OriginNone || rep.ExitCode != -1 {
			t.Fatalf("clock off by %s: %+v %v", off, rep, err)
		}
		if d := time.Since(rep.AgentTime).Abs(); d > time.Second {
			t.Fatalf("agent time %s is %s from now", rep.AgentTime, d)
		}
	}
	if h.marks("demo") != 0 {
		t.Fatal("a skewed request ran")
	}
	for _, want := range []string{`"outcome":"skew"`, `timestamp 120s in the past (window 60s)`, `timestamp 180s in the future (window 60s)`} {
		if !auditEventually(h, want) {
			t.Fatalf("audit has no %s:\n%s", want, h.audit.String())
		}
	}
	// An unauthenticated peer with a stale clock learns nothing: denied.
	other, _ := protocol.GenerateFleetKey("fleet1")
	ok := time.Now().Add(-2 * time.Minute)
	wrong, _ := other.ForAgent("worker1")
	if got := h.raw(protocol.NewRequest(wrong, protocol.VerbRestart, "demo", "-", ok, strings.Repeat("a", 32)).Marshal()); got != deniedLine {
		t.Fatalf("stale request with the wrong key: %q", got)
	}
	// The same fault, with a good clock, then runs.
	if rep, err := h.doFault(protocol.VerbRestart, "demo", "f1"); err != nil || rep.Outcome != protocol.OutcomeOK || rep.Origin != protocol.OriginRun {
		t.Fatalf("after the skew: %+v %v", rep, err)
	}
}

// TestSkewNonceRecorded: issue 18's replay. A request 62 s in the future
// gets skew; the same bytes 3 s later (59 s ahead, inside the window) are
// a replay and are denied: the nonce was recorded although nothing ran.
// A fresh request for the same fault then runs: the rig can run.
func TestSkewNonceRecorded(t *testing.T) {
	h := newHarness(t, opts{replayWindow: "60s"})
	_, now, advance := fakeClockServer(t, h)
	nonce, _ := protocol.NewNonce()
	frame := protocol.NewRequest(h.key, protocol.VerbRestart, "demo", "4711", now().Add(62*time.Second), nonce).Marshal()
	line := h.raw(frame)
	rep, err := protocol.ParseReply([]byte(strings.TrimSuffix(line, "\n")), h.key, nonce)
	if err != nil || rep.Outcome != protocol.OutcomeSkew {
		t.Fatalf("62 s ahead: %q %+v %v", line, rep, err)
	}
	advance(3 * time.Second)
	if got := h.raw(frame); got != deniedLine {
		t.Fatalf("the same bytes 3 s later: %q, want denied", got)
	}
	if !auditEventually(h, `"reason":"replayed nonce"`) {
		t.Fatalf("audit:\n%s", h.audit.String())
	}
	if h.marks("demo") != 0 {
		t.Fatal("the replayed skew request ran")
	}
	// The same rig runs a fresh request for the same fault.
	fresh := protocol.NewRequest(h.key, protocol.VerbRestart, "demo", "4711", now(), strings.Repeat("b", 32)).Marshal()
	line = h.raw(fresh)
	if rep, err := protocol.ParseReply([]byte(strings.TrimSuffix(line, "\n")), h.key, strings.Repeat("b", 32)); err != nil || rep.Outcome != protocol.OutcomeOK || h.marks("demo") != 1 {
		t.Fatalf("a fresh request: %q %+v %v, %d runs", line, rep, err, h.marks("demo"))
	}
}
