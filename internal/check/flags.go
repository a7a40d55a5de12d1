package check

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/selfheal/selfheal/internal/thresholds"
)

// Flags are check_worker's command-line values as given, before
// validation; cmd/check_worker fills them from kong or its fast parser.
type Flags struct {
	Hostname   string
	Port       int
	Path       string
	SSL        bool
	URL        string
	UnixSocket string
	Timeout    string
	Warning    string
	Critical   string
	Metric     []string
	MaxAge     string
	MinUptime  string
	Plain      bool
	Header     []string
	CAFile     string
	CertFile   string
	KeyFile    string
	Insecure   bool
}

// Config validates the flags and turns them into the core's Config; every
// error is a usage error (UNKNOWN).
func (g Flags) Config(userAgent string) (Config, TLSOptions, error) {
	cfg := Config{Header: http.Header{}, UserAgent: userAgent}
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
