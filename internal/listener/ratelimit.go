package listener

import (
	"container/list"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/selfheal/selfheal/internal/protocol"
)

// limiter keeps the connection slots, per source and in all, and a token
// bucket (golang.org/x/time/rate) per source address, so that one noisy
// source cannot starve another.
//
// A connection is not judged by when it opened but by what it does. Until
// its first byte arrives it is "silent" and holds no slot: it waits in a
// pool of silentPerConn × max_conns connections. A slot (max_conns_per_source
// and max_conns) is taken when the first byte is seen, so idle sockets, as
// many as anyone opens, can never lock out a signed request, whose client
// writes its frame (or its TLS ClientHello) the moment it connects.
//
// When the silent pool is full, a newcomer displaces the oldest silent
// connection, of the source holding the most of them, that has no bytes
// waiting in its socket: refusing the newcomer instead would let a churn
// (a local user opening sockets as fast as he can from the handler's own
// address) keep every newcomer out. A legitimate connection is displaced
// only if silentPerConn × max_conns (1024) others arrive between its
// connect and its first byte: microseconds for a client, 70 ms for the
// fastest churn measured (TestChurnNeverLocksOut, 14,000 a second).
//
// A connection that has spoken but sent no whole frame yet (a frame or a
// TLS handshake under way) is idle only once both sides have been silent
// for idleGrace with nothing waiting in its socket. A connection over a
// limit takes the slot of such an idle one, of the source holding the
// most; failing that, if it sent its whole opening message at once (frame
// or ClientHello), the slot of one whose opening message is still partial
// (see spoke); else it is refused (rate-limited for the per-source limit,
// busy for max_conns): never is a connection with a whole opening message
// under way, or one that spoke less than idleGrace ago and is not partial,
// evicted. A frame read in full holds its slot until its request is
// answered.
//
// The token is taken when a frame arrives, not when a connection opens:
// rate limits requests, and an idle socket costs a sender nothing.
type limiter struct {
	mu      sync.Mutex
	sources map[netip.Addr]*source
	total   int        // slots held
	silent  *list.List // of *slot, oldest first: no byte seen yet
	spoken  *list.List // of *slot, oldest first: holding a slot, no frame yet
	epoch   time.Time  // slot times are monotonic offsets from it
	clock   func() time.Duration
}

type source struct {
	bucket *rate.Limiter
	conns  int // slots held
	silent int // connections in the silent pool
	cand   int // victim's count, zero between its calls
}

// slot is one admitted connection.
type slot struct {
	addr netip.Addr
	src  *source
	conn io.Closer
	// pending reports bytes waiting unread in the socket (nil: never).
	pending func() bool
	elem    *list.Element // in silent or spoken
	inPool  *list.List    // which of the two, nil when in neither
	held    bool          // holds a slot
	evicted bool
	refused bool
	// whole: its opening message (a request frame, or the first TLS
	// record) is all in. A connection whose opening message is still
	// partial makes way for one that sent its whole at once.
	whole bool
	// last is when a byte last went either way (limiter clock).
	last atomic.Int64
}

// idleGrace is how long a connection that has spoken may be silent, both
// ways, before a newcomer may take its slot. A legitimate client writes its
// whole frame at once and answers a TLS server's flight within its own CPU
// time: milliseconds, some 100 ms on a machine with a load of 40 per core;
// one second is ten times that, and a fifth of the read and handshake
// timeouts that bound a connection that never finishes.
const idleGrace = time.Second

// silentPerConn sizes the silent pool: that many silent connections per
// max_conns slot (an fd and a parked goroutine each; 1024 at the default).
const silentPerConn = 16

const maxSources = 1 << 16

