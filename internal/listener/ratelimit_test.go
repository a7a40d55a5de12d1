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

// try lets a connection from a in and has it speak: a slot, or why not.
func try(l *limiter, a netip.Addr, now time.Time, lim Limits, pending func() bool) (*slot, []*slot, protocol.Outcome, string) {
	s, evicted, o, why := l.enter(a, nopCloser{}, pending, now, lim)
	if s == nil {
		return nil, evicted, o, why
	}
	ev, o, why, ok := l.spoke(s, lim, false)
	evicted = append(evicted, ev...)
	if !ok {
		l.release(s)
		return nil, evicted, o, why
	}
	return s, evicted, "", ""
}

// admitted lets a connection from a in and speak and, when framed, marks
// its request as arrived (it then holds its slot until released).
func admitted(t *testing.T, l *limiter, a netip.Addr, now time.Time, lim Limits, framed bool) *slot {
	t.Helper()
	s, evicted, _, why := try(l, a, now, lim, nil)
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
	if s, _, o, why := try(l, a, t1.Add(50*time.Millisecond), fast, nil); s != nil || o != protocol.OutcomeRateLimited || !strings.Contains(why, "concurrent") {
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
	if s, _, o, _ := try(l, a, now, lim, nil); s != nil || o != protocol.OutcomeRateLimited {
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

// TestLimiterEvicts: silent connections hold no slot; a connection over a
// limit when it speaks takes the slot of an idle one (spoke, then silent
// both ways for idleGrace, nothing waiting in its socket) of the source
// holding the most, of its own source for the per-source limit; one under
// way, one that spoke within the grace, one with bytes waiting and one
// with a request in progress are never evicted: the newcomer is refused.
// A full silent pool displaces its oldest silent connection without
// bytes waiting, of the source holding the most.
func TestLimiterEvicts(t *testing.T) {
	l := newLimiter()
	var clock time.Duration
	l.clock = func() time.Duration { return clock }
	lim := Limits{Rate: 100, Burst: 100, MaxConnsPerSource: 2, MaxConns: 4}
	a, b, c := mustAddr(t, "10.0.0.1"), mustAddr(t, "10.0.0.2"), mustAddr(t, "10.0.0.3")
	now := time.Unix(1000, 0)
	b1 := admitted(t, l, b, now, lim, false)
	a1 := admitted(t, l, a, now, lim, false)
	a2 := admitted(t, l, a, now, lim, false)
	// Within the grace a's third is refused, nothing evicted.
	if s, ev, o, why := try(l, a, now, lim, nil); s != nil || len(ev) != 0 || o != protocol.OutcomeRateLimited {
		t.Fatalf("a fresh connection was not protected: %v %v %s %s", s, ev, o, why)
	}
	// After it, a's third takes a1's slot (a's oldest idle), not b's.
	clock += idleGrace
	l.touch(a2) // a2 is under way: a byte just went
	a3, evicted, _, why := try(l, a, now, lim, nil)
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
	// Global: c1 fills max_conns. Later a2 and a3 are idle, and so is b1:
	// c's second takes a's oldest (a holds the most idle), not b1, older.
	c1 := admitted(t, l, c, now, lim, false)
	clock += idleGrace
	l.touch(c1)
	c2, evicted, _, _ := try(l, c, now, lim, nil)
	if c2 == nil || len(evicted) != 1 || evicted[0] != a2 {
		t.Fatalf("global eviction: %v %v", c2, evicted)
	}
	// Bytes waiting in b1's socket: not idle; a3 is taken instead.
	b1.pending = func() bool { return true }
	b2, evicted, _, _ := try(l, b, now, lim, nil)
	if b2 == nil || len(evicted) != 1 || evicted[0] != a3 {
		t.Fatalf("second global eviction: %v %v", b2, evicted)
	}
	// Now every slot spoke within the grace, had bytes waiting or holds a
	// frame: busy.
	l.framed(c2)
	if s, ev, o, why := try(l, a, now, lim, nil); s != nil || len(ev) != 0 || o != protocol.OutcomeBusy || !strings.Contains(why, "max_conns") {
		t.Fatalf("all slots in progress: %v %v %s %s", s, ev, o, why)
	}

	// The silent pool (16 × max_conns): full of c's silent connections
	// and one of b's, the next newcomer displaces c's oldest, skipping
	// one with bytes waiting.
	var silent []*slot
	for i := range silentPerConn * lim.MaxConns {
		src, pend := c, func() bool { return false }
		if i == 0 {
			src = b
		}
		if i == 1 {
			pend = func() bool { return true }
		}
		s, ev, _, why := l.enter(src, nopCloser{}, pend, now, lim)
		if s == nil || len(ev) != 0 {
			t.Fatalf("silent %d: %s %v", i, why, ev)
		}
		silent = append(silent, s)
	}
	if l.total != 4 {
		t.Fatalf("silent connections took slots: %d", l.total)
	}
	s, ev, _, _ := l.enter(a, nopCloser{}, nil, now, lim)
	if s == nil || len(ev) != 1 || ev[0] != silent[2] {
		t.Fatalf("silent pool full: %v evicted %v, want the third", s, ev)
	}
	for _, s := range append(silent, s, b1, c1, c2, b2, a1, a2, a3) {
		l.release(s)
	}
	if l.total != 0 || l.silent.Len() != 0 || l.spoken.Len() != 0 {
		t.Fatalf("after releasing everything: %d slots, %d silent, %d spoken", l.total, l.silent.Len(), l.spoken.Len())
	}
	for a, src := range l.sources {
		if src.conns != 0 || src.silent != 0 {
			t.Fatalf("source %s still counts %d slots, %d silent", a, src.conns, src.silent)
		}
	}
}

// TestLimiterWholeOpening: with every slot of a source held by
// connections that spoke within the grace, a newcomer whose first read
// held its whole opening message takes the slot of one still partial (the
// oldest), never of one whose opening was whole; a partial newcomer is
// refused; under the global limit the same.
func TestLimiterWholeOpening(t *testing.T) {
	for _, global := range []bool{false, true} {
		l := newLimiter()
		lim := Limits{Rate: 100, Burst: 100, MaxConnsPerSource: 3, MaxConns: 100}
		if global {
			lim = Limits{Rate: 100, Burst: 100, MaxConnsPerSource: 100, MaxConns: 3}
		}
		a := mustAddr(t, "10.0.0.1")
		now := time.Unix(1000, 0)
		speak := func(whole bool) (*slot, []*slot, protocol.Outcome) {
			s, ev, _, _ := l.enter(a, nopCloser{}, nil, now, lim)
			ev2, o, _, ok := l.spoke(s, lim, whole)
			if !ok {
				l.release(s)
				s = nil
			}
			return s, append(ev, ev2...), o
		}
		partial1, _, _ := speak(false)
		wholeOld, _, _ := speak(true)
		partial2, _, _ := speak(false)
		if partial1 == nil || wholeOld == nil || partial2 == nil {
			t.Fatal("the first three were refused")
		}
		if s, _, o := speak(false); s != nil || o == "" {
			t.Fatalf("global %v: a partial newcomer took a slot within the grace", global)
		}
		s, ev, _ := speak(true)
		if s == nil || len(ev) != 1 || ev[0] != partial1 {
			t.Fatalf("global %v: a whole newcomer: admitted %v, evicted %d (want the oldest partial one)", global, s != nil, len(ev))
		}
		if s, ev, _ = speak(true); s == nil || len(ev) != 1 || ev[0] != partial2 {
			t.Fatalf("global %v: the second whole newcomer did not take the other partial slot", global)
		}
		if s, _, o := speak(true); s != nil || o == "" {
			t.Fatalf("global %v: a whole newcomer evicted a whole connection within the grace", global)
		}
		if !l.wasEvicted(partial1) || l.wasEvicted(wholeOld) {
			t.Fatalf("global %v: evictions wrong", global)
		}
	}
	// A partial opening completed by a later read is whole from then on.
	l := newLimiter()
	lim := Limits{Rate: 100, Burst: 100, MaxConnsPerSource: 1, MaxConns: 100}
	a := mustAddr(t, "10.0.0.1")
	now := time.Unix(1000, 0)
	s, _, _, _ := l.enter(a, nopCloser{}, nil, now, lim)
	if _, _, _, ok := l.spoke(s, lim, false); !ok {
		t.Fatal("first refused")
	}
	l.madeWhole(s)
	n, _, _, _ := l.enter(a, nopCloser{}, nil, now, lim)
	if _, o, _, ok := l.spoke(n, lim, true); ok || o == "" || l.wasEvicted(s) {
		t.Fatal("a whole newcomer displaced an opening made whole")
	}
}

// TestOpening: the opening message is whole with the frame's newline,
// or, under TLS, a handshake record all there, read or waiting; a record
// split across reads becomes whole with its last byte.
func TestOpening(t *testing.T) {
	hello := append([]byte{22, 3, 1, 0x05, 0x00}, make([]byte, 0x500)...)
	for _, c := range []struct {
		reads  [][]byte
		unread int // behind the last read
		tls    bool
		want   bool
	}{
		{[][]byte{[]byte("SH2 x y\n")}, 0, false, true},
		{[][]byte{[]byte("S")}, 0, false, false},
		{[][]byte{[]byte("S"), []byte("H2\n")}, 0, false, true},
		{[][]byte{[]byte("SH2 x y\n")}, 0, true, false},
		{[][]byte{hello}, 0, true, true},
		{[][]byte{hello[:517]}, len(hello) - 517, true, true},
		{[][]byte{hello[:517]}, 10, true, false},
		{[][]byte{hello[:517], hello[517:1000]}, 0, true, false},
		{[][]byte{hello[:517], hello[517:]}, 0, true, true},
		{[][]byte{hello[:3], hello[3:]}, 0, true, true},
		{[][]byte{hello[:4]}, 2000, true, false},
		{[][]byte{{22}}, 0, true, false},
		{[][]byte{append([]byte{23}, hello[1:]...)}, 0, true, false},
	} {
		o := opening{tls: c.tls}
		var got bool
		for i, r := range c.reads {
			unread := 0
			if i == len(c.reads)-1 {
				unread = c.unread
			}
			got = o.add(r, unread)
		}
		if got != c.want {
			t.Errorf("%d reads (tls %v, unread %d): whole %v, want %v", len(c.reads), c.tls, c.unread, got, c.want)
		}
	}
}
