package listener

import (
	"net/netip"
	"strings"
	"testing"
	"time"
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

// TestLimiterPrune: only idle sources with a full bucket are forgotten.
func TestLimiterPrune(t *testing.T) {
	l := newLimiter()
	lim := Limits{Rate: 2, Burst: 3, MaxConnsPerSource: 2}
	idle, busy, drained := mustAddr(t, "10.0.0.1"), mustAddr(t, "10.0.0.2"), mustAddr(t, "10.0.0.3")
	now := time.Unix(1000, 0)
	for _, a := range []netip.Addr{idle, busy} {
		if ok, why := l.admit(a, now, lim); !ok {
			t.Fatal(why)
		}
	}
	l.release(idle)
	later := now.Add(time.Second) // idle's bucket is full again
	for i := 0; i < 3; i++ {
		if ok, why := l.admit(drained, later, lim); !ok {
			t.Fatal(why)
		}
		l.release(drained)
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
	slow := Limits{Rate: 0.001, Burst: 2, MaxConnsPerSource: 8}
	for i := 0; i < 2; i++ {
		if ok, _ := l.admit(a, now, slow); !ok {
			t.Fatalf("admit %d refused", i)
		}
	}
	if ok, why := l.admit(a, now, slow); ok || !strings.Contains(why, "rate") {
		t.Fatalf("empty bucket admitted: %v %s", ok, why)
	}
	fast := Limits{Rate: 100, Burst: 1, MaxConnsPerSource: 1}
	t1 := now.Add(time.Second)
	l.admit(a, t1, fast) // whatever the bucket held, the new limits apply from here
	if ok, why := l.admit(a, t1.Add(50*time.Millisecond), fast); ok || !strings.Contains(why, "concurrent") {
		t.Fatalf("new per-source connection cap not applied: %v %s", ok, why)
	}
	for range 4 {
		l.release(a)
	}
	t2 := t1.Add(50 * time.Millisecond) // 5 tokens at 100/s, but the bucket holds 1
	if ok, why := l.admit(a, t2, fast); !ok {
		t.Fatalf("new rate not applied: %s", why)
	}
	l.release(a)
	if ok, why := l.admit(a, t2, fast); ok || !strings.Contains(why, "rate") {
		t.Fatalf("new burst not applied: %v %s", ok, why)
	}
}

func TestRateLimiter(t *testing.T) {
	l := newLimiter()
	lim := Limits{Rate: 2, Burst: 3, MaxConnsPerSource: 2}
	a, b := mustAddr(t, "10.0.0.1"), mustAddr(t, "10.0.0.2")
	now := time.Unix(1000, 0)
	for i := 0; i < 3; i++ {
		ok, _ := l.admit(a, now, lim)
		if i < 2 && !ok {
			t.Fatalf("admit %d refused", i)
		}
		if i == 2 && ok {
			t.Fatal("third concurrent connection admitted")
		}
	}
	l.release(a)
	l.release(a)
	if ok, _ := l.admit(a, now, lim); !ok {
		t.Fatal("third token refused")
	}
	l.release(a)
	if ok, why := l.admit(a, now, lim); ok || !strings.Contains(why, "rate") {
		t.Fatalf("empty bucket admitted: %v %s", ok, why)
	}
	if ok, _ := l.admit(b, now, lim); !ok {
		t.Fatal("another source starved by the first")
	}
	l.release(b)
	if ok, _ := l.admit(a, now.Add(600*time.Millisecond), lim); !ok {
		t.Fatal("bucket did not refill at 2/s")
	}
}
