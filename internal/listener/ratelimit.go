package listener

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter is a token bucket (golang.org/x/time/rate) and a
// concurrent-connection count per source address, so that one noisy
// source cannot starve another.
type limiter struct {
	mu      sync.Mutex
	sources map[netip.Addr]*source
}

type source struct {
	bucket *rate.Limiter
	conns  int
}

const maxSources = 1 << 16

func newLimiter() *limiter { return &limiter{sources: map[netip.Addr]*source{}} }

// admit takes one token and one connection slot for a, or reports which
// limit refused it. release must be called after a successful admit.
func (l *limiter) admit(a netip.Addr, now time.Time, lim Limits) (ok bool, why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.sources[a]
	if s == nil {
		if len(l.sources) >= maxSources {
			l.prune(now, lim)
		}
		s = &source{bucket: rate.NewLimiter(rate.Limit(lim.Rate), lim.Burst)} // starts full
		l.sources[a] = s
	}
	s.follow(now, lim)
	if s.conns >= lim.MaxConnsPerSource {
		return false, "too many concurrent connections from this source"
	}
	if !s.bucket.AllowN(now, 1) {
		return false, "request rate over the per-source limit"
	}
	s.conns++
	return true, ""
}

// follow applies the live limits, which a reload may have changed: the
// bucket keeps its tokens and refills at the new rate from now on.
func (s *source) follow(now time.Time, lim Limits) {
	if r := rate.Limit(lim.Rate); s.bucket.Limit() != r {
		s.bucket.SetLimitAt(now, r)
	}
	if s.bucket.Burst() != lim.Burst {
		s.bucket.SetBurstAt(now, lim.Burst)
	}
}

func (l *limiter) release(a netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.sources[a]; s != nil && s.conns > 0 {
		s.conns--
	}
}

// prune forgets idle sources whose bucket has refilled: they lose nothing.
func (l *limiter) prune(now time.Time, lim Limits) {
	for a, s := range l.sources {
		if s.conns != 0 {
			continue
		}
		s.follow(now, lim)
		if s.bucket.TokensAt(now) >= float64(lim.Burst) {
			delete(l.sources, a)
		}
	}
}
