package listener

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/protocol"
)

// TestRefusalLogBudget: 200 refusal lines at once, then 20 a second; the
// first line logged after a gap says how many were skipped.
func TestRefusalLogBudget(t *testing.T) {
	var b logBudget
	t0 := time.Unix(1000, 0)
	for i := 0; i < refusalLogBurst; i++ {
		if ok, n := b.take(t0); !ok || n != 0 {
			t.Fatalf("line %d of the burst: %v %d", i, ok, n)
		}
	}
	for i := 0; i < 5; i++ {
		if ok, _ := b.take(t0); ok {
			t.Fatalf("line %d past the burst logged", i)
		}
	}
	if ok, _ := b.take(t0.Add(-time.Second)); ok {
		t.Fatal("a clock step back refilled the budget")
	}
	t1 := t0.Add(110 * time.Millisecond) // 2.2 lines at 20/s
	if ok, n := b.take(t1); !ok || n != 6 {
		t.Fatalf("after the gap: %v, skipped %d, want true, 6", ok, n)
	}
	if ok, n := b.take(t1); !ok || n != 0 {
		t.Fatalf("second line after the gap: %v %d", ok, n)
	}
	if ok, _ := b.take(t1); ok {
		t.Fatal("third line after a 110 ms gap logged")
	}
	if ok, n := b.take(t1.Add(time.Hour)); !ok || n != 1 {
		t.Fatalf("after an hour: %v %d", ok, n)
	}
	for i := 1; i < refusalLogBurst; i++ { // the budget never exceeds the burst
		if ok, _ := b.take(t1.Add(time.Hour)); !ok {
			t.Fatalf("line %d of a refilled burst refused", i)
		}
	}
	if ok, _ := b.take(t1.Add(time.Hour)); ok {
		t.Fatal("refilled past the burst")
	}
}

// nopCloser stands for a connection in the limiter's tests.
type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// admitted admits a connection from a and, when framed, marks its request
// as arrived (it then holds its slot until released).
func admitted(t *testing.T, l *limiter, a netip.Addr, now time.Time, lim Limits, framed bool) *slot {
	t.Helper()
	s, evicted, _, why := l.admit(a, nopCloser{}, now, lim)
	if s == nil || len(evicted) != 0 {
		t.Fatalf("admit %s: %s (evicted %d)", a, why, len(evicted))
	}
	if framed && !l.framed(s) {
		t.Fatal("framed after admit: evicted")
	}
	return s
}

// TestLimiterPrune: only sources without connections and with a full
// bucket are forgotten.
func TestLimiterPrune(t *testing.T) {
	l := newLimiter()
	lim := Limits{Rate: 2, Burst: 3, MaxConnsPerSource: 2, MaxConns: 10}
	idle, busy, drained := mustAddr(t, "10.0.0.1"), mustAddr(t, "10.0.0.2"), mustAddr(t, "10.0.0.3")
	now := time.Unix(1000, 0)
	idleSlot := admitted(t, l, idle, now, lim, true)
	admitted(t, l, busy, now, lim, true)
	for _, a := range []netip.Addr{idle, busy} {
		if !l.take(a, now, lim) {
			t.Fatal("first token refused")
		}
	}
	l.release(idleSlot)
	later := now.Add(time.Second) // idle's bucket is full again
	for i := 0; i < 3; i++ {
		if !l.take(drained, later, lim) {
			t.Fatalf("token %d refused", i)
		}
	}
	l.prune(later, lim)
	if _, ok := l.sources[idle]; ok {
		t.Error("idle source with a full bucket kept")
	}
	if _, ok := l.sources[busy]; !ok {
		t.Error("source with an open connection forgotten")
	}
	if _, ok := l.sources[drained]; !ok {
		t.Error("source with a drained bucket forgotten: it would get a fresh burst")
	}
}

// TestLimiterFollowsReload: new limits apply to sources already known.
func TestLimiterFollowsReload(t *testing.T) {
	l := newLimiter()
	a := mustAddr(t, "10.0.0.1")
	now := time.Unix(1000, 0)
	slow := Limits{Rate: 0.001, Burst: 2, MaxConnsPerSource: 8, MaxConns: 64}
	for i := 0; i < 2; i++ {
		if !l.take(a, now, slow) {
			t.Fatalf("token %d refused", i)
		}
	}
	if l.take(a, now, slow) {
		t.Fatal("empty bucket gave a token")
	}
	fast := Limits{Rate: 100, Burst: 1, MaxConnsPerSource: 1, MaxConns: 64}
	t1 := now.Add(time.Second)
	first := admitted(t, l, a, t1, fast, true) // a request in progress holds the only slot
	if s, _, o, why := l.admit(a, nopCloser{}, t1.Add(50*time.Millisecond), fast); s != nil || o != protocol.OutcomeRateLimited || !strings.Contains(why, "concurrent") {
		t.Fatalf("new per-source connection cap not applied: %v %s %s", s, o, why)
	}
	l.release(first)
	t2 := t1.Add(50 * time.Millisecond) // 5 tokens at 100/s, but the bucket holds 1
	if !l.take(a, t2, fast) {
		t.Fatal("new rate not applied")
	}
	if l.take(a, t2, fast) {
		t.Fatal("new burst not applied")
	}
}

