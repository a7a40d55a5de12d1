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
	Key  Key
	TLS  *tls.Config      // nil = plain TCP (HMAC still applies)
	Now  func() time.Time // nil = time.Now
}

// Client sends authenticated requests to one worker_listener. It is safe
// for concurrent use; each Do uses its own connection.
type Client struct {
	cfg    ClientConfig
	dialer net.Dialer
}

// NewClient returns a client for cfg.
func NewClient(cfg ClientConfig) *Client {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Client{cfg: cfg}
}

// SetLocalAddr makes the client dial from a given local address (tests
// use it to come from a second loopback source).
func (c *Client) SetLocalAddr(a net.Addr) { c.dialer.LocalAddr = a }

// Do sends one authenticated request and waits for the reply, bounded by
// ctx. err != nil only for transport/protocol failures (dial refused,
// timeout, reset, malformed or unauthenticated reply); such errors are
// retryable. A denial, a rate limit, a busy agent or a failed action is a
// Reply with nil error. For VerbPing the service is ignored.
func (c *Client) Do(ctx context.Context, verb Verb, service string) (Reply, error) {
	if !verb.Valid() {
		return Reply{}, fmt.Errorf("unknown verb %q", verb)
	}
	if verb == VerbPing {
		service = "-"
	} else if !nameOK(service) {
		return Reply{}, fmt.Errorf("invalid service name %q", service)
	}
	nonce, err := NewNonce()
	if err != nil {
		return Reply{}, err
	}
	req := NewRequest(c.cfg.Key, verb, service, c.cfg.Now(), nonce)

	conn, err := c.dialer.DialContext(ctx, "tcp", c.cfg.Addr)
	if err != nil {
		return Reply{}, err
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
				return Reply{}, err
			}
			tcfg = tcfg.Clone()
			tcfg.ServerName = host
		}
		tc := tls.Client(conn, tcfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return Reply{}, ctxErr(ctx, fmt.Errorf("TLS handshake: %w", err))
		}
		conn = tc
	}
	if _, err := conn.Write(req.Marshal()); err != nil {
		return Reply{}, ctxErr(ctx, err)
	}
	line, err := ReadFrame(bufio.NewReaderSize(conn, 1024), MaxReplyFrame)
	if err != nil {
		return Reply{}, ctxErr(ctx, fmt.Errorf("reading reply: %w", err))
	}
	rep, err := ParseReply(line, c.cfg.Key, nonce)
	if err != nil {
		return Reply{}, fmt.Errorf("reply: %w", err)
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
