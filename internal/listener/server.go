package listener

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/selfheal/selfheal/internal/breaker"
	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/protocol"
	"github.com/selfheal/selfheal/internal/version"
)

// Deps are the server's injected dependencies.
type Deps struct {
	Now func() time.Time // nil = time.Now
	// Log is the operational log (start, reload, errors). Zero = discard.
	Log zerolog.Logger
	// Audit, when set, receives the audit log instead of cfg.AuditLog
	// (tests read it).
	Audit io.Writer
	// Inetd: one process per connection, so the nonce cache is opened per
	// request under a lock shared with other processes (the service
	// records always are), and the connection limits are inetd's.
	Inetd bool
}

// Server is a running worker_listener.
type Server struct {
	deps    Deps
	cfg     atomic.Pointer[Config]
	audit   atomic.Pointer[zerolog.Logger]
	auditMu sync.Mutex
	auditF  *os.File
	state   *fsutil.Dir // state_dir, checked and opened once at start
	nonces  *NonceCache // serve mode only
	lim     *limiter
	exec    *Executor
	active  atomic.Int64
	conns   sync.WaitGroup
	served  atomic.Int64
	refusal logBudget
	// bmem is the breaker in memory (serve mode only), kept while its
	// config is unchanged across reloads.
	bmemMu sync.Mutex
	bmem   *breaker.Memory
}

// breakerFlush is how often a serve agent writes its breaker back to the
// file for status tools and for its next start.
const breakerFlush = time.Second

// logBudget bounds the audit lines for refusals made before a peer could
// prove anything (source not allowed, rate-limited, busy): anyone who can
// reach the port could otherwise fill the disk one connection at a time.
// A line logged after some were skipped says how many.
type logBudget struct {
	mu      sync.Mutex
	bucket  *rate.Limiter // made on first use, full
	skipped int64
}

const (
	refusalLogRate  = 20  // lines per second
	refusalLogBurst = 200 // lines
)

// take reports whether a refusal may be logged now, and how many were
// skipped since the last one that was.
func (b *logBudget) take(now time.Time) (bool, int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bucket == nil {
		b.bucket = rate.NewLimiter(refusalLogRate, refusalLogBurst)
	}
	if !b.bucket.AllowN(now, 1) {
		b.skipped++
		return false, 0
	}
	n := b.skipped
	b.skipped = 0
	return true, n
}

