package engine

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// linkProxy is the lab's cable between zone endpoints: a TCP forwarder on
// 127.0.0.1:0 to one endpoint's API port that can be cut and restored.
// Our own code, not a library: it is a few dozen lines over net, and the
// cut must close every live connection and keep refusing, which generic
// proxies do not offer.
type linkProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu       sync.Mutex
	cut      bool
	closed   bool
	conns    map[net.Conn]struct{}
	accepted int // connections let through, ever
}

func newLinkProxy(target string) (*linkProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("engine: proxy listen: %w", err)
	}
	p := &linkProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Port is the port peers dial instead of the target's.
func (p *linkProxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *linkProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE: do not spin
			continue
		}
		p.mu.Lock()
		if p.cut || p.closed {
			p.mu.Unlock()
			// Refused: the listener stays bound (so Restore never races for
			// the port), the peer sees a reset before any TLS byte.
			reset(c)
			continue
		}
		p.conns[c] = struct{}{}
		p.accepted++
		p.wg.Add(1)
		p.mu.Unlock()
		go p.forward(c)
	}
}

func (p *linkProxy) forward(down net.Conn) {
	defer p.wg.Done()
	defer p.drop(down)
	p.mu.Lock()
	target := p.target
	p.mu.Unlock()
	up, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	if !p.track(up) {
		return
	}
	defer p.drop(up)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(up, down)
	go pipe(down, up)
	<-done
	// One side ended: end both, so the other copy returns too.
	p.drop(down)
	p.drop(up)
	<-done
}

// track adds an upstream connection unless the link was cut meanwhile.
func (p *linkProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut || p.closed {
		reset(c)
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *linkProxy) drop(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

// Cut resets every connection through the proxy and refuses new ones until
// Restore. Both endpoints see their peer go at once, instead of after a
// missed-heartbeat timeout.
func (p *linkProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		reset(c)
		delete(p.conns, c)
	}
}

// Restore lets connections through again; Icinga 2 reconnects on its own
// timer (every 10 s).
func (p *linkProxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// Close cuts the link, closes the listener and waits for every goroutine.
func (p *linkProxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.Cut()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

// reset closes c with an RST rather than a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// Proxy is a TCP forwarder on 127.0.0.1 that counts the connections it
// lets through: put in front of an API, it tells whether a client opened
// any connection at all (TLS stays end to end, the proxy sees bytes only).
type Proxy struct{ p *linkProxy }

// NewProxy forwards 127.0.0.1:<a port from the kernel> to target.
func NewProxy(target string) (*Proxy, error) {
	p, err := newLinkProxy(target)
	if err != nil {
		return nil, err
	}
	return &Proxy{p: p}, nil
}

// Port is the proxy's own port.
func (x *Proxy) Port() int { return x.p.Port() }

// SetTarget forwards the next connections to target (e.g. once the API's
// port is known, after the proxy's went into the engine's config).
func (x *Proxy) SetTarget(target string) {
	x.p.mu.Lock()
	x.p.target = target
	x.p.mu.Unlock()
}

// Conns is how many connections went through so far.
func (x *Proxy) Conns() int {
	x.p.mu.Lock()
	defer x.p.mu.Unlock()
	return x.p.accepted
}

// Close closes the proxy and every connection through it.
func (x *Proxy) Close() error { return x.p.Close() }
