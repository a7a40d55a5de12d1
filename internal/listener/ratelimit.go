package listener

import (
	"net/netip"
	"sync"
	"time"
)

// limiter is a token bucket and a concurrent-connection count per source
// address, so that one noisy source cannot starve another.
type limiter struct {
	mu      sync.Mutex
	sources map[netip.Addr]*source
}

type source struct {
	tokens float64
	last   time.Time
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
		s = &source{tokens: float64(lim.Burst), last: now}
		l.sources[a] = s
	}
	s.tokens += now.Sub(s.last).Seconds() * lim.Rate
	if s.tokens > float64(lim.Burst) {
		s.tokens = float64(lim.Burst)
	}
	s.last = now
	if s.conns >= lim.MaxConnsPerSource {
		return false, "too many concurrent connections from this source"
	}
	if s.tokens < 1 {
		return false, "request rate over the per-source limit"
	}
	s.tokens--
	s.conns++
	return true, ""
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
		full := s.tokens+now.Sub(s.last).Seconds()*lim.Rate >= float64(lim.Burst)
		if s.conns == 0 && full {
			delete(l.sources, a)
		}
	}
}