// NewServer prepares a server for cfg (already validated by Load/Parse).
func NewServer(cfg *Config, deps Deps) (*Server, error) {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	state, err := openStateDir(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	s := &Server{deps: deps, lim: newLimiter(), state: state, exec: NewExecutor(cfg.StateDir, deps.Now)}
	s.exec.onWait = func(service string) {
		deps.Log.Info().Str("service", service).Msg("waiting for the service's lock: another agent process runs its action")
	}
	s.exec.onBreakerError = func(service string, err error) {
		deps.Log.Error().Err(err).Str("service", service).Msg("the breaker cannot answer: failing open, the restart is allowed")
	}
	s.exec.onDistrust = func(service string, verb protocol.Verb, err error) {
		deps.Log.Error().Str("service", service).Str("verb", string(verb)).Msg("action refused, not run: " + err.Error())
	}
	if err := s.setAudit(cfg); err != nil {
		state.Close()
		return nil, err
	}
	if !deps.Inetd {
		nc, err := OpenNonceCache(state, MaxReplayWindow, deps.Now(), 0)
		if err != nil {
			s.closeAudit()
			state.Close()
			return nil, err
		}
		s.nonces = nc
	}
	s.cfg.Store(cfg)
	return s, nil
}

// Executor exposes the executor's counters to tests and the benchmark.
func (s *Server) Executor() *Executor { return s.exec }

func (s *Server) setAudit(cfg *Config) error {
	var w io.Writer = os.Stderr
	var f *os.File
	switch {
	case s.deps.Audit != nil:
		w = s.deps.Audit
	case cfg.AuditLog != "" && cfg.AuditLog != "-":
		var err error
		f, err = openAppend("audit_log", cfg.AuditLog) // never through a symlink, reload included
		if err != nil {
			return fmt.Errorf("audit_log: %w", err)
		}
		w = f
	}
	l := zerolog.New(w).With().Timestamp().Logger()
	s.auditMu.Lock()
	old := s.auditF
	s.auditF = f
	s.audit.Store(&l)
	s.auditMu.Unlock()
	if old != nil {
		// Events still being written hold the old logger; a closed file
		// only loses those few lines, which a reload makes rare.
		time.AfterFunc(time.Second, func() { old.Close() })
	}
	return nil
}

func (s *Server) closeAudit() {
	s.auditMu.Lock()
	defer s.auditMu.Unlock()
	if s.auditF != nil {
		s.auditF.Close()
		s.auditF = nil
	}
}

// Reload swaps in a new, already validated config: keys, allow list,
// services, budgets, limits, TLS and the audit log file (reopened, for
// logrotate). Connections in progress finish under the config they
// started with. The listen address, state_dir and agent cannot change
// without a restart.
func (s *Server) Reload(cfg *Config) error {
	old := s.cfg.Load()
	if cfg.StateDir != old.StateDir {
		return errors.New("state_dir cannot change on reload: restart the agent")
	}
	if cfg.Agent != old.Agent {
		return fmt.Errorf("agent cannot change on reload (%s to %s): restart the agent", old.Agent, cfg.Agent)
	}
	if err := s.setAudit(cfg); err != nil {
		return err
	}
	if cfg.Listen != old.Listen {
		s.deps.Log.Warn().Str("old", old.Listen).Str("new", cfg.Listen).Msg("listen address changes only on restart")
	}
	s.cfg.Store(cfg)
	return nil
}

// Distrusted judges the running config's actions by the trust rule, as
// every run does, and returns one line per action that fails: those are
// refused until their files pass again. A refused reload (which keeps the
// running config) logs them, so that "keeping the running config" never
// hides an action that will not run.
func (s *Server) Distrusted() []string {
	cfg := s.cfg.Load()
	var out []string
	for _, n := range slices.Sorted(maps.Keys(cfg.Services)) {
		acts := cfg.Services[n].Actions
		for _, v := range slices.Sorted(maps.Keys(acts)) {
			if err := judgeAction(s.exec.trust, "service "+n+" action "+v, acts[v].Argv); err != nil {
				out = append(out, err.Error())
			}
		}
	}
	return out
}

// Serve accepts connections on every listener until ctx is done, then
// stops accepting and drains: it waits up to shutdown_grace for running
// requests, then kills running actions and waits for them (bounded).
func (s *Server) Serve(ctx context.Context, lns ...net.Listener) error {
	var wg sync.WaitGroup
	for _, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.acceptLoop(ctx, ln)
		}()
	}
	<-ctx.Done()
	for _, ln := range lns {
		ln.Close()
	}
	wg.Wait()
	return s.drain()
}

func (s *Server) drain() error {
	grace := s.cfg.Load().ShutdownGrace
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	conns := make(chan struct{})
	go func() { s.conns.Wait(); close(conns) }()
	var err error
	select {
	case <-conns:
	case <-ctx.Done():
	}
	// Actions can outlive their connection when a client gave up; they
	// get the rest of the same grace.
	if ctx.Err() != nil || s.exec.Wait(ctx) != nil {
		err = fmt.Errorf("shutdown grace %s exceeded: killed the running actions", grace)
		s.deps.Log.Warn().Msg(err.Error())
		s.exec.KillAll()
		hard, cancel := context.WithTimeout(context.Background(), maxKillGrace+pipeWait+5*time.Second)
		defer cancel()
		s.exec.Wait(hard)
		select {
		case <-conns:
		case <-hard.Done():
		}
	}
	s.Close()
	return err
}

