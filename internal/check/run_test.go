package check

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/status"
	"github.com/selfheal/selfheal/internal/thresholds"
)

// t0 is the fixed "now" of the tests; documents are written relative to it.
var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func fixedClock() time.Time { return t0 }

func jsonHandler(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

func doc(status string, extra string) string {
	return `{"status":"` + status + `","message":"processed 120 jobs"` + extra + `}`
}

func hb(ago time.Duration) string {
	return `,"heartbeat":"` + t0.Add(-ago).Format(time.RFC3339) + `"`
}

func started(ago time.Duration) string {
	return `,"started_at":"` + t0.Add(-ago).Format(time.RFC3339) + `"`
}

func run(t *testing.T, cfg Config, deps Deps) Result {
	t.Helper()
	if deps.Now == nil {
		deps.Now = fixedClock
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.TimeoutState == 0 {
		cfg.TimeoutState = nagios.Critical
	}
	res := Run(context.Background(), cfg, deps)
	if res.State < 0 || res.State > 3 {
		t.Fatalf("state %d out of range", res.State)
	}
	checkShape(t, res.Output)
	return res
}

// checkShape asserts what every output must satisfy: a "WORKER STATE - "
// first line without a stray "|" in the text, bounded size, valid UTF-8.
func checkShape(t *testing.T, out string) {
	t.Helper()
	if len(out) > 8192 {
		t.Errorf("output is %d bytes, over Nagios' 8192", len(out))
	}
	if !strings.HasPrefix(out, "WORKER ") {
		t.Errorf("output does not start with WORKER: %q", out)
	}
	line1, _, _ := strings.Cut(out, "\n")
	if n := strings.Count(line1, "|"); n > 1 {
		t.Errorf("line 1 has %d '|': %q", n, line1)
	}
	if !strings.HasSuffix(out, "\n") {
		t.Errorf("output must end in a newline: %q", out)
	}
	// Every answer carries the counters handle_worker reads, and they
	// agree with the state: some CRITICAL finding exactly when CRITICAL.
	self, dep, ok := status.ScopeFromPerfdata(nagiosPerfdata(out))
	if crit := strings.HasPrefix(out, "WORKER CRITICAL - "); !ok || crit != (self+dep > 0) {
		t.Errorf("critical counters %d, %d (ok %v) in %q", self, dep, ok, out)
	}
}

func mustRule(t *testing.T, s string) MetricRule {
	t.Helper()
	r, err := ParseMetricRule(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func pair(t *testing.T, w, c string) thresholds.Pair {
	t.Helper()
	p, err := thresholds.ParsePair(w, c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestStateTable runs one real httptest server per row of the state table
// in docs/check_worker.md.
func TestStateTable(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		cfg     func(*Config)
		want    nagios.State
		line1   string // substring of line 1
	}{
		{"ok", jsonHandler(200, doc("ok", "")), nil, nagios.OK, "WORKER OK - processed 120 jobs"},
		{"ok any case and json+suffix", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/vnd.worker+json; charset=utf-8")
			io.WriteString(w, `{"status":"OK"}`)
		}, nil, nagios.OK, "WORKER OK - status ok"},
		{"no content type accepted", func(w http.ResponseWriter, _ *http.Request) {
			w.Header()["Content-Type"] = nil
			io.WriteString(w, `{"status":"ok"}`)
		}, nil, nagios.OK, "WORKER OK"},
		{"worker says warning", jsonHandler(200, `{"status":"warning","message":"queue growing"}`), nil, nagios.Warning, "worker reports WARNING: queue growing"},
		{"worker says critical", jsonHandler(200, `{"status":"critical","message":"db down"}`), nil, nagios.Critical, "worker reports CRITICAL: db down"},
		{"worker says unknown", jsonHandler(200, `{"status":"unknown"}`), nil, nagios.Unknown, "worker reports UNKNOWN"},
		{"sub-check critical", jsonHandler(200, doc("ok", `,"checks":[{"name":"database","status":"critical","message":"refused"}]`)), nil, nagios.Critical, "check database CRITICAL: refused"},
		{"sub-check unknown does not hide warning", jsonHandler(200, doc("warning", `,"checks":[{"name":"a","status":"unknown"}]`)), nil, nagios.Warning, "WORKER WARNING"},
		{"5xx", jsonHandler(503, `{"status":"critical","message":"draining"}`), nil, nagios.Critical, "HTTP 503 Service Unavailable: draining"},
		{"500 plain body", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", 500) }, nil, nagios.Critical, "HTTP 500"},
		{"4xx", jsonHandler(404, `not here`), nil, nagios.Unknown, "HTTP 404 Not Found"},
		{"405 with ok body is not ok", jsonHandler(405, `{"status":"ok"}`), nil, nagios.Unknown, "HTTP 405"},
		{"401", jsonHandler(401, ``), nil, nagios.Unknown, "HTTP 401"},
		{"wrong content type", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, `<html>ok</html>`)
		}, nil, nagios.Unknown, `unexpected content type "text/html"`},
		{"malformed json", jsonHandler(200, `{"status":"ok"`), nil, nagios.Unknown, "worker broke the status contract: malformed"},
		{"unknown status word", jsonHandler(200, `{"status":"fine"}`), nil, nagios.Unknown, "unknown status word"},
		{"body over cap", jsonHandler(200, `{"status":"ok","message":"`+strings.Repeat("x", 2000)+`"}`), func(c *Config) { c.MaxBody = 1000 }, nagios.Unknown, "status answer over the size cap"},
		{"heartbeat fresh", jsonHandler(200, doc("ok", hb(10*time.Second))), func(c *Config) { c.MaxAgeWarn, c.MaxAgeCrit = time.Minute, 5*time.Minute }, nagios.OK, "WORKER OK"},
		{"heartbeat old", jsonHandler(200, doc("ok", hb(2*time.Minute))), func(c *Config) { c.MaxAgeWarn, c.MaxAgeCrit = time.Minute, 5*time.Minute }, nagios.Warning, "heartbeat 2m0s old (warning above 1m0s)"},
		{"heartbeat stale", jsonHandler(200, doc("ok", hb(6*time.Minute))), func(c *Config) { c.MaxAgeWarn, c.MaxAgeCrit = time.Minute, 5*time.Minute }, nagios.Critical, "heartbeat 6m0s old (critical above 5m0s)"},
		{"heartbeat in the future is fresh", jsonHandler(200, doc("ok", hb(-time.Hour))), func(c *Config) { c.MaxAgeCrit = time.Minute }, nagios.OK, "WORKER OK"},
		{"max-age without heartbeat", jsonHandler(200, doc("ok", "")), func(c *Config) { c.MaxAgeCrit = time.Minute }, nagios.Unknown, "no heartbeat"},
		{"just restarted", jsonHandler(200, doc("ok", started(30*time.Second))), func(c *Config) { c.MinUptime = 5 * time.Minute }, nagios.Warning, "up only 30s (min-uptime 5m0s)"},
		{"up long enough", jsonHandler(200, doc("ok", started(time.Hour))), func(c *Config) { c.MinUptime = 5 * time.Minute }, nagios.OK, "WORKER OK"},
		{"min-uptime without started_at", jsonHandler(200, doc("ok", "")), func(c *Config) { c.MinUptime = time.Minute }, nagios.Unknown, "no started_at"},
		{"metric ok", jsonHandler(200, doc("ok", `,"metrics":[{"name":"queue_depth","value":12}]`)), func(c *Config) { c.Metrics = []MetricRule{mustRule(t, "queue_depth,warn=100,crit=500")} }, nagios.OK, "WORKER OK"},
		{"metric warning", jsonHandler(200, doc("ok", `,"metrics":[{"name":"queue_depth","value":150}]`)), func(c *Config) { c.Metrics = []MetricRule{mustRule(t, "queue_depth,warn=100,crit=500")} }, nagios.Warning, "metric queue_depth=150 breaks warning range 100"},
		{"metric critical beats warning", jsonHandler(200, doc("ok", `,"metrics":[{"name":"queue_depth","value":900}]`)), func(c *Config) { c.Metrics = []MetricRule{mustRule(t, "queue_depth,warn=100,crit=500")} }, nagios.Critical, "breaks critical range 500"},
		{"metric inside range", jsonHandler(200, doc("ok", `,"metrics":[{"name":"workers","value":0}]`)), func(c *Config) { c.Metrics = []MetricRule{mustRule(t, "workers,crit=@~:0")} }, nagios.Critical, "metric workers=0 breaks critical range @~:0"},
		{"metric missing", jsonHandler(200, doc("ok", "")), func(c *Config) { c.Metrics = []MetricRule{mustRule(t, "queue_depth,crit=5")} }, nagios.Unknown, "metric queue_depth not reported"},
		{"metric without value is a contract break, not 0", jsonHandler(200, doc("ok", `,"metrics":[{"name":"workers"}]`)), func(c *Config) { c.Metrics = []MetricRule{mustRule(t, "workers,crit=1:")} }, nagios.Unknown, `metric "workers" has no "value"`},
		{"worst wins", jsonHandler(200, doc("warning", hb(10*time.Minute)+`,"checks":[{"name":"a","status":"unknown"}]`)), func(c *Config) { c.MaxAgeCrit = time.Minute }, nagios.Critical, "WORKER CRITICAL - heartbeat 10m0s old"},
		{"plain ok", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ALL OK | really\nsecond line") }, func(c *Config) { c.Plain = true }, nagios.OK, "WORKER OK - ALL OK / really"},
		{"plain 404 is critical", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "nope", 404) }, func(c *Config) { c.Plain = true }, nagios.Critical, "HTTP 404 Not Found: nope"},
		{"plain ignores content type", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<b>up</b>")
		}, func(c *Config) { c.Plain = true }, nagios.OK, "WORKER OK - <b>up</b>"},
		{"redirect same host followed", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/status" {
				http.Redirect(w, r, "/v2/status", http.StatusFound)
				return
			}
			jsonHandler(200, `{"status":"ok","message":"v2"}`)(w, r)
		}, nil, nagios.OK, "WORKER OK - v2"},
		{"five redirects followed", func(w http.ResponseWriter, r *http.Request) {
			var n int
			if _, err := fmt.Sscanf(r.URL.Path, "/hop%d", &n); err != nil {
				n = 0 // /status
			}
			if n < 5 {
				http.Redirect(w, r, fmt.Sprintf("/hop%d", n+1), http.StatusFound)
				return
			}
			jsonHandler(200, `{"status":"ok","message":"after five"}`)(w, r)
		}, nil, nagios.OK, "WORKER OK - after five"},
		{"more than five redirects refused", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, r.URL.Path+"x", http.StatusFound)
		}, nil, nagios.Unknown, "more than 5 redirects"},
		{"redirect other host refused", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://192.0.2.1/status", http.StatusFound)
		}, nil, nagios.Unknown, "redirect refused: to another host http://192.0.2.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			cfg := Config{URL: srv.URL + "/status"}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			res := run(t, cfg, Deps{})
			line1, _, _ := strings.Cut(res.Output, "\n")
			if res.State != tt.want {
				t.Errorf("state %v, want %v\n%s", res.State, tt.want, res.Output)
			}
			if !strings.Contains(line1, tt.line1) {
				t.Errorf("line 1 %q lacks %q", line1, tt.line1)
			}
		})
	}
}