func TestRateLimiter(t *testing.T) {
	l := newLimiter()
	lim := Limits{Rate: 2, Burst: 3, MaxConnsPerSource: 2, MaxConns: 64}
	a, b := mustAddr(t, "10.0.0.1"), mustAddr(t, "10.0.0.2")
	now := time.Unix(1000, 0)
	held := []*slot{admitted(t, l, a, now, lim, true), admitted(t, l, a, now, lim, true)}
	if s, _, o, _ := l.admit(a, nopCloser{}, now, lim); s != nil || o != protocol.OutcomeRateLimited {
		t.Fatal("third concurrent connection with two requests in progress admitted")
	}
	for _, s := range held {
		l.release(s)
	}
	admitted(t, l, a, now, lim, false)
	for i := 0; i < 3; i++ {
		if !l.take(a, now, lim) {
			t.Fatalf("token %d refused", i)
		}
	}
	if l.take(a, now, lim) {
		t.Fatal("empty bucket gave a token")
	}
	if !l.take(b, now, lim) {
		t.Fatal("another source starved by the first")
	}
	if !l.take(a, now.Add(600*time.Millisecond), lim) {
		t.Fatal("bucket did not refill at 2/s")
	}
}

// TestLimiterEvicts: a newcomer over a limit takes the slot of the oldest
// connection that has sent no request yet (of its own source for the
// per-source limit, of anyone for max_conns); connections with a request
// in progress are never evicted, and when only they are left the newcomer
// is refused.
func TestLimiterEvicts(t *testing.T) {
	l := newLimiter()
	lim := Limits{Rate: 100, Burst: 100, MaxConnsPerSource: 2, MaxConns: 4}
	a, b, c := mustAddr(t, "10.0.0.1"), mustAddr(t, "10.0.0.2"), mustAddr(t, "10.0.0.3")
	now := time.Unix(1000, 0)
	b1 := admitted(t, l, b, now, lim, false) // the oldest idle one, of another source
	a1 := admitted(t, l, a, now, lim, false)
	a2 := admitted(t, l, a, now, lim, false)
	// Per source: a's third evicts a's oldest idle one, not b's.
	a3, evicted, _, why := l.admit(a, nopCloser{}, now, lim)
	if a3 == nil || len(evicted) != 1 || evicted[0] != a1 {
		t.Fatalf("per-source eviction: %v %v %s", a3, evicted, why)
	}
	if l.framed(a1) || !l.wasEvicted(a1) {
		t.Fatal("the evicted connection could still deliver its request")
	}
	l.release(a1) // its goroutine's release is a no-op
	if l.total != 3 || l.sources[a].conns != 2 {
		t.Fatalf("slots %d, a holds %d", l.total, l.sources[a].conns)
	}
	if !l.framed(a2) || !l.framed(a3) {
		t.Fatal("framed refused")
	}
	// Per source with a's two in progress: refused, nothing evicted.
	if s, ev, o, _ := l.admit(a, nopCloser{}, now, lim); s != nil || len(ev) != 0 || o != protocol.OutcomeRateLimited {
		t.Fatalf("a's requests in progress were not protected: %v %v %s", s, ev, o)
	}
	// Global: c's connection fills max_conns; the next evicts b1, the
	// oldest idle one, whoever's it is.
	c1 := admitted(t, l, c, now, lim, false)
	c2, evicted, _, _ := l.admit(c, nopCloser{}, now, lim)
	if c2 == nil || len(evicted) != 1 || evicted[0] != b1 {
		t.Fatalf("global eviction: %v %v", c2, evicted)
	}
	// Only requests in progress and c's two idle ones: a newcomer from b
	// evicts c1 (the oldest idle); once all are in progress, busy.
	b2, evicted, _, _ := l.admit(b, nopCloser{}, now, lim)
	if b2 == nil || len(evicted) != 1 || evicted[0] != c1 {
		t.Fatalf("second global eviction: %v %v", b2, evicted)
	}
	l.framed(c2)
	l.framed(b2)
	if s, ev, o, why := l.admit(b, nopCloser{}, now, lim); s != nil || len(ev) != 0 || o != protocol.OutcomeBusy || !strings.Contains(why, "max_conns") {
		t.Fatalf("all slots in progress: %v %v %s %s", s, ev, o, why)
	}
	for _, s := range []*slot{a2, a3, c2, b2, b1, c1} {
		l.release(s)
	}
	if l.total != 0 || l.waiting.Len() != 0 {
		t.Fatalf("after releasing everything: %d slots, %d waiting", l.total, l.waiting.Len())
	}
}
