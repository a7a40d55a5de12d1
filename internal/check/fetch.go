package check

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/selfheal/selfheal/internal/plugin"
	"github.com/selfheal/selfheal/internal/status"
)

// One request on one connection, in the calling goroutine: no
// http.Transport, no pool, no background goroutines. check_worker makes
// exactly one request per process, and the transport's machinery cost
// more than the request itself (docs/benchmarks.md). The response is
// read by httpget.go, not net/http, for the same reason.

// maxHeader is the allowance for the response head on top of the body
// cap: together they bound what is read, whatever the worker sends.
const maxHeader = 64 << 10

// errHeadTooLarge: the response passed the body cap plus maxHeader. A
// type, not fmt.Errorf, so building it costs nothing at start-up.
var errHeadTooLarge error = headTooLarge{}

type headTooLarge struct{}

func (headTooLarge) Error() string { return "response over the size cap" }
func (headTooLarge) Unwrap() error { return status.ErrTooLarge }

type fetcher struct {
	cfg  Config
	dial Dialer
	tls  *tls.Config
	now  func() time.Time
	tm   *timings
	log  *Logger
}

// fetch GETs the status URL, following at most 5 same-origin redirects,
// and returns the body of a 2xx answer.
func (f *fetcher) fetch(ctx context.Context) ([]byte, error) {
	u, err := url.Parse(f.cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: bad URL", ErrConfig)
	}
	origin := u.Scheme + "://" + u.Host
	for hop := 0; ; hop++ {
		body, loc, err := f.get(ctx, u)
		if err != nil || loc == "" {
			return body, err
		}
		next, err := u.Parse(loc)
		if err != nil {
			return nil, fmt.Errorf("%w: bad Location %q", ErrRedirect, plugin.Line(loc, 80))
		}
		if next.Scheme+"://"+next.Host != origin {
			return nil, fmt.Errorf("%w: to another host %s://%s", ErrRedirect, plugin.Line(next.Scheme, 10), plugin.Line(next.Host, 80))
		}
		if hop >= 5 { // hops 0-4 followed 5 redirects: this is the 6th
			return nil, fmt.Errorf("%w: more than 5 redirects", ErrRedirect)
		}
		f.log.Debug("redirect", "location", next.Path)
		u = next
	}
}

// get performs one request; loc is set for a redirect to follow.
func (f *fetcher) get(ctx context.Context, u *url.URL) (body []byte, loc string, err error) {
	network, addr := "tcp", u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	if f.cfg.UnixSocket != "" {
		network, addr = "unix", f.cfg.UnixSocket
	}
	f.log.Debug("connect", "network", network, "addr", addr, "path", u.Path, "timeout", f.cfg.Timeout)
	f.tm.connStart = f.now()
	conn, err := f.dial(ctx, network, addr)
	f.tm.connDone = f.now()
	if err != nil {
		return nil, "", err
	}
	defer conn.Close()
	// The deadline bounds every read and write; cancelling ctx closes.
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	if u.Scheme == "https" {
		tc := f.tls
		if tc == nil {
			tc = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		tc = tc.Clone()
		if tc.ServerName == "" {
			tc.ServerName = u.Hostname()
		}
		f.tm.tlsStart = f.now()
		tconn := tls.Client(conn, tc)
		err := tconn.HandshakeContext(ctx)
		f.tm.tlsDone = f.now()
		if err != nil {
			return nil, "", err
		}
		st := tconn.ConnectionState()
		f.log.Debug("TLS handshake done", "version", tls.VersionName(st.Version), "server_name", tc.ServerName)
		conn = tconn
	}

	if _, err := io.WriteString(conn, f.request(u)); err != nil {
		return nil, "", err
	}
	limit := f.cfg.MaxBody
	if limit <= 0 {
		limit = status.MaxBody
	}
	cr := &capReader{r: conn, n: limit + maxHeader + 1, now: f.now, first: &f.tm.firstByte}
	resp, err := readResponse(bufio.NewReaderSize(cr, 4096))
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // closed before a full head
		}
		return nil, "", err
	}
	f.log.Debug("response", "code", resp.code, "content_type", resp.get("Content-Type"), "content_length", resp.length)

	if resp.code >= 300 && resp.code <= 399 && resp.get("Location") != "" {
		return nil, resp.get("Location"), nil
	}
	// The status code comes first: a 405 whose JSON says "ok" is not ok.
	if resp.code < 200 || resp.code > 299 {
		b, _ := status.ReadBody(resp.body, min(limit, 64<<10))
		f.tm.size = len(b)
		he := &HTTPStatusError{Code: resp.code, Line: firstLine(b), plain: f.cfg.Plain}
		if !f.cfg.Plain {
			if d, err := status.Parse(b); err == nil {
				he.Doc, he.Line = &d, plugin.Line(d.Message, 120)
			}
		}
		return nil, "", he
	}
	if !f.cfg.Plain {
		if err := jsonType(resp.get("Content-Type")); err != nil {
			return nil, "", err
		}
	}
	b, err := status.ReadBody(resp.body, limit)
	f.tm.size = len(b)
	f.log.Trace("first 512 bytes of the body", "body", plugin.Line(string(b[:min(len(b), 512)]), 512))
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return b, "", err
}

// request renders the GET. Header values were checked for CR/LF when the
// flags were parsed, so nothing here can split the request.
func (f *fetcher) request(u *url.URL) string {
	host := u.Host
	if v := f.cfg.Header.Get("Host"); v != "" {
		host = v
	}
	accept := "application/json"
	if f.cfg.Plain {
		accept = "*/*"
	}
	var b strings.Builder
	b.WriteString("GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + host + "\r\n")
	if f.cfg.Header.Get("Accept") == "" {
		b.WriteString("Accept: " + accept + "\r\n")
	}
	if u.User != nil && f.cfg.Header.Get("Authorization") == "" {
		pw, _ := u.User.Password()
		b.WriteString("Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pw)) + "\r\n")
	}
	if f.cfg.UserAgent != "" {
		b.WriteString("User-Agent: " + f.cfg.UserAgent + "\r\n")
	}
	for k, vs := range f.cfg.Header {
		if strings.EqualFold(k, "Host") {
			continue
		}
		for _, v := range vs {
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	b.WriteString("Connection: close\r\n\r\n")
	return b.String()
}

// capReader bounds everything read from the worker and notes when the
// first byte arrived (the time-to-first-byte perfdata).
type capReader struct {
	r     io.Reader
	n     int64
	now   func() time.Time
	first *time.Time
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, errHeadTooLarge
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	if n > 0 && c.first.IsZero() {
		*c.first = c.now()
	}
	c.n -= int64(n)
	return n, err
}

// jsonType accepts application/json, any application/*+json, and no
// Content-Type at all (minimal workers); anything else is ErrContentType.
func jsonType(ct string) error {
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		return nil
	}
	return fmt.Errorf("%w %q, want application/json (use --plain for non-JSON endpoints)", ErrContentType, plugin.Line(ct, 60))
}

func firstLine(b []byte) string {
	s := string(b)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return plugin.Line(s, 200)
}