func TestRequest(t *testing.T) {
	var got *http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(context.Background())
		jsonHandler(200, `{"status":"ok"}`)(w, r)
	}))
	defer srv.Close()
	h := textproto.MIMEHeader{}
	for _, s := range []string{"Authorization: Bearer s3cret", "X-Env: prod", "Host: worker.example"} {
		if err := ParseHeader(h, s); err != nil {
			t.Fatal(err)
		}
	}
	res := run(t, Config{URL: srv.URL + "/status?x=1", Header: h, UserAgent: "check_worker/test"}, Deps{})
	if res.State != nagios.OK {
		t.Fatalf("%v: %s", res.State, res.Output)
	}
	if got.Method != http.MethodGet || got.URL.Path != "/status" || got.URL.RawQuery != "x=1" {
		t.Errorf("request %s %s", got.Method, got.URL)
	}
	if got.Header.Get("Authorization") != "Bearer s3cret" || got.Header.Get("X-Env") != "prod" {
		t.Errorf("headers not sent: %v", got.Header)
	}
	if got.Host != "worker.example" {
		t.Errorf("Host = %q", got.Host)
	}
	if got.UserAgent() != "check_worker/test" || got.Header.Get("Accept") != "application/json" {
		t.Errorf("UA %q Accept %q", got.UserAgent(), got.Header.Get("Accept"))
	}
	// Credentials in the URL become basic auth.
	res = run(t, Config{URL: strings.Replace(srv.URL, "http://", "http://nagios:pa%20ss@", 1) + "/status"}, Deps{})
	if user, pw, ok := got.BasicAuth(); res.State != nagios.OK || !ok || user != "nagios" || pw != "pa ss" {
		t.Errorf("basic auth: %v %q %q %v", res.State, user, pw, ok)
	}
}

