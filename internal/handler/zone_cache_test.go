package handler

import (
	"context"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/breaker"
)

// TestZoneCache: one read serves the asks within TTL; a failed read is
// not kept.
func TestZoneCache(t *testing.T) {
	c := &ZoneCache{TTL: 2 * time.Second}
	reads := 0
	read := func(context.Context) ([]breaker.Failing, time.Time, error) {
		reads++
		return []breaker.Failing{{Key: "h!s"}}, time.Unix(999, 0), nil
	}
	t0 := time.Unix(1000, 0)
	for _, at := range []time.Duration{0, time.Second, 1999 * time.Millisecond, 2 * time.Second, 3 * time.Second} {
		if l, viewAt, err := c.get(context.Background(), t0.Add(at), read); err != nil || len(l) != 1 || viewAt.Unix() != 999 {
			t.Fatal(l, viewAt, err)
		}
	}
	if reads != 2 {
		t.Fatalf("%d reads, want 2", reads)
	}
	if _, _, err := c.get(context.Background(), t0.Add(time.Hour), func(context.Context) ([]breaker.Failing, time.Time, error) {
		return nil, time.Time{}, context.Canceled
	}); err == nil {
		t.Fatal("no error")
	}
	if _, _, err := c.get(context.Background(), t0.Add(time.Hour), read); err != nil || reads != 3 {
		t.Fatalf("after a failed read: %d reads, %v", reads, err)
	}
}
