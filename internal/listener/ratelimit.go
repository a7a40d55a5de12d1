package listener

import (
	"container/list"
	"io"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/selfheal/selfheal/internal/protocol"
)

// limiter keeps the connection slots, per source and in all, and a token
// bucket (golang.org/x/time/rate) per source address, so that one noisy
// source cannot starve another.
//
// A slot whose connection has not delivered a request frame yet is
// "waiting". When a new connection would exceed a limit, the oldest
// waiting connection (of that source, for the per-source limit) is
// evicted: closed, its slot given to the newcomer. So idle or slow
// sockets, authenticated or not, can never lock out a signed request;
// only when every slot holds a request in progress is a newcomer refused.
//
// The token is taken when a frame arrives, not when a connection opens:
// rate limits requests, and an idle socket costs a sender nothing.
type limiter struct {
	mu      sync.Mutex
	sources map[netip.Addr]*source
	total   int        // slots held
	waiting *list.List // of *slot, oldest first
}

type source struct {
	bucket *rate.Limiter
	conns  int
}

// slot is one admitted connection.
type slot struct {
	addr    netip.Addr
	conn    io.Closer
	elem    *list.Element // in waiting until its frame arrives
	held    bool
	evicted bool
}

const maxSources = 1 << 16

func newLimiter() *limiter {
	return &limiter{sources: map[netip.Addr]*source{}, waiting: list.New()}
}

func (l *limiter) source(a netip.Addr, now time.Time, lim Limits) *source {
	s := l.sources[a]
	if s == nil {
		if len(l.sources) >= maxSources {
			l.prune(now, lim)
		}
		s = &source{bucket: rate.NewLimiter(rate.Limit(lim.Rate), lim.Burst)} // starts full
		l.sources[a] = s
	}
	s.follow(now, lim)
	return s
}

// admit gives conn from a a slot, evicting the oldest waiting connections
// that stand in its way (the caller closes them), or says which limit
// refused it: rate-limited for the per-source one, busy for max_conns.
func (l *limiter) admit(a netip.Addr, conn io.Closer, now time.Time, lim Limits) (s *slot, evicted []*slot, refusal protocol.Outcome, why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	src := l.source(a, now, lim)
	for src.conns >= lim.MaxConnsPerSource {
		v := l.oldestWaiting(func(s *slot) bool { return s.addr == a })
		if v == nil {
			return nil, evicted, protocol.OutcomeRateLimited, "too many concurrent connections from this source, all with a request in progress"
		}
		l.evict(v)
		evicted = append(evicted, v)
	}
	for l.total >= lim.MaxConns {
		v := l.oldestWaiting(nil)
		if v == nil {
			return nil, evicted, protocol.OutcomeBusy, "max_conns reached, all with a request in progress"
		}
		l.evict(v)
		evicted = append(evicted, v)
	}
	s = &slot{addr: a, conn: conn, held: true}
	s.elem = l.waiting.PushBack(s)
	src.conns++
	l.total++
	return s, evicted, "", ""
}

func (l *limiter) oldestWaiting(match func(*slot) bool) *slot {
	for e := l.waiting.Front(); e != nil; e = e.Next() {
		if s := e.Value.(*slot); match == nil || match(s) {
			return s
		}
	}
	return nil
}

func (l *limiter) evict(s *slot) {
	s.evicted = true
	l.free(s)
}

func (l *limiter) free(s *slot) {
	if !s.held {
		return
	}
	s.held = false
	if s.elem != nil {
		l.waiting.Remove(s.elem)
		s.elem = nil
	}
	if src := l.sources[s.addr]; src != nil && src.conns > 0 {
		src.conns--
	}
	l.total--
}

// framed marks s's request frame as arrived: s can no longer be evicted.
// False means it was evicted first.
func (l *limiter) framed(s *slot) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.evicted {
		return false
	}
	if s.elem != nil {
		l.waiting.Remove(s.elem)
		s.elem = nil
	}
	return true
}

// wasEvicted reports whether s lost its slot to a newcomer.
func (l *limiter) wasEvicted(s *slot) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return s.evicted
}

// release frees s's slot (a no-op once evicted).
func (l *limiter) release(s *slot) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.free(s)
}

// take takes one token from a's bucket.
func (l *limiter) take(a netip.Addr, now time.Time, lim Limits) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.source(a, now, lim).bucket.AllowN(now, 1)
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

// prune forgets sources without connections whose bucket has refilled:
// they lose nothing.
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