// TestTransportFailures uses real sockets that refuse, reset or close.
func TestTransportFailures(t *testing.T) {
	// A port nobody listens on: bind, note the port, close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String() + "/status"
	ln.Close()

	reset := rawServer(t, func(c net.Conn) {
		readRequest(c)
		c.(*net.TCPConn).SetLinger(0) // close with RST
		c.Close()
	})
	closed := rawServer(t, func(c net.Conn) {
		readRequest(c)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"status\":")
		c.Close()
	})
	tests := []struct {
		name, url string
		want      nagios.State
		line1     string
	}{
		{"refused", refused, nagios.Critical, "WORKER CRITICAL - connection refused"},
		{"reset", reset, nagios.Critical, "WORKER CRITICAL - connection"},
		{"closed mid-body", closed, nagios.Critical, "WORKER CRITICAL - connection closed before a complete answer"},
		{"dns", "http://no-such-host.invalid/status", nagios.Unknown, "WORKER UNKNOWN - cannot resolve no-such-host.invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, Config{URL: tt.url}, Deps{})
			if res.State != tt.want || !strings.HasPrefix(res.Output, tt.line1) {
				t.Errorf("got %v %q, want %v %q", res.State, res.Output, tt.want, tt.line1)
			}
		})
	}
}

func rawServer(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	return "http://" + rawListener(t, serve) + "/status"
}

