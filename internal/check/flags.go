package check

import (
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"

	"github.com/alecthomas/kong"

	"github.com/selfheal/selfheal/internal/thresholds"
)

// Flags is check_worker's grammar: one field per flag, and the field's
// tags are that flag's only declaration (name, short, type, default,
// help). kong reads them for -h, -V and every usage error; the fast
// path's table (args_gen.go) is generated from kong's model of them.
type Flags struct {
	Hostname   string           `short:"H" placeholder:"HOST" help:"Worker host name or address."`
	Port       int              `short:"p" placeholder:"PORT" help:"TCP port (default 80, or 443 with --ssl)."`
	Path       string           `default:"/status" help:"Path of the status endpoint."`
	SSL        bool             `short:"S" name:"ssl" help:"Use HTTPS."`
	URL        string           `short:"u" name:"url" placeholder:"URL" help:"Full URL of the status endpoint instead of -H/-p/--path (a value starting with / is taken as --path, as check_http does)."`
	UnixSocket string           `name:"unix-socket" placeholder:"PATH" help:"Talk HTTP over this unix socket (local workers, e.g. under NRPE)."`
	Timeout    string           `short:"t" default:"10" placeholder:"SECONDS[:STATE]" help:"Give up after SECONDS; STATE for a worker that does not answer (default critical)."`
	Warning    string           `short:"w" placeholder:"RANGE" help:"Response time (seconds) range for WARNING."`
	Critical   string           `short:"c" placeholder:"RANGE" help:"Response time (seconds) range for CRITICAL."`
	Metric     []string         `sep:"none" placeholder:"NAME,warn=RANGE,crit=RANGE" help:"Thresholds on a worker metric (repeatable)."`
	MaxAge     string           `name:"max-age" placeholder:"WARN,CRIT" help:"Heartbeat age limits (seconds or durations, e.g. 60,300 or ,5m)."`
	MinUptime  string           `name:"min-uptime" placeholder:"DURATION" help:"WARNING while the worker has been up for less than this (shows restart loops)."`
	Plain      bool             `help:"Not JSON: 2xx is OK, anything else CRITICAL, the body's first line is the message."`
	Header     []string         `sep:"none" placeholder:"'NAME: VALUE'" help:"Extra request header, e.g. an auth token (repeatable)."`
	CAFile     string           `name:"ca-file" placeholder:"FILE" help:"PEM CA bundle to verify the worker's certificate."`
	CertFile   string           `name:"cert-file" placeholder:"FILE" help:"PEM client certificate (mTLS)."`
	KeyFile    string           `name:"key-file" placeholder:"FILE" help:"PEM client key (mTLS)."`
	Insecure   bool             `help:"Do not verify the worker's certificate."`
	Verbose    int              `short:"v" type:"counter" help:"Diagnostics on stderr (repeatable); stdout stays plugin output only."`
	Version    kong.VersionFlag `short:"V" help:"Print the version and exit 3."`
}

// Config validates the flags and turns them into the core's Config; every
// error is a usage error (UNKNOWN).
func (g Flags) Config(userAgent string) (Config, TLSOptions, error) {
	cfg := Config{Header: textproto.MIMEHeader{}, UserAgent: userAgent}
	var err error
	if cfg.Timeout, cfg.TimeoutState, err = ParseTimeout(g.Timeout); err != nil {
		return cfg, TLSOptions{}, err
	}
	if cfg.URL, err = g.Target(); err != nil {
		return cfg, TLSOptions{}, err
	}
	cfg.UnixSocket = g.UnixSocket
	if g.Warning != "" || g.Critical != "" {
		if cfg.Response, err = parsePair(g.Warning, g.Critical); err != nil {
			return cfg, TLSOptions{}, err
		}
	}
	seen := map[string]bool{}
	for _, m := range g.Metric {
		r, err := ParseMetricRule(m)
		if err != nil {
			return cfg, TLSOptions{}, err
		}
		if seen[r.Name] {
			return cfg, TLSOptions{}, fmt.Errorf("metric %q given twice", r.Name)
		}
		seen[r.Name] = true
		cfg.Metrics = append(cfg.Metrics, r)
	}
	if g.MaxAge != "" {
		if cfg.MaxAgeWarn, cfg.MaxAgeCrit, err = ParseMaxAge(g.MaxAge); err != nil {
			return cfg, TLSOptions{}, err
		}
	}
	if g.MinUptime != "" {
		if cfg.MinUptime, err = ParseMinUptime(g.MinUptime); err != nil {
			return cfg, TLSOptions{}, err
		}
	}
	cfg.Plain = g.Plain
	for _, h := range g.Header {
		if err := ParseHeader(cfg.Header, h); err != nil {
			return cfg, TLSOptions{}, err
		}
	}
	return cfg, TLSOptions{CAFile: g.CAFile, CertFile: g.CertFile, KeyFile: g.KeyFile, Insecure: g.Insecure}, nil
}

func parsePair(w, c string) (thresholds.Pair, error) {
	p, err := thresholds.ParsePair(w, c)
	if err != nil {
		return p, fmt.Errorf("-w/-c response time: %v", err)
	}
	return p, nil
}

// Target builds the URL from -H/-p/--path/--ssl, -u or --unix-socket.
func (g Flags) Target() (string, error) {
	path := g.Path
	full := g.URL
	if strings.HasPrefix(full, "/") { // check_http's -u is a path
		path, full = full, ""
	}
	if full != "" {
		if g.Hostname != "" || g.Port != 0 || g.UnixSocket != "" {
			return "", errors.New("give either a full -u URL or -H/-p/--unix-socket, not both")
		}
		u, err := url.Parse(full)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", fmt.Errorf("-u %q: want http://HOST[:PORT]/PATH or https://HOST[:PORT]/PATH", full)
		}
		return u.String(), nil
	}
	if !strings.HasPrefix(path, "/") {
		return "", fmt.Errorf("--path %q must start with /", path)
	}
	host := g.Hostname
	if host == "" {
		if g.UnixSocket == "" {
			return "", errors.New("no target: give -H HOST, -u URL or --unix-socket PATH")
		}
		host = "localhost" // only the Host header; the socket is dialled
	}
	if strings.ContainsAny(host, "/@?# ") {
		return "", fmt.Errorf("-H %q is not a host name or address", host)
	}
	scheme, port := "http", 80
	if g.SSL {
		scheme, port = "https", 443
	}
	if g.Port != 0 {
		if g.Port < 1 || g.Port > 65535 {
			return "", fmt.Errorf("-p %d: want a port between 1 and 65535", g.Port)
		}
		port = g.Port
	}
	u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(port))}
	ref, err := url.Parse(path)
	if err != nil {
		return "", fmt.Errorf("--path %q: %v", path, err)
	}
	return u.ResolveReference(ref).String(), nil
}