func newLimiter() *limiter {
	l := &limiter{sources: map[netip.Addr]*source{}, silent: list.New(), spoken: list.New(), epoch: time.Now()}
	l.clock = func() time.Duration { return time.Since(l.epoch) }
	return l
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

// enter takes a new connection from a into the silent pool, displacing
// (the caller closes them) the oldest silent connection of the source
// holding the most when the pool is full. pending, when not nil, reports
// bytes waiting in the connection's socket.
func (l *limiter) enter(a netip.Addr, conn io.Closer, pending func() bool, now time.Time, lim Limits) (s *slot, evicted []*slot, refusal protocol.Outcome, why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	src := l.source(a, now, lim)
	for l.silent.Len() >= silentPerConn*lim.MaxConns {
		v := l.victim(l.silent, nil, 0)
		if v == nil {
			return nil, evicted, protocol.OutcomeBusy, "silent connections' pool full, each with bytes waiting"
		}
		l.evict(v)
		evicted = append(evicted, v)
	}
	s = &slot{addr: a, src: src, conn: conn, pending: pending}
	s.last.Store(int64(l.clock()))
	s.elem, s.inPool = l.silent.PushBack(s), l.silent
	src.silent++
	return s, evicted, "", ""
}

// victim picks, from pool, the connection to evict: of those silent for
// at least grace and accepted by match (nil: any), the oldest without
// bytes waiting of the source holding the most (failing that, of any);
// nil when there is none. It runs in the accept loop on a full silent
// pool: a walk in memory without allocation, and a system call only for
// the candidates tried.
func (l *limiter) victim(pool *list.List, match func(*slot) bool, grace time.Duration) *slot {
	now := l.clock()
	ok := func(s *slot) bool {
		return (match == nil || match(s)) && now-time.Duration(s.last.Load()) >= grace
	}
	var best *source
	for e := pool.Front(); e != nil; e = e.Next() {
		if s := e.Value.(*slot); ok(s) {
			s.src.cand++
		}
	}
	for e := pool.Front(); e != nil; e = e.Next() {
		if s := e.Value.(*slot); ok(s) && (best == nil || s.src.cand > best.cand) {
			best = s.src
		}
	}
	var v, other *slot
	for e := pool.Front(); e != nil; e = e.Next() {
		s := e.Value.(*slot)
		if !ok(s) {
			continue
		}
		s.src.cand = 0
		if v != nil || s.src != best && other != nil {
			continue
		}
		if s.pending != nil && s.pending() {
			continue
		}
		if s.src == best {
			v = s
		} else {
			other = s
		}
	}
	if v == nil {
		v = other
	}
	return v
}

// spoke gives s, whose first byte just arrived, a slot: over a limit it
// evicts an idle connection (see limiter) or is refused: rate-limited for
// the per-source limit, busy for max_conns. whole says that its first read
// held a whole opening message: then, failing an idle one, it takes the
// slot of a connection whose opening message is still partial, however
// recently that one spoke. A client writes its frame, or its ClientHello,
// in one write; a connection that sent a byte of it and stopped is a churn
// (one byte a connection, 100 connections a second, kept the handler's
// own slots full for good: TestOneByteChurn). ok false with no refusal: s
// was evicted first.
func (l *limiter) spoke(s *slot, lim Limits, whole bool) (evicted []*slot, refusal protocol.Outcome, why string, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.evicted {
		return nil, "", "", false
	}
	src := l.sources[s.addr]
	l.unpool(s)
	src.silent--
	s.whole = whole
	// pick is victim with the grace, then, for a whole newcomer, without
	// it among the partial ones.
	pick := func(match func(*slot) bool) *slot {
		if v := l.victim(l.spoken, match, idleGrace); v != nil || !whole {
			return v
		}
		return l.victim(l.spoken, func(v *slot) bool { return !v.whole && (match == nil || match(v)) }, 0)
	}
	for src.conns >= lim.MaxConnsPerSource {
		v := pick(func(v *slot) bool { return v.addr == s.addr })
		if v == nil {
			s.refused = true
			return evicted, protocol.OutcomeRateLimited, "too many concurrent connections from this source, each with a request in progress or under way", false
		}
		l.evict(v)
		evicted = append(evicted, v)
	}
	for l.total >= lim.MaxConns {
		v := pick(nil)
		if v == nil {
			s.refused = true
			return evicted, protocol.OutcomeBusy, "max_conns reached, each with a request in progress or under way", false
		}
		l.evict(v)
		evicted = append(evicted, v)
	}
	s.held = true
	s.elem, s.inPool = l.spoken.PushBack(s), l.spoken
	src.conns++
	l.total++
	return evicted, "", "", true
}

// madeWhole notes that s's opening message, partial at its first byte,
// is now whole: a newcomer no longer displaces it within the grace.
func (l *limiter) madeWhole(s *slot) {
	l.mu.Lock()
	s.whole = true
	l.mu.Unlock()
}

// touch notes that a byte went either way on s: it is not idle.
func (l *limiter) touch(s *slot) { s.last.Store(int64(l.clock())) }

func (l *limiter) unpool(s *slot) {
	if s.inPool != nil {
		s.inPool.Remove(s.elem)
		s.elem, s.inPool = nil, nil
	}
}

func (l *limiter) evict(s *slot) {
	s.evicted = true
	l.free(s)
}

func (l *limiter) free(s *slot) {
	src := l.sources[s.addr]
	if s.inPool == l.silent && src != nil {
		src.silent--
	}
	l.unpool(s)
	if !s.held {
		return
	}
	s.held = false
	if src != nil && src.conns > 0 {
		src.conns--
	}
	l.total--
}

// framed marks s's request frame as arrived: s can no longer be evicted.
// False means it was evicted or refused first.
func (l *limiter) framed(s *slot) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.evicted || !s.held {
		return false
	}
	l.unpool(s)
	return true
}

// wasEvicted reports whether s lost its place to a newcomer.
func (l *limiter) wasEvicted(s *slot) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return s.evicted
}

// release frees s's place (a no-op once evicted).
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
		if s.conns != 0 || s.silent != 0 {
			continue
		}
		s.follow(now, lim)
		if s.bucket.TokensAt(now) >= float64(lim.Burst) {
			delete(l.sources, a)
		}
	}
}