// rawListener accepts connections on loopback and hands each to serve;
// it returns the address. The test's end closes it.
func rawListener(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln.Addr().String()
}

func readRequest(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	var got []byte
	for !strings.Contains(string(got), "\r\n\r\n") {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			return
		}
	}
}

// TestTimeouts: servers that accept and never answer, send headers then a
// slow endless body, or trickle the headers. All must end within the
// timeout (bound generous for a loaded machine) with the timeout state.
func TestTimeouts(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	hold := func(c net.Conn) { // keep the socket open until the test ends
		defer c.Close()
		select {
		case <-stop:
		case <-time.After(30 * time.Second):
		}
	}
	silent := rawServer(t, func(c net.Conn) { hold(c) })
	endless := rawServer(t, func(c net.Conn) {
		defer c.Close()
		readRequest(c)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"status\":\"ok\",\"message\":\"")
		for i := 0; i < 3000; i++ { // bounded: 30 s at most
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if _, err := io.WriteString(c, strings.Repeat("x", 100)); err != nil {
				return
			}
		}
	})
	trickle := rawServer(t, func(c net.Conn) {
		defer c.Close()
		readRequest(c)
		head := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: " + strings.Repeat("y", 300)
		for i := 0; i < len(head); i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := c.Write([]byte{head[i]}); err != nil {
				return
			}
		}
	})
	for _, tt := range []struct {
		name, url string
		state     nagios.State
	}{
		{"accepts but never answers", silent, nagios.Critical},
		{"headers then endless body", endless, nagios.Critical},
		{"trickling headers", trickle, nagios.Critical},
		{"timeout state unknown", silent, nagios.Unknown},
		{"timeout state warning", silent, nagios.Warning},
	} {
		t.Run(tt.name, func(t *testing.T) {
			timeout := time.Second
			begin := time.Now()
			res := Run(context.Background(), Config{URL: tt.url, Timeout: timeout, TimeoutState: tt.state}, Deps{})
			took := time.Since(begin)
			if took > timeout+2*time.Second {
				t.Errorf("took %v, timeout %v", took, timeout)
			}
			if res.State != tt.state || !strings.Contains(res.Output, "no answer within the timeout") {
				t.Errorf("got %v %q, want %v", res.State, res.Output, tt.state)
			}
			checkShape(t, res.Output)
		})
	}
}