// Close releases the nonce cache and the audit log. In inetd mode it
// first waits (bounded) for an action still running: the process must not
// exit from under it.
func (s *Server) Close() {
	if s.deps.Inetd {
		ctx, cancel := context.WithTimeout(context.Background(), maxActionTimeout+maxKillGrace+pipeWait+groupKillWait)
		s.exec.Wait(ctx)
		cancel()
	}
	if s.nonces != nil {
		s.nonces.Close()
	}
	s.closeAudit()
	s.state.Close()
}

func (s *Server) acceptLoop(ctx context.Context, ln net.Listener) {
	backoff := 5 * time.Millisecond
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: wait and retry, as net/http does.
			s.deps.Log.Error().Err(err).Msg("accept")
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		s.admit(conn)
	}
}

// admit applies the allow list to a new connection, in the accept loop,
// and lets it in to wait for its first byte (limiter): refusals are one
// small write to a fresh socket, which does not block. Silent connections
// displaced by it are closed.
func (s *Server) admit(conn net.Conn) {
	cfg := s.cfg.Load()
	refuse := func(o protocol.Outcome, reason string) {
		conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		conn.Write(protocol.MarshalReply(protocol.Reply{Outcome: o, ExitCode: -1}, nil, ""))
		conn.Close()
		s.auditRefusal(cfg, record{peer: conn.RemoteAddr().String(), outcome: o, reason: reason})
	}
	peer, ok := peerAddr(conn)
	if !ok {
		refuse(protocol.OutcomeDenied, "peer is not a TCP address")
		return
	}
	if !cfg.Allowed(peer) {
		refuse(protocol.OutcomeDenied, "source not in allow list")
		return
	}
	sl, evicted, refusal, why := s.lim.enter(peer, conn, pendingBytes(conn), s.deps.Now(), cfg.Limits)
	for _, v := range evicted {
		v.conn.Close() // its goroutine audits it
	}
	if sl == nil {
		refuse(refusal, why)
		return
	}
	s.active.Add(1)
	s.conns.Add(1)
	go func() {
		defer s.conns.Done()
		defer s.active.Add(-1)
		defer s.lim.release(sl)
		s.serveConn(&watched{Conn: conn, s: s, sl: sl, lim: cfg.Limits, open: opening{tls: cfg.tlsConf != nil}}, sl)
	}()
}

// watched is a connection under the limiter: its first byte takes a slot
// (limiter.spoke), and every byte either way marks it as not idle.
type watched struct {
	net.Conn
	s       *Server
	sl      *slot
	lim     Limits
	open    opening // its opening message, until whole
	spoken  bool
	refusal protocol.Outcome // set when its slot was refused
	why     string
}

// errNoSlot ends the reads of a connection refused a slot.
var errNoSlot = errors.New("no connection slot")

func (w *watched) Read(p []byte) (int, error) {
	if w.refusal != "" {
		return 0, errNoSlot
	}
	n, err := w.Conn.Read(p)
	if n > 0 {
		if w.spoken && !w.open.whole && w.open.add(p[:n], unreadBytes(w.Conn)) {
			w.s.lim.madeWhole(w.sl) // no longer a partial one a newcomer may displace
		}
		if !w.spoken {
			w.spoken = true
			evicted, o, why, ok := w.s.lim.spoke(w.sl, w.lim, w.open.add(p[:n], unreadBytes(w.Conn)))
			for _, v := range evicted {
				v.conn.Close()
			}
			if !ok {
				if o == "" {
					return 0, errNoSlot // evicted first: serveConn says so
				}
				w.refusal, w.why = o, why
				return 0, errNoSlot
			}
		}
		w.s.lim.touch(w.sl)
	}
	return n, err
}

func (w *watched) Write(p []byte) (int, error) {
	n, err := w.Conn.Write(p)
	if n > 0 {
		w.s.lim.touch(w.sl)
	}
	return n, err
}

