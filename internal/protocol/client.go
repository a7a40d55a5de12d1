package protocol

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/selfheal/selfheal/internal/fsutil"
)

// ClientConfig configures a Client.
type ClientConfig struct {
	Addr string // host:port
	// Key is a fleet key (the monitoring nodes') or the agent's own host key.
	Key Key
	// Agent names the agent at Addr; requests are signed for it alone, and a
	// reply from any other agent is refused.
	Agent string
	TLS   *tls.Config      // nil = plain TCP (HMAC still applies)
	Now   func() time.Time // nil = time.Now
	// Nonce makes each request's nonce (nil = NewNonce); check_selfheal
	// wraps it to learn the nonce a status reply's last line is bound to.
	Nonce func() (string, error)
}

// Client sends authenticated requests to one worker_listener. It is safe
// for concurrent use; each Do uses its own connection.
type Client struct {
	cfg    ClientConfig
	key    Key // the host key for cfg.Agent
	dialer net.Dialer
}

// The two kinds of transport failure. Which one it was decides what a
// caller may say: ErrNotSent means the agent cannot have acted on this
// request; ErrNoReply means it may have.
var (
	ErrNotSent = errors.New("request not sent")
	ErrNoReply = errors.New("request sent, no valid reply")
)

// NewClient returns a client for cfg, deriving the agent's host key.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Nonce == nil {
		cfg.Nonce = NewNonce
	}
	k, err := cfg.Key.ForAgent(cfg.Agent)
	if err != nil {
		return nil, err
	}
	return &Client{cfg: cfg, key: k}, nil
}

// SetLocalAddr makes the client dial from a given local address (tests
// use it to come from a second loopback source).
func (c *Client) SetLocalAddr(a net.Addr) { c.dialer.LocalAddr = a }

// Do sends one authenticated request in the short form (no fault start
// time, the short reply) and waits for the reply, bounded by ctx. err !=
// nil only for transport/protocol failures, and then wraps ErrNotSent
// (nothing reached the agent: dial refused, TLS handshake failed) or
// ErrNoReply (the request was written; the reply was lost, reset,
// malformed, unauthenticated or from another agent). Both are safe to
// retry with the same fault: the agent runs a fault's restart once. A
// refusal or a failed action is a Reply with nil error. For VerbPing the
// service and fault are ignored.
func (c *Client) Do(ctx context.Context, verb Verb, service, fault string) (Reply, error) {
	return c.send(ctx, Call{Verb: verb, Service: service, Fault: fault}, false)
}

// Send is Do in the extended form: the request carries when the fault
// began (c.Since, zero: not known) and the reply the agent's note and the
// age of a recorded answer. An agent older than the extended form denies
// it.
func (c *Client) Send(ctx context.Context, call Call) (Reply, error) {
	return c.send(ctx, call, true)
}

func (c *Client) send(ctx context.Context, call Call, extended bool) (Reply, error) {
	verb, service, fault := call.Verb, call.Service, call.Fault
	if !verb.Valid() {
		return Reply{}, fmt.Errorf("unknown verb %q", verb)
	}
	if verb == VerbPing {
		service, fault = "-", "-"
	} else if !nameOK(service) {
		return Reply{}, fmt.Errorf("invalid service name %q", service)
	}
	if fault == "" {
		fault = "-"
	}
	if !ValidFault(fault) {
		return Reply{}, fmt.Errorf("invalid fault id %q (1-64 of a-z 0-9 . _ - :)", fault)
	}
	nonce, err := c.cfg.Nonce()
	if err != nil {
		return Reply{}, err
	}
	req := NewRequest(c.key, verb, service, fault, c.cfg.Now(), nonce)
	if extended {
		call.Service, call.Fault = service, fault
		req = NewExtendedRequest(c.key, call, c.cfg.Now(), nonce)
	}

	conn, err := c.dialer.DialContext(ctx, "tcp", c.cfg.Addr)
	if err != nil {
		return Reply{}, fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	// A deadline in the past when ctx ends unblocks any read or write.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if c.cfg.TLS != nil {
		tcfg := c.cfg.TLS
		if tcfg.ServerName == "" && !tcfg.InsecureSkipVerify {
			// tls.Client, unlike tls.Dial, does not default the name to
			// the dialled host, and refuses to handshake without one.
			host, _, err := net.SplitHostPort(c.cfg.Addr)
			if err != nil {
				return Reply{}, fmt.Errorf("%w: %w", ErrNotSent, err)
			}
			tcfg = tcfg.Clone()
			tcfg.ServerName = host
		}
		tc := tls.Client(conn, tcfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return Reply{}, fmt.Errorf("%w: %w", ErrNotSent, ctxErr(ctx, fmt.Errorf("TLS handshake: %w", err)))
		}
		conn = tc
	}
	// From the first byte written on, the agent may have acted.
	if _, err := conn.Write(req.Marshal()); err != nil {
		return Reply{}, fmt.Errorf("%w: %w", ErrNoReply, ctxErr(ctx, err))
	}
	line, err := ReadFrame(bufio.NewReaderSize(conn, 1024), MaxReplyFrame)
	if err != nil {
		return Reply{}, fmt.Errorf("%w: %w", ErrNoReply, ctxErr(ctx, fmt.Errorf("reading reply: %w", err)))
	}
	rep, err := ParseReply(line, c.key, nonce)
	if err != nil {
		return Reply{}, fmt.Errorf("%w: reply: %w", ErrNoReply, err)
	}
	return rep, nil
}

// ctxErr prefers the context's error, which says why the I/O was cut.
func ctxErr(ctx context.Context, err error) error {
	if ce := ctx.Err(); ce != nil {
		return fmt.Errorf("%w (%v)", ce, err)
	}
	// The socket deadline is the context's: it may fire a moment first.
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
	}
	return err
}

// ClientTLS builds a TLS 1.3 client config. caFile verifies the agent's
// certificate (empty = system roots); certFile and keyFile, when set, are
// the client certificate for mTLS; serverName overrides the name checked
// in the agent's certificate (empty = the dialled host).
func ClientTLS(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, ServerName: serverName}
	if caFile != "" {
		pool, err := fsutil.LoadCertPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("TLS client certificate needs both a cert file and a key file")
	}
	if certFile != "" {
		cert, _, err := fsutil.LoadKeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