// TestEndlessFastBody: an endless body that arrives faster than the
// timeout is stopped by the size cap, not read forever.
func TestEndlessFastBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		chunk := []byte(strings.Repeat("z", 32<<10))
		for i := 0; i < 1000 && r.Context().Err() == nil; i++ { // 32 MB at most
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	res := run(t, Config{URL: srv.URL, Timeout: 20 * time.Second}, Deps{})
	if res.State != nagios.Unknown || !strings.Contains(res.Output, "over the size cap") {
		t.Fatalf("%v %q", res.State, res.Output)
	}
}

func TestResponseTimeThresholds(t *testing.T) {
	srv := httptest.NewServer(jsonHandler(200, `{"status":"ok"}`))
	defer srv.Close()
	// A clock that advances 1 s per reading makes the elapsed time large
	// and deterministic in order: start, connect..., end.
	var n int
	step := func() time.Time { n++; return t0.Add(time.Duration(n) * time.Second) }
	res := run(t, Config{URL: srv.URL, Response: pair(t, "1", "2")}, Deps{Now: step})
	if res.State != nagios.Critical || !strings.Contains(res.Output, "breaks critical range 2") {
		t.Fatalf("%v %q", res.State, res.Output)
	}
	n = 0
	res = run(t, Config{URL: srv.URL, Response: pair(t, "1000", "2000")}, Deps{Now: step})
	if res.State != nagios.OK || !strings.Contains(res.Output, ";1000;2000;0;") {
		t.Fatalf("%v %q", res.State, res.Output)
	}
}

func TestTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(jsonHandler(200, `{"status":"ok","message":"over tls"}`))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are the point here
	srv.StartTLS()
	defer srv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	der := srv.Certificate().Raw
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		opts  TLSOptions
		want  nagios.State
		line1 string
	}{
		{"untrusted certificate", TLSOptions{}, nagios.Unknown, "WORKER UNKNOWN - TLS failure"},
		{"trusted via --ca-file", TLSOptions{CAFile: ca}, nagios.OK, "WORKER OK - over tls"},
		{"insecure", TLSOptions{Insecure: true}, nagios.OK, "WORKER OK - over tls"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tc, err := NewTLSConfig(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			res := run(t, Config{URL: srv.URL + "/status"}, Deps{TLS: tc})
			if res.State != tt.want || !strings.HasPrefix(res.Output, tt.line1) {
				t.Errorf("got %v %q", res.State, res.Output)
			}
			if tt.want == nagios.OK && !strings.Contains(res.Output, "'time_tls'=") {
				t.Errorf("no TLS phase in perfdata: %q", res.Output)
			}
		})
	}
	t.Run("plain http to a TLS port", func(t *testing.T) {
		res := run(t, Config{URL: strings.Replace(srv.URL, "https://", "http://", 1)}, Deps{})
		if res.State != nagios.Unknown && res.State != nagios.Critical {
			t.Errorf("got %v %q", res.State, res.Output)
		}
	})
	t.Run("https to a plain port is a TLS failure", func(t *testing.T) {
		plain := httptest.NewServer(jsonHandler(200, `{"status":"ok"}`))
		defer plain.Close()
		res := run(t, Config{URL: strings.Replace(plain.URL, "http://", "https://", 1)}, Deps{})
		if res.State != nagios.Unknown || !strings.Contains(res.Output, "TLS failure") {
			t.Errorf("got %v %q", res.State, res.Output)
		}
	})
	for name, o := range map[string]TLSOptions{
		"missing CA file":  {CAFile: filepath.Join(dir, "nope.pem")},
		"CA file not PEM":  {CAFile: filepath.Join(dir)},
		"cert without key": {CertFile: ca},
	} {
		if _, err := NewTLSConfig(o); err == nil {
			t.Errorf("%s: NewTLSConfig accepted %+v", name, o)
		} else if st, _ := Classify(err, nagios.Critical); st != nagios.Unknown {
			t.Errorf("%s: config error classified %v", name, st)
		}
	}
}

