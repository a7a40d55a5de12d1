package listener

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/protocol"
)

// TestTwoAgentsOneFleet: two agents, worker1 on 127.0.0.1 and worker2 on
// 127.0.0.2, each holding its host key issued from one fleet key (what
// handle_worker issue-key does). Nothing meant for one is accepted by the
// other, in either direction, and one agent's key file signs nothing the
// other accepts.
func TestTwoAgentsOneFleet(t *testing.T) {
	fleet, err := protocol.GenerateFleetKey("fleet1")
	if err != nil {
		t.Fatal(err)
	}
	loop := []string{"127.0.0.0/8"}
	a := newHarness(t, opts{fleet: &fleet, agent: "worker1", listen: "127.0.0.1:0", allow: loop})
	// A is fully up (its accept loop runs) before B's harness counts the
	// goroutines it must leave behind.
	if rep, err := a.do(protocol.VerbPing, ""); err != nil || rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("ping A: %+v %v", rep, err)
	}
	for deadline := time.Now().Add(10 * time.Second); a.srv.active.Load() != 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	b := newHarness(t, opts{fleet: &fleet, agent: "worker2", listen: "127.0.0.2:0", allow: loop})
	if !strings.HasPrefix(b.addr, "127.0.0.2:") {
		t.Fatalf("B listens on %s", b.addr)
	}
	lines := func(h *harness) int { return strings.Count(h.audit.String(), "\n") }
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("a request captured for A is denied by B", func(t *testing.T) {
		frame := a.valid(protocol.VerbRestart, "demo", time.Now())
		if got := a.raw(frame); !strings.HasPrefix(got, "SH2 worker1 ok run 0 ") {
			t.Fatalf("A: %q", got)
		}
		before := lines(b)
		if got := b.raw(frame); got != deniedLine {
			t.Fatalf("the same bytes replayed to B: %q", got)
		}
		waitAudit(t, b, before, "request for agent worker1, this is worker2")
		if b.marks("demo") != 0 {
			t.Fatal("B ran A's request")
		}
	})

	t.Run("a reply from B is refused by a client that asked A", func(t *testing.T) {
		// The network delivers the request for A to B: B denies it, the
		// client hears "denied", never a heal.
		rep, err := newClient(t, b.addr, fleet, "worker1", nil).Do(ctx, protocol.VerbRestart, "demo", "f1")
		if err != nil || rep.Outcome != protocol.OutcomeDenied {
			t.Fatalf("A's request delivered to B: %+v %v", rep, err)
		}
		// A relay turns the client's request into a genuine request for B
		// with the client's own nonce: B restarts and signs "ok", and the
		// client still refuses it, whether the relay leaves B's name in
		// the reply or rewrites it to A's.
		hostB, _ := fleet.ForAgent("worker2")
		for i, tc := range []struct {
			rewrite bool
			want    string
		}{
			{false, `reply from agent "worker2", but the request was for "worker1"`},
			{true, "reply MAC does not verify"},
		} {
			relay := startRelay(t, func(req protocol.Request) string {
				fwd := protocol.NewRequest(hostB, req.Verb, req.Service, req.Fault, time.Now(), req.Nonce)
				got := b.raw(fwd.Marshal())
				if !strings.HasPrefix(got, "SH2 worker2 ok run 0 ") {
					t.Errorf("B's answer to the relayed request: %q", got)
				}
				if tc.rewrite {
					got = strings.Replace(got, "SH2 worker2 ", "SH2 worker1 ", 1)
				}
				return got
			})
			rep, err := newClient(t, relay, fleet, "worker1", nil).Do(ctx, protocol.VerbRestart, "demo", "relay"+strconv.Itoa(i))
			if !errors.Is(err, protocol.ErrNoReply) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("rewrite %v: %+v %v, want ErrNoReply with %q", tc.rewrite, rep, err, tc.want)
			}
		}
		if a.marks("demo") != 1 || b.marks("demo") != 2 {
			t.Fatalf("marks A %d B %d, want 1 and 2", a.marks("demo"), b.marks("demo"))
		}
	})

	t.Run("A's host key signs nothing B accepts", func(t *testing.T) {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		for _, tc := range []struct {
			name, agent, verb, svc, reason string
		}{
			{"for B's name", "worker2", "restart", "demo", "MAC does not verify"},
			{"a ping for B's name", "worker2", "ping", "-", "MAC does not verify"},
			{"for A's name", "worker1", "restart", "demo", "request for agent worker1, this is worker2"},
		} {
			before := lines(b)
			n, _ := protocol.NewNonce()
			if got := b.raw(signedFrame(a.key, "fleet1", tc.agent, tc.verb, tc.svc, "-", ts, n)); got != deniedLine {
				t.Fatalf("%s: %q", tc.name, got)
			}
			waitAudit(t, b, before, tc.reason)
		}
		// A client cannot even be made from A's key for B,
		if _, err := protocol.NewClient(protocol.ClientConfig{Addr: b.addr, Key: a.key, Agent: "worker2"}); err == nil {
			t.Fatal("a client signing for worker2 with worker1's host key")
		}
		// and B refuses A's key file in its config.
		c := b.config(opts{agent: "worker2"})
		c.Keys = []string{a.keyPath}
		p := filepath.Join(t.TempDir(), "b.yaml")
		if err := c.Write(p); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(p); err == nil || !strings.Contains(err.Error(), `is the host key of agent "worker1", but this is agent "worker2"`) {
			t.Fatalf("B's config with A's key: %v", err)
		}
		if b.marks("demo") != 2 {
			t.Fatalf("B ran something signed with A's key (%d marks)", b.marks("demo"))
		}
	})

	// The fleet key, naming B, is what B accepts.
	rep, err := newClient(t, b.addr, fleet, "worker2", nil).Do(ctx, protocol.VerbRestart, "demo", "f2")
	if err != nil || rep.Outcome != protocol.OutcomeOK || rep.Agent != "worker2" || b.marks("demo") != 3 {
		t.Fatalf("B with the fleet key: %+v %v (%d marks)", rep, err, b.marks("demo"))
	}
	if _, err := os.Stat(a.mark("demo")); err != nil || a.marks("demo") != 1 {
		t.Fatalf("A ran %d times", a.marks("demo"))
	}
	// An agent's identity changes only with a restart: a reload that
	// would make A into worker2 (with worker2's key) is refused.
	c := a.config(opts{agent: "worker2"})
	c.Keys = []string{b.keyPath}
	p := filepath.Join(t.TempDir(), "a-as-b.yaml")
	if err := c.Write(p); err != nil {
		t.Fatal(err)
	}
	asB, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.srv.Reload(asB); err == nil || !strings.Contains(err.Error(), "agent cannot change on reload") {
		t.Fatalf("reload to another identity: %v", err)
	}
}

// startRelay accepts one connection, reads its request and answers it with
// what answer returns: a man in the middle.
func startRelay(t *testing.T, answer func(protocol.Request) string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		line, err := protocol.ReadFrame(bufio.NewReader(c), protocol.MaxRequestFrame)
		if err != nil {
			t.Errorf("relay: %v", err)
			return
		}
		req, err := protocol.ParseRequest(line)
		if err != nil {
			t.Errorf("relay: %v", err)
			return
		}
		c.Write([]byte(answer(req)))
	}()
	return ln.Addr().String()
}