// opening follows a connection's opening message until it is whole: the
// request frame (its newline), or under TLS the first record (the
// ClientHello: type 22, then version and length; one with a post-quantum
// key share is larger than crypto/tls's first read, and larger than one
// TCP segment on an Ethernet path).
type opening struct {
	tls   bool
	hdr   [5]byte
	hn    int // bytes of hdr filled
	got   int // bytes read so far
	whole bool
}

// add notes b, just read, with unread bytes waiting behind it in the
// socket, and reports whether the opening message is now whole.
func (o *opening) add(b []byte, unread int) bool {
	if o.whole {
		return true
	}
	if !o.tls {
		o.whole = bytes.IndexByte(b, '\n') >= 0
		return o.whole
	}
	o.hn += copy(o.hdr[o.hn:], b)
	o.got += len(b)
	o.whole = o.hn == len(o.hdr) && o.hdr[0] == 22 && o.got+unread >= len(o.hdr)+(int(o.hdr[3])<<8|int(o.hdr[4]))
	return o.whole
}

// unreadBytes is how many bytes wait unread in c's socket (SIOCINQ);
// 0 when it cannot tell.
func unreadBytes(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	rc.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ); err == nil {
			n = v
		}
	})
	return n
}

// pendingBytes reports, without reading them, whether bytes wait unread
// in c's socket: a frame the connection's goroutine has not read yet is a
// frame under way, never an idle connection.
func pendingBytes(c net.Conn) func() bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return func() bool {
		var buf [1]byte
		n := 0
		rc.Control(func(fd uintptr) {
			n, _, _ = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		})
		return n > 0
	}
}

// record is one audit line.
type record struct {
	peer    string
	tls     bool
	keyID   string
	agent   string // the request's
	verb    string
	service string
	fault   string
	nonce   string
	outcome protocol.Outcome
	res     *Result // the decision, when one was made
	reason  string
	start   time.Time
	skipped int64 // refusals not logged before this one (logBudget)
}

// auditRefusal logs an unauthenticated refusal within the refusal budget.
func (s *Server) auditRefusal(cfg *Config, r record) {
	ok, skipped := s.refusal.take(s.deps.Now())
	if !ok {
		return
	}
	r.skipped = skipped
	s.auditLine(cfg, r)
}

// auditLine writes one JSON line: who asked (peer, key id, the agent the
// request named), what (verb, service, fault, nonce prefix), the outcome
// and, when a decision was made, its origin, exit code and budget; the
// reason for every refusal.
func (s *Server) auditLine(cfg *Config, r record) {
	l := s.audit.Load()
	ev := l.Info()
	if r.outcome != protocol.OutcomeOK {
		ev = l.Warn()
	}
	ev = ev.Str("peer", r.peer).Str("outcome", string(r.outcome))
	if r.tls {
		ev = ev.Bool("tls", true)
	}
	if r.keyID != "" {
		ev = ev.Str("key_id", r.keyID).Str("agent", r.agent)
	}
	if r.verb != "" {
		ev = ev.Str("verb", r.verb).Str("service", r.service).Str("fault", r.fault)
	}
	if r.nonce != "" {
		ev = ev.Str("nonce", r.nonce[:8]) // a prefix identifies; never the MAC
	}
	if res := r.res; res != nil {
		ev = ev.Str("origin", string(res.Origin))
		if r.verb != string(protocol.VerbPing) {
			ev = ev.Int("exit_code", res.ExitCode).Bool("coalesced", res.Origin == protocol.OriginJoined)
		}
		if b := res.Budget; b.Max > 0 {
			ev = ev.Int("budget_used", b.Used).Int("budget_max", b.Max).Int64("retry_after_s", int64(b.RetryAfter.Round(time.Second)/time.Second))
		}
		if res.Detail != "" && r.reason == "" {
			ev = ev.Str("detail", res.Detail)
		}
		if v := res.Breaker; v != nil {
			ev = ev.Str("breaker", string(v.State)).Int("breaker_count", v.Count).Strs("breaker_keys", v.Keys)
		}
	}
	if r.reason != "" {
		ev = ev.Str("reason", r.reason)
	}
	if r.skipped > 0 {
		ev = ev.Int64("unlogged_refusals", r.skipped)
	}
	if !r.start.IsZero() {
		ev = ev.Float64("duration_ms", float64(s.deps.Now().Sub(r.start).Microseconds())/1000)
	}
	ev.Msg("request")
}