// TestTLSFilesNeverBlock: a TLS file check_worker cannot read is its own
// failure, reported at once as a config error (UNKNOWN): a FIFO must not
// block open or read past -t, and a huge file is refused, not read whole.
func TestTLSFilesNeverBlock(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(jsonHandler(200, `{"status":"ok"}`))
	srv.Close()
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	huge := filepath.Join(dir, "huge.pem")
	if err := os.WriteFile(huge, append(cert, bytes.Repeat([]byte("\n"), fsutil.MaxPEM)...), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]TLSOptions{
		"CA file is a FIFO":         {CAFile: fifo},
		"cert file is a FIFO":       {CertFile: fifo, KeyFile: huge},
		"key file is a FIFO":        {CertFile: huge, KeyFile: fifo},
		"CA file over the size cap": {CAFile: huge},
	} {
		done := make(chan error, 1)
		go func() { _, err := NewTLSConfig(o); done <- err }()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("%s: accepted", name)
			} else if st, _ := Classify(err, nagios.Critical); st != nagios.Unknown {
				t.Errorf("%s: classified %v: %v", name, st, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: NewTLSConfig still blocked after 10s", name)
		}
	}
}

func TestUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "cw") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "w.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(jsonHandler(200, `{"status":"ok","message":"via socket"}`))
	srv.Listener = ln
	srv.Start()
	res := run(t, Config{URL: "http://localhost/status", UnixSocket: sock}, Deps{})
	if res.State != nagios.OK || !strings.HasPrefix(res.Output, "WORKER OK - via socket") {
		t.Errorf("got %v %q", res.State, res.Output)
	}
	srv.Close()
	os.Remove(sock)
	res = run(t, Config{URL: "http://localhost/status", UnixSocket: sock}, Deps{})
	if res.State != nagios.Critical || !strings.Contains(res.Output, "unix socket missing") {
		t.Errorf("missing socket: %v %q", res.State, res.Output)
	}
}

// TestSanitise: worker text can never break the plugin output.
func TestSanitise(t *testing.T) {
	nasty := `a|b\nc\rd\te\u0000f` + "\xff\xfe" + `g\u2028h\u202ei`
	body := `{"status":"critical","message":"` + nasty + `","checks":[{"name":"x|y\nz","status":"warning","message":"` + nasty + `"}],"metrics":[{"name":"it's = a|b","value":1,"uom":"MiB;"}]}`
	srv := httptest.NewServer(jsonHandler(200, body))
	defer srv.Close()
	res := run(t, Config{URL: srv.URL}, Deps{})
	line1, rest, _ := strings.Cut(res.Output, "\n")
	text, perf, ok := strings.Cut(line1, "|")
	if !ok || strings.Contains(perf, "|") {
		t.Fatalf("line 1 must be TEXT | perfdata with exactly one '|': %q", res.Output)
	}
	if strings.ContainsAny(text, "\r\t\x00\u202e") || strings.ContainsRune(rest, '\u202e') {
		t.Errorf("control characters in line 1: %q", line1)
	}
	if !strings.Contains(text, "a/b c d e f") {
		t.Errorf("line 1 not sanitised as expected: %q", line1)
	}
	// The long output is text only: a "|" there would start more perfdata.
	if strings.ContainsAny(rest, "|\r") {
		t.Errorf("'|' or CR in long output: %q", rest)
	}
	if !strings.Contains(perf, "'it_s___a_b'=1;;;;") {
		t.Errorf("metric label not sanitised or bad UOM kept: %q", perf)
	}
}

