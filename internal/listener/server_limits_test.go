package listener

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/testutil"
	"github.com/selfheal/selfheal/internal/protocol"
)

// shippedLimits are the limits of the sample config
// (nagios-config/listener/worker_listener.yaml), as the rig writes them.
func shippedLimits(t *testing.T) *rig.Limits {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testutil.ModuleRoot(t), "nagios-config", "listener", "worker_listener.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var sample struct {
		Limits Limits `yaml:"limits"`
	}
	if err := yaml.Unmarshal(b, &sample); err != nil {
		t.Fatal(err)
	}
	l := sample.Limits
	if l.MaxConns == 0 || l.MaxConnsPerSource == 0 || l.Rate == 0 || l.Burst == 0 || l.ReadTimeout == 0 {
		t.Fatalf("the sample's limits are incomplete: %+v", l)
	}
	return &rig.Limits{Rate: l.Rate, Burst: l.Burst, MaxConns: l.MaxConns, MaxConnsPerSource: l.MaxConnsPerSource, ReadTimeout: l.ReadTimeout.String()}
}

// holdIdle opens n connections from src that send nothing, and waits until
// the agent has taken them all (admitted or evicted).
func holdIdle(t *testing.T, h *harness, src string, n int) []net.Conn {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	var held []net.Conn
	for range n {
		c, err := d.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	return held
}

// waitServed waits until the agent has admitted n connections in all, and
// the ones it evicted are gone.
func waitServed(t *testing.T, h *harness, n, held int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.srv.served.Load() < n || h.srv.active.Load() != held {
		if time.Now().After(deadline) {
			t.Fatalf("the agent took %d of %d connections and holds %d, want %d", h.srv.served.Load(), n, h.srv.active.Load(), held)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestIdleConnectionsHoldNoSlot: with the shipped limits, 20 idle
// connections from the monitoring node's own address (any local user there
// can open them) do not keep its signed restart out: they hold no slot, and
// it gets through at once, on the first try, long before the read timeout
// would free one.
func TestIdleConnectionsHoldNoSlot(t *testing.T) {
	lim := shippedLimits(t)
	h := newHarness(t, opts{limits: lim})
	holdIdle(t, h, "127.0.0.1", 20)
	waitServed(t, h, 20, 20)
	start := time.Now()
	rep, err := h.do(protocol.VerbRestart, "demo")
	if err != nil || rep.Outcome != protocol.OutcomeOK || rep.Origin != protocol.OriginRun {
		t.Fatalf("signed restart behind 20 idle connections: %+v %v", rep, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the restart took %s: it waited for the idle ones to time out", d)
	}
	if h.marks("demo") != 1 {
		t.Fatal("the restart did not run")
	}
}

// TestIdleSourcesHoldNoSlot: idle connections from nine sources inside the
// allowed network, more than max_conns (9 x 8 > 64); a signed restart from
// a tenth still gets through at once.
func TestIdleSourcesHoldNoSlot(t *testing.T) {
	lim := shippedLimits(t)
	h := newHarness(t, opts{limits: lim, allow: []string{"127.0.0.0/8"}})
	for i := 2; i <= 10; i++ {
		holdIdle(t, h, fmt.Sprintf("127.0.0.%d", i), lim.MaxConnsPerSource)
	}
	waitServed(t, h, int64(9*lim.MaxConnsPerSource), int64(9*lim.MaxConnsPerSource))
	start := time.Now()
	if rep, err := h.do(protocol.VerbRestart, "demo"); err != nil || rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("signed restart with more idle connections than max_conns: %+v %v", rep, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the restart took %s", d)
	}
}

// TestBurstOf50Services: 50 services fail at once and 50 signed restarts
// (one per service, each its own fault) arrive together under the shipped
// limits. Refusals are only ever busy or rate-limited (or an evicted
// connection) before anything ran, so a client that retries them, as
// handle_worker does (jittered backoff from 100 ms, doubling to 2 s,
// within 20 s), gets every one restarted, each exactly once. The breaker,
// which would hold most of them (TestBreakerHolds), is off: this is about
// the connection limits.
func TestBurstOf50Services(t *testing.T) {
	const n = 50
	h := newHarness(t, opts{limits: shippedLimits(t), services: n, budget: &rig.Budget{}, extra: noBreaker})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := h.client()
	var wg sync.WaitGroup
	reps := make([]protocol.Reply, n)
	errs := make([]error, n)
	tries := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			svc, fault := fmt.Sprintf("svc%d", i), fmt.Sprintf("problem-%d", 1000+i)
			backoff := 100 * time.Millisecond
			for {
				tries[i]++
				reps[i], errs[i] = c.Do(ctx, protocol.VerbRestart, svc, fault)
				retry := errs[i] == nil && reps[i].Outcome.Retryable() ||
					errs[i] != nil && (errors.Is(errs[i], protocol.ErrNotSent) || errors.Is(errs[i], protocol.ErrNoReply))
				if !retry || ctx.Err() != nil {
					return
				}
				select {
				case <-time.After(backoff/2 + rand.N(backoff)): // ±50 %
				case <-ctx.Done():
					return
				}
				backoff = min(2*backoff, 2*time.Second)
			}
		}()
	}
	wg.Wait()
	total := 0
	for i := range n {
		total += tries[i]
		if errs[i] != nil || reps[i].Outcome != protocol.OutcomeOK {
			t.Errorf("svc%d after %d tries: %+v %v", i, tries[i], reps[i], errs[i])
		}
		if m := h.marks(fmt.Sprintf("svc%d", i)); m != 1 {
			t.Errorf("svc%d ran %d times", i, m)
		}
	}
	// The agent answers first and audits after: wait (bounded) for the lines.
	runs := 0
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		runs = 0
		for _, r := range h.records() {
			if r.Ran() {
				runs++
			}
		}
		if runs >= n || time.Now().After(deadline) {
			break
		}
	}
	if runs != n {
		t.Errorf("%d runs in the audit log, want %d", runs, n)
	}
	t.Logf("%d restarts in %d requests", n, total)
}