// ServeConn handles one connection: the whole request-reply exchange. It
// closes conn. inetd mode calls it directly; so do tests, without the
// connection limits of the accept loop.
func (s *Server) ServeConn(conn net.Conn) { s.serveConn(conn, nil) }

// serveConn is ServeConn for a connection that holds slot sl (nil: no
// connection limits apply, as under inetd).
func (s *Server) serveConn(conn net.Conn, sl *slot) {
	defer conn.Close()
	cfg := s.cfg.Load()
	now := s.deps.Now()
	s.served.Add(1) // after the clock is read: tests wait on it
	rec := record{peer: conn.RemoteAddr().String(), start: now}
	deny := func(reason string) {
		rec.outcome, rec.reason = protocol.OutcomeDenied, reason
		conn.SetWriteDeadline(time.Now().Add(cfg.Limits.WriteTimeout))
		conn.Write(protocol.MarshalReply(protocol.Reply{Outcome: protocol.OutcomeDenied, ExitCode: -1}, nil, ""))
		s.auditLine(cfg, rec)
	}
	// evicted: a newcomer displaced this idle connection, or it was
	// refused a slot at its first byte (then told so, on plain TCP: a TLS
	// peer is mid-handshake and could not read it).
	evicted := func() bool {
		if w, ok := conn.(*watched); ok && w.refusal != "" {
			rec.outcome, rec.reason = w.refusal, w.why
			if !rec.tls && cfg.tlsConf == nil {
				conn.SetWriteDeadline(time.Now().Add(cfg.Limits.WriteTimeout))
				conn.Write(protocol.MarshalReply(protocol.Reply{Outcome: w.refusal, ExitCode: -1}, nil, ""))
			}
			s.auditRefusal(cfg, rec)
			return true
		}
		if sl == nil || !s.lim.wasEvicted(sl) {
			return false
		}
		rec.outcome, rec.reason = protocol.OutcomeBusy, "evicted: idle (no request frame, nothing heard), and a new connection needed its place"
		s.auditRefusal(cfg, rec)
		return true
	}

	peer, ok := peerAddr(conn)
	if !ok {
		deny("peer is not a TCP address")
		return
	}
	if sl == nil && !cfg.Allowed(peer) {
		rec.outcome, rec.reason = protocol.OutcomeDenied, "source not in allow list"
		conn.SetWriteDeadline(time.Now().Add(cfg.Limits.WriteTimeout))
		conn.Write(protocol.MarshalReply(protocol.Reply{Outcome: protocol.OutcomeDenied, ExitCode: -1}, nil, ""))
		s.auditRefusal(cfg, rec)
		return
	}
	// limited takes the source's token for this request (serve mode); over
	// the rate, it says so (reply false: the TLS handshake failed, there is
	// no channel to say it on) and audits within the refusal budget.
	// Every path that would write an unbudgeted audit line passes here.
	limited := func(reply bool) bool {
		if s.deps.Inetd || s.lim.take(peer, s.deps.Now(), cfg.Limits) {
			return false
		}
		rec.outcome, rec.reason = protocol.OutcomeRateLimited, "request rate over the per-source limit"
		if reply {
			conn.SetWriteDeadline(time.Now().Add(cfg.Limits.WriteTimeout))
			conn.Write(protocol.MarshalReply(protocol.Reply{Outcome: protocol.OutcomeRateLimited, ExitCode: -1}, nil, ""))
		}
		s.auditRefusal(cfg, rec)
		return true
	}
	if cfg.tlsConf != nil {
		tc := tls.Server(conn, cfg.tlsConf)
		conn.SetDeadline(time.Now().Add(cfg.Limits.HandshakeTimeout))
		if err := tc.Handshake(); err != nil {
			if evicted() {
				return
			}
			if w, ok := conn.(*watched); ok && !w.spoken {
				// Closed or timed out before its first byte: an idle
				// socket, which costs its source no token.
				rec.outcome, rec.reason = protocol.OutcomeDenied, "TLS handshake: "+err.Error()
				s.auditRefusal(cfg, rec)
				return
			}
			if limited(false) {
				return
			}
			rec.outcome, rec.reason = protocol.OutcomeDenied, "TLS handshake: "+err.Error()
			s.auditLine(cfg, rec)
			return // no reply: the peer does not speak TLS with us
		}
		conn = tc
		rec.tls = true
	}

	// The token is taken once the frame is in (or the read failed), not
	// when the connection opened: an idle socket costs a sender nothing.
	conn.SetDeadline(time.Now().Add(cfg.Limits.ReadTimeout))
	br := bufio.NewReaderSize(conn, 2*protocol.MaxRequestFrame)
	line, err := protocol.ReadFrame(br, protocol.MaxRequestFrame)
	if sl != nil && !s.lim.framed(sl) {
		if !evicted() {
			// Closed or timed out before its first byte: it never held a
			// slot, and nothing needs saying.
			rec.outcome, rec.reason = protocol.OutcomeDenied, fmt.Sprintf("reading request: %v", err)
			s.auditRefusal(cfg, rec)
		}
		return
	}
	if limited(true) {
		return
	}
	if err != nil {
		deny("reading request: " + err.Error())
		return
	}
	if br.Buffered() > 0 {
		deny("data after the request frame (pipelined command)")
		return
	}
	req, err := protocol.ParseRequest(line)
	if err != nil {
		deny("parsing request: " + err.Error())
		return
	}
	rec.keyID, rec.agent, rec.verb, rec.service, rec.fault, rec.nonce = req.KeyID, req.Agent, string(req.Verb), req.Service, req.Fault, req.Nonce
	key, ok := cfg.Key(req.KeyID)
	if !ok {
		deny("unknown key id")
		return
	}
	if !req.Verify(key) {
		// The agent field is covered by the MAC, so a request for another
		// agent cannot verify here; say which it named.
		if req.Agent != cfg.Agent {
			deny(fmt.Sprintf("request for agent %s, this is %s", req.Agent, cfg.Agent))
			return
		}
		deny("MAC does not verify")
		return
	}
	// From here on the peer holds this agent's key: answers are signed.
	reply := func(res Result) {
		rec.outcome, rec.res = res.Outcome, &res
		if refused := res.Outcome != protocol.OutcomeOK && res.Outcome != protocol.OutcomeFailed && res.Outcome != protocol.OutcomeTimeout; refused && rec.reason == "" {
			rec.reason = res.Detail
			if rec.reason == "" {
				rec.reason = res.Output
			}
		}
		conn.SetWriteDeadline(time.Now().Add(cfg.Limits.WriteTimeout))
		out := res.Output
		if res.LastRestart != nil {
			out = strings.TrimPrefix(out+"\n"+protocol.FormatLastRestart(req.Nonce, *res.LastRestart), "\n")
		}
		rep := protocol.Reply{Agent: cfg.Agent, Outcome: res.Outcome, Origin: res.Origin, ExitCode: res.ExitCode,
			Duration: res.Duration, AgentTime: s.deps.Now(), Budget: res.Budget, Output: out,
			Extended: req.Extended, Age: res.Age, Note: sanitize(res.Detail)}
		if _, err := conn.Write(protocol.MarshalReply(rep, &key, req.Nonce)); err != nil {
			rec.reason = "writing reply: " + err.Error()
		}
		s.auditLine(cfg, rec)
	}
	// The clock is read again here: the handshake and the read may have
	// taken seconds, which must not stretch the replay window.
	now = s.deps.Now()
	// Every authenticated nonce is recorded, whatever the answer: a
	// request refused as skew (62 s in the future) must not run when the
	// same bytes come back inside the window a few seconds later. The
	// cache keeps it until its own timestamp is 10 minutes old.
	if err := s.useNonce(cfg, req, now); err != nil {
		deny(err.Error())
		return
	}
	skew := now.Unix() - req.Timestamp
	w := int64(cfg.ReplayWindow / time.Second)
	if skew > w || skew < -w {
		why := fmt.Sprintf("timestamp %ds in the past (window %ds)", skew, w)
		if skew < 0 {
			why = fmt.Sprintf("timestamp %ds in the future (window %ds)", -skew, w)
		}
		rec.reason = why
		reply(notRun(protocol.OutcomeSkew, "clock skew: the request's time is outside the agent's replay window", why))
		return
	}
	if req.Verb == protocol.VerbPing {
		reply(Result{Outcome: protocol.OutcomeOK, Origin: protocol.OriginNone, Output: protocol.FormatPing(version.String("worker_listener"), cfg.StatusServices())})
		return
	}
	svc, ok := cfg.Services[req.Service]
	if !ok {
		deny("unknown service")
		return
	}
	// A query asks about the restart action, and runs nothing.
	verb := req.Verb
	if verb == protocol.VerbQuery {
		verb = protocol.VerbRestart
	}
	act, ok := svc.Actions[string(verb)]
	if !ok {
		deny("service has no such action")
		return
	}
	// The caller waits as long as the action may take plus its kill
	// grace (and, under inetd, the wait for a sibling's run); the action
	// itself is bounded by its timeout either way.
	conn.SetDeadline(time.Time{})
	j := Job{Service: req.Service, Verb: verb, Fault: req.Fault, Arrived: now, Since: FaultStart(req.FaultAge, now),
		Action: act, Budget: svc.RestartBudget(), Backoff: svc.RestartBackoff(), Breaker: s.breaker(cfg), LockWait: svc.maxHold()}
	if req.Verb == protocol.VerbQuery {
		reply(s.exec.Query(context.Background(), j))
		return
	}
	wait := act.Timeout + act.KillGrace + pipeWait + 5*time.Second
	if s.deps.Inetd {
		wait += j.LockWait
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	res := s.exec.Run(ctx, j)
	cancel()
	reply(res)
}

// breaker is the host's breaker under cfg, its state in state_dir (shared
// by inetd processes and kept across reloads); nil when off.
func (s *Server) breaker(cfg *Config) *HostBreaker {
	bc, n := cfg.HostBreaker()
	if bc == nil {
		return nil
	}
	hb := &HostBreaker{Store: breaker.Store{Dir: s.state, Name: breakerFile, Config: *bc}, Services: n}
	if !s.deps.Inetd {
		// One process: the breaker lives in memory, not a file lock and a
		// file write per restart (the throughput bench measured 0.8 ms).
		s.bmemMu.Lock()
		if s.bmem == nil || s.bmem.Store.Config != *bc {
			s.bmem = &breaker.Memory{Store: hb.Store, Flush: breakerFlush}
		}
		hb.Memory = s.bmem
		s.bmemMu.Unlock()
	}
	return hb
}

// breakerFile names the breaker's files in state_dir (.json, .lock).
const breakerFile = "breaker"

func (s *Server) useNonce(cfg *Config, req protocol.Request, now time.Time) error {
	nc := s.nonces
	if nc == nil {
		var err error
		nc, err = OpenNonceCache(s.state, MaxReplayWindow, now, 3*time.Second)
		if err != nil {
			return err
		}
		defer nc.Close()
	}
	if err := nc.Use(req.Nonce, req.Timestamp, now); err != nil {
		if errors.Is(err, ErrReplay) {
			return errors.New("replayed nonce")
		}
		return err
	}
	return nil
}

// peerAddr returns the peer's IP, unmapped from IPv4-in-IPv6.
func peerAddr(c net.Conn) (netip.Addr, bool) {
	ta, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	a, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}