// TestOutputBounded: a worker with hundreds of long checks and metrics
// still yields output under Nagios' 8192 bytes, with line 1 and the
// perfdata intact.
func TestOutputBounded(t *testing.T) {
	var checks, metrics []string
	for i := 0; i < status.MaxChecks; i++ {
		checks = append(checks, fmt.Sprintf(`{"name":"check_%03d","status":"warning","message":%q}`, i, strings.Repeat("m", 300)))
		metrics = append(metrics, fmt.Sprintf(`{"name":"metric_with_a_long_name_%03d","value":%d,"min":0,"max":1000000}`, i, i))
	}
	body := `{"status":"ok","message":"` + strings.Repeat("M", 5000) + `","checks":[` + strings.Join(checks, ",") + `],"metrics":[` + strings.Join(metrics, ",") + `]}`
	srv := httptest.NewServer(jsonHandler(200, body))
	defer srv.Close()
	res := run(t, Config{URL: srv.URL}, Deps{})
	if res.State != nagios.Warning {
		t.Errorf("state %v", res.State)
	}
	line1, _, _ := strings.Cut(res.Output, "\n")
	if text, _, _ := strings.Cut(line1, "|"); len(text) > 400 {
		t.Errorf("line 1's text is %d bytes", len(text))
	}
	if len(res.Output) >= 8192 {
		t.Errorf("output is %d bytes, Nagios keeps 8192", len(res.Output))
	}
	if !strings.Contains(res.Output, "more lines cut") || !strings.Contains(res.Output, "left out to stay under the output limit") {
		t.Errorf("no truncation note:\n%s", res.Output)
	}
	if !strings.Contains(res.Output, "'time'=") || !strings.Contains(res.Output, "'metric_with_a_long_name_000'=0;;;0;1000000") {
		t.Errorf("perfdata lost")
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err  error
		want nagios.State
	}{
		{context.DeadlineExceeded, nagios.Warning}, // the configured timeout state
		{fmt.Errorf("x: %w", ErrConfig), nagios.Unknown},
		{&HTTPStatusError{Code: 502}, nagios.Critical},
		{&HTTPStatusError{Code: 403}, nagios.Unknown},
		{&HTTPStatusError{Code: 403, plain: true}, nagios.Critical},
		{&HTTPStatusError{Code: 304}, nagios.Unknown},
		{io.ErrUnexpectedEOF, nagios.Critical},
		{status.ErrTooLarge, nagios.Unknown},
		{context.Canceled, nagios.Unknown},
		// State table rows no server test can produce on loopback.
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}, nagios.Critical},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ENETUNREACH)}, nagios.Critical},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EACCES)}, nagios.Unknown},
		{fmt.Errorf("something new"), nagios.Unknown}, // never restart on a guess
	}
	for _, tt := range tests {
		if got, reason := Classify(tt.err, nagios.Warning); got != tt.want || reason == "" {
			t.Errorf("Classify(%v) = %v %q, want %v", tt.err, got, reason, tt.want)
		}
	}
	if st, r := Classify(nil, nagios.Critical); st != nagios.OK || r != "" {
		t.Errorf("nil error: %v %q", st, r)
	}
}

// TestEndlessHeaders: a server that streams headers forever is cut off by
// the read cap (UNKNOWN), long before the timeout and without using
// unbounded memory.
func TestEndlessHeaders(t *testing.T) {
	url := rawServer(t, func(c net.Conn) {
		defer c.Close()
		readRequest(c)
		io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		line := "X-Filler: " + strings.Repeat("a", 1000) + "\r\n"
		for i := 0; i < 20000; i++ { // 20 MB at most
			if _, err := io.WriteString(c, line); err != nil {
				return
			}
		}
	})
	res := run(t, Config{URL: url, Timeout: 20 * time.Second}, Deps{})
	if res.State != nagios.Unknown || !strings.Contains(res.Output, "over the size cap") {
		t.Fatalf("%v %q", res.State, res.Output)
	}
}
