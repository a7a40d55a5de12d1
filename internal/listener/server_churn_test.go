package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/protocol"
)

// retryDo sends verb as handle_worker does: transport failures, busy and
// rate-limited are retried with jittered backoff (100 ms doubling to 2 s,
// ±50 %) within its 18 s deadline, same fault, new nonce. It returns the
// number of tries and the last answer.
func retryDo(c *protocol.Client, verb protocol.Verb, svc, fault string) (int, protocol.Reply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 18*time.Second)
	defer cancel()
	backoff := 100 * time.Millisecond
	for tries := 1; ; tries++ {
		rep, err := c.Do(ctx, verb, svc, fault)
		retry := err == nil && rep.Outcome.Retryable() ||
			err != nil && (errors.Is(err, protocol.ErrNotSent) || errors.Is(err, protocol.ErrNoReply))
		if !retry || ctx.Err() != nil {
			return tries, rep, err
		}
		select {
		case <-time.After(backoff/2 + rand.N(backoff)):
		case <-ctx.Done():
			return tries, rep, err
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// churn opens idle connections to addr from 127.0.0.1 (the handler's own
// address) as fast as workers goroutines can, each keeping its keep newest
// open and closing the oldest, until stop; it returns how many it opened.
func churn(addr string, workers, keep int, stop <-chan struct{}) func() int64 {
	var opened atomic.Int64
	var wg sync.WaitGroup
	// No bind to 127.0.0.1 (the source a loopback connect gets anyway):
	// an unbound connect may reuse a loopback port in TIME_WAIT, so the
	// churn is not throttled by its own ports.
	d := &net.Dialer{Timeout: 5 * time.Second}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ring []net.Conn
			defer func() {
				for _, c := range ring {
					c.Close()
				}
			}()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := d.Dial("tcp", addr)
				if err != nil {
					continue
				}
				opened.Add(1)
				if ring = append(ring, c); len(ring) > keep {
					ring[0].Close()
					ring = ring[1:]
				}
			}
		}()
	}
	return func() int64 { wg.Wait(); return opened.Load() }
}

// TestChurnNeverLocksOut: issue 18's attack. While a local process opens
// idle connections from the handler's own address as fast as it can
// (keeping 16 each, closing the oldest, as in the report; and keeping 600
// each, which overflows the pool of silent connections), 10 signed
// restarts, sent as handle_worker sends them, all run, each on its first
// try: over plain TCP and mTLS, under the shipped limits.
func TestChurnNeverLocksOut(t *testing.T) {
	for _, tc := range []struct {
		name string
		tls  bool
		keep int
	}{{"plain/keep16", false, 16}, {"plain/keep600", false, 600}, {"mtls/keep16", true, 16}, {"mtls/keep600", true, 600}} {
		t.Run(tc.name, func(t *testing.T) {
			o := opts{limits: shippedLimits(t)}
			var ctls *tls.Config
			if tc.tls {
				p := pki{dir: t.TempDir()}
				ca, caKey := p.issue(t, "ca", nil, nil, true)
				p.issue(t, "server", ca, caKey, false)
				p.issue(t, "client", ca, caKey, false)
				o.tls = &rig.TLS{Cert: p.path("server.crt"), Key: p.path("server.key"), ClientCA: p.path("ca.crt")}
				var err error
				if ctls, err = protocol.ClientTLS(p.path("ca.crt"), p.path("client.crt"), p.path("client.key"), "localhost"); err != nil {
					t.Fatal(err)
				}
			}
			h := newHarness(t, o)
			c := newClient(t, h.addr, h.fleet, h.agent, ctls)
			stop := make(chan struct{})
			opened := churn(h.addr, 4, tc.keep, stop)
			// The churn is on before the first restart; keeping 600 each,
			// it has overflowed the silent pool (1024 at the shipped
			// max_conns).
			want := int64(200)
			if tc.keep*4 > silentPerConn*shippedLimits(t).MaxConns {
				want = int64(silentPerConn*shippedLimits(t).MaxConns) + 500
			}
			for deadline := time.Now().Add(30 * time.Second); h.srv.served.Load() < want; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					close(stop)
					opened()
					t.Fatalf("the churn never got going: %d served", h.srv.served.Load())
				}
			}
			start := time.Now()
			tries, ok := 0, 0
			for i := range 10 {
				n, rep, err := retryDo(c, protocol.VerbRestart, "demo", fmt.Sprintf("churn-%d", i))
				tries += n
				if err != nil || rep.Outcome != protocol.OutcomeOK || rep.Origin != protocol.OriginRun {
					t.Errorf("restart %d after %d tries: %+v %v", i, n, rep, err)
					continue
				}
				ok++
			}
			took := time.Since(start)
			if tries != 10 {
				// Retries hid the attack in part (the report's handler
				// saw 2 of 5 fail): every first try must get through.
				t.Errorf("%d tries for 10 restarts: the churn refused or evicted a signed request", tries)
			}
			close(stop)
			n := opened()
			if m := h.marks("demo"); m != ok {
				t.Errorf("%d restarts ran, %d answered ok", m, ok)
			}
			t.Logf("%d of 10 restarts ran in %d tries and %s, against %d idle connections (%.0f/s)",
				ok, tries, took.Round(time.Millisecond), n, float64(n)/took.Seconds())
		})
	}
}
