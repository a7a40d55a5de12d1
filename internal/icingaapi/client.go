// Package icingaapi is the client for the Icinga 2 REST API (handle_worker's
// write-back and reads, check_selfheal's check that it answers),
// the supported way to write back to Icinga 2 (comments, a forced
// re-check) and to read what the handler's rules judge by: the command
// pipe is deprecated since v2.11 and announced for removal in v2.18, and
// gives no feedback.
//
// Every call touches exactly one named object. An Icinga action without a
// target hits every object, so requests are built only from a target (a
// type and a full name, never empty) and never carry a filter; names
// travel as object names ("service": "h!s") or as filter_vars, never
// inside a filter expression, so no crafted name can widen a call.
// docs/icinga-api.md lists the ApiUser permissions the calls need.
//
// Own code rather than a library: the handful of calls is small over
// net/http, and these safety rules (a target on every call, filter_vars,
// bounded bodies, one-line errors without secrets) are the point of it.
package icingaapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/selfheal/selfheal/internal/fsutil"
)

// Config says how to reach and authenticate to the API.
type Config struct {
	// URL is the API's base, https://host:5665 (no path, no user info).
	URL string
	// CAFile is Icinga's CA (/var/lib/icinga2/certs/ca.crt): the server
	// certificate is verified against it alone. Required.
	CAFile string
	// ServerName is the name expected in the server certificate (the
	// node's name, its CN); empty is the URL's host.
	ServerName string
	// User and Password are the ApiUser's, for basic auth (see
	// LoadCredentials).
	User, Password string
	// ClientCert and ClientKey authenticate with a certificate signed by
	// Icinga's CA instead (an ApiUser with client_cn); Icinga prefers the
	// certificate's user when both are given.
	ClientCert, ClientKey string
	// Timeout bounds each call (and ctx bounds it too); 0 is
	// DefaultTimeout.
	Timeout time.Duration
	// Sessions, when set, keeps TLS sessions for resumption, e.g. a
	// SessionFile in the handler's state directory: each handler run is a
	// new process, and a resumed session saves Icinga's RSA signature.
	Sessions tls.ClientSessionCache
}

// DefaultTimeout bounds a call when Config.Timeout is 0.
const DefaultTimeout = 5 * time.Second

// MaxServices bounds the names one Services call takes.
const MaxServices = 100

// Bounds on what is read back: a query answer (a service, a service's
// comments) and an action's answer.
const (
	maxQueryBody  = 4 << 20
	maxActionBody = 64 << 10
)

// Client calls one Icinga 2 API. It is safe for concurrent use.
type Client struct {
	base     string
	http     *http.Client
	user     string
	password string
	timeout  time.Duration
}

// New checks cfg and loads the CA and the client certificate.
func New(cfg Config) (*Client, error) {
	base, tc, timeout, err := cfg.prepare()
	if err != nil {
		return nil, err
	}
	if (cfg.User == "") != (cfg.Password == "") {
		return nil, errors.New("icinga api: basic auth needs both a user and a password")
	}
	if cfg.User == "" && tc.Certificates == nil {
		return nil, errors.New("icinga api: no credentials: give a user and password or a client certificate")
	}
	if strings.Contains(cfg.User, ":") {
		// Icinga splits "user:password" at the first colon.
		return nil, errors.New("icinga api: an ApiUser name cannot contain ':'")
	}
	return &Client{
		base:     base,
		http:     newHTTP(tc, timeout),
		user:     cfg.User,
		password: cfg.Password,
		timeout:  timeout,
	}, nil
}

// prepare checks the URL and loads the CA and the client certificate:
// what every way of talking to the API shares.
func (cfg Config) prepare() (base string, tc *tls.Config, timeout time.Duration, err error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return "", nil, 0, fmt.Errorf("icinga api: URL: %w", err)
	}
	switch {
	case u.Scheme != "https":
		return "", nil, 0, fmt.Errorf("icinga api: URL %q: want https://host:port (the API speaks TLS only)", cfg.URL)
	case u.Host == "" || u.Hostname() == "":
		return "", nil, 0, fmt.Errorf("icinga api: URL %q has no host", cfg.URL)
	case u.User != nil:
		return "", nil, 0, errors.New("icinga api: URL: credentials belong in the credentials file, not the URL")
	case strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "":
		return "", nil, 0, fmt.Errorf("icinga api: URL %q: want no path, query or fragment", cfg.URL)
	}
	if cfg.CAFile == "" {
		return "", nil, 0, errors.New("icinga api: no CA file: the server certificate must be verified against Icinga's CA")
	}
	roots, err := fsutil.LoadCertPool(cfg.CAFile)
	if err != nil {
		return "", nil, 0, fmt.Errorf("icinga api: %w", err)
	}
	// TLS 1.2 with forward secrecy and AEAD only (Icinga's own minimum is
	// 1.2). Not 1.3: Icinga 2.13 writes its session tickets after a 1.3
	// handshake in small segments of their own, and the first answer on
	// every new connection then waits about 40 ms for a delayed ACK
	// (measured in-process: 52 ms per heal with 1.3, 12 with 1.2).
	// Each handle_worker run is a new process, so every heal paid it.
	tc = &tls.Config{RootCAs: roots, ServerName: cfg.ServerName, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		}}
	if tc.ServerName == "" {
		tc.ServerName = u.Hostname()
	}
	tc.ClientSessionCache = cfg.Sessions
	switch {
	case cfg.ClientCert != "" && cfg.ClientKey != "":
		cert, _, err := fsutil.LoadKeyPair(cfg.ClientCert, cfg.ClientKey)
		if err != nil {
			return "", nil, 0, fmt.Errorf("icinga api: client %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	case cfg.ClientCert != "" || cfg.ClientKey != "":
		return "", nil, 0, errors.New("icinga api: a client certificate needs both the certificate and the key")
	}
	timeout = cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return "https://" + u.Host, tc, timeout, nil
}

func newHTTP(tc *tls.Config, timeout time.Duration) *http.Client {
	return &http.Client{
		// No proxy from the environment: the API is the monitoring
		// node's own (usually loopback), and the password must not
		// go through a proxy someone's environment names.
		Transport: &http.Transport{
			TLSClientConfig:     tc,
			TLSHandshakeTimeout: timeout,
			MaxIdleConnsPerHost: 2,
			IdleConnTimeout:     30 * time.Second,
		},
		// An API answers; a redirect would be a misconfiguration.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Probe sends one GET /v1 with New's TLS rules and no credentials but a
// client certificate, if cfg has one, and returns the HTTP status: any
// answer (401 without credentials) proves that the API is up and that its
// certificate verifies against the CA. It is for a check that holds no
// credentials (check_selfheal node); with credentials, New and Ping also
// prove they are accepted.
func Probe(ctx context.Context, cfg Config) (int, error) {
	const op = "probe"
	base, tc, timeout, err := cfg.prepare()
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1", nil)
	if err != nil {
		return 0, requestError(op, err)
	}
	req.Header.Set("Accept", "application/json")
	hc := newHTTP(tc, timeout)
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, transportError(op, err)
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// target is the one object a call touches. It is the only way a request
// names objects, and newTarget refuses an empty name, so a request
// without a target (which Icinga would apply to every object) cannot be
// built.
type target struct{ typ, name string }

func newTarget(typ, name string) (target, error) {
	if name == "" {
		return target{}, fmt.Errorf("no %s name", strings.ToLower(typ))
	}
	// JSON would turn invalid bytes into U+FFFD: another name, maybe
	// another object's.
	if !utf8.ValidString(name) {
		return target{}, fmt.Errorf("%s name %q is not valid UTF-8", strings.ToLower(typ), name)
	}
	return target{typ: typ, name: name}, nil
}

// serviceTarget is host!service. Icinga refuses '!' in object names, so
// either part holding one is a mistake, and "a!b"+"c" would be ambiguous.
func serviceTarget(host, service string) (target, error) {
	if strings.Contains(host, "!") || strings.Contains(service, "!") {
		return target{}, fmt.Errorf("host %q or service %q contains '!', which Icinga object names cannot", host, service)
	}
	if host == "" || service == "" {
		return target{}, errors.New("need both a host and a service name")
	}
	return newTarget("Service", host+"!"+service)
}

// params is the request body: the target by name (Icinga's key is the
// type in lower case) and what the call adds. verbose makes Icinga say
// why a call failed (diagnostic_information), which 2.13 only says there.
func (t target) params(extra map[string]any) map[string]any {
	p := map[string]any{"type": t.typ, strings.ToLower(t.typ): t.name, "verbose": true}
	for k, v := range extra {
		if k == "type" || k == "filter" || k == "filter_vars" || k == strings.ToLower(t.typ) {
			panic("icingaapi: extra parameter " + k + " would change the target")
		}
		p[k] = v
	}
	return p
}

func requestError(op string, err error) error {
	return &Error{Op: op, Status: err.Error(), Kind: ErrRequest}
}

// answer is every shape Icinga answers in: results, or an error.
type answer struct {
	Results []json.RawMessage `json:"results"`
	Error   json.Number       `json:"error"`
	Status  string            `json:"status"`
	Diag    string            `json:"diagnostic_information"`
}

// actionResult is one object's outcome of an action.
type actionResult struct {
	Code   float64 `json:"code"`
	Status string  `json:"status"`
	Name   string  `json:"name"` // add-comment: the new comment's name
}

// call sends one request and decodes the results. A body is sent as POST;
// query says it is a query (X-HTTP-Method-Override: GET), which is how
// Icinga takes a query's parameters as JSON (filter_vars has no URL form).
func (c *Client) call(ctx context.Context, op, path string, query bool, body map[string]any, max int64) ([]json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	method := http.MethodGet
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, requestError(op, err)
		}
		method, rd = http.MethodPost, bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, requestError(op, err)
	}
	req.Header.Set("Accept", "application/json") // Icinga compares it exactly
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if query && body != nil {
		req.Header.Set("X-HTTP-Method-Override", http.MethodGet)
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.password)
	}
	// A kept-alive connection the API closed as the request went out fails
	// with EOF. Every call but add-comment may be sent again (queries,
	// remove-comment, reschedule-check), so net/http may retry it on a
	// fresh connection; a nil header value marks it so and is not sent.
	if path != "/v1/actions/add-comment" {
		req.Header["X-Idempotency-Key"] = nil
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, transportError(op, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, transportError(op, err)
	}
	if int64(len(data)) > max {
		return nil, &Error{Op: op, Code: resp.StatusCode, Status: fmt.Sprintf("answer larger than %d bytes", max), Kind: ErrResponse}
	}
	var a answer
	jerr := json.Unmarshal(data, &a)
	if resp.StatusCode != http.StatusOK {
		status, diag := a.Status, a.Diag
		if jerr != nil {
			status = resp.Status
		} else if status == "" && len(a.Results) > 0 {
			// An action that failed on its object says so in its result.
			var r actionResult
			if json.Unmarshal(a.Results[0], &r) == nil {
				status = r.Status
			}
		}
		return nil, classify(op, resp.StatusCode, status, diag)
	}
	if jerr != nil {
		return nil, &Error{Op: op, Code: resp.StatusCode, Status: "answer is not Icinga's JSON: " + jerr.Error(), Kind: ErrResponse}
	}
	return a.Results, nil
}

// action runs one action on one target and returns its one result.
func (c *Client) action(ctx context.Context, op, name string, t target, extra map[string]any) (actionResult, error) {
	res, err := c.call(ctx, op, "/v1/actions/"+name, false, t.params(extra), maxActionBody)
	if err != nil {
		return actionResult{}, err
	}
	// One target, one result: anything else means the call reached more
	// (or fewer) objects than it named.
	if len(res) != 1 {
		return actionResult{}, &Error{Op: op, Code: 200, Status: fmt.Sprintf("%d results for one target", len(res)), Kind: ErrResponse}
	}
	var r actionResult
	if err := json.Unmarshal(res[0], &r); err != nil {
		return actionResult{}, &Error{Op: op, Code: 200, Status: "result: " + err.Error(), Kind: ErrResponse}
	}
	if r.Code < 200 || r.Code > 299 {
		return actionResult{}, classify(op, int(r.Code), r.Status, "")
	}
	return r, nil
}

// Service is what the handler's rules read about host!service.
type Service struct {
	Host, Name string
	State      int // 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
	StateType  int // 0 soft, 1 hard
	// LastStateChange is Icinga's float; FaultID is how macros print it.
	LastStateChange float64
	DowntimeDepth   int
	Acknowledgement int // 0 none, 1 normal, 2 sticky
	// Perfdata is last_check_result.performance_data joined as
	// $service.perfdata$ renders it (PluginUtility::FormatPerfdata: the
	// elements, one space apart). Icinga's JSON replaces invalid UTF-8
	// with U+FFFD, which the macro does not.
	Perfdata string
	Checked  bool // it has a check result
	// LastCheck is last_check_result.execution_end (Unix seconds, 0:
	// none): reevaluate judges a hold only on a check newer than it.
	LastCheck float64
	// From the joined host: 0 UP, 1 DOWN (Icinga 2 hosts have no
	// UNREACHABLE state; HostReachable is false when a parent is down).
	HostState         int
	HostDowntimeDepth int
	HostChecked       bool
	HostReachable     bool
}

// FaultID is $service.last_state_change$ as an EventCommand gets it,
// byte for byte: Icinga's MacroProcessor casts Timestamp fields to long,
// i.e. truncates the float to whole seconds ("1796153301").
func (s Service) FaultID() string { return strconv.FormatInt(int64(s.LastStateChange), 10) }

var (
	serviceAttrs = []string{"state", "state_type", "last_state_change", "downtime_depth", "acknowledgement", "last_check_result"}
	hostJoins    = []string{"host.state", "host.downtime_depth", "host.last_check", "host.last_reachable"}
)

type objectResult struct {
	Name  string                                `json:"name"`
	Attrs map[string]json.RawMessage            `json:"attrs"`
	Joins map[string]map[string]json.RawMessage `json:"joins"`
}

// Service reads host!service and its host (GET /v1/objects/services by
// name, joins=host). Needs objects/query/Service and objects/query/Host:
// without the latter Icinga silently leaves the host out, which is an
// ErrPermission here, not an UP host.
func (c *Client) Service(ctx context.Context, host, service string) (Service, error) {
	op := "query service " + host + "!" + service
	t, err := serviceTarget(host, service)
	if err != nil {
		return Service{}, requestError(op, err)
	}
	res, err := c.call(ctx, op, "/v1/objects/services", true,
		t.params(map[string]any{"attrs": serviceAttrs, "joins": hostJoins}), maxQueryBody)
	if err != nil {
		return Service{}, err
	}
	if len(res) != 1 {
		return Service{}, &Error{Op: op, Code: 200, Status: fmt.Sprintf("%d objects for one name", len(res)), Kind: ErrResponse}
	}
	s, err := parseService(res[0], host, service)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{Status: err.Error(), Kind: ErrResponse}
		}
		e.Op, e.Code = op, 200
		return Service{}, e
	}
	return s, nil
}

func parseService(raw json.RawMessage, host, service string) (Service, error) {
	var o objectResult
	if err := json.Unmarshal(raw, &o); err != nil {
		return Service{}, err
	}
	if o.Name != host+"!"+service {
		return Service{}, fmt.Errorf("answer is about %q", o.Name)
	}
	s := Service{Host: host, Name: service}
	var err error
	if s.LastStateChange, err = number(o.Attrs, "last_state_change"); err != nil {
		return Service{}, err
	}
	for _, f := range []struct {
		attr string
		dst  *int
	}{{"state", &s.State}, {"state_type", &s.StateType}, {"downtime_depth", &s.DowntimeDepth}, {"acknowledgement", &s.Acknowledgement}} {
		v, err := number(o.Attrs, f.attr)
		if err != nil {
			return Service{}, err
		}
		*f.dst = int(v)
	}
	var cr *struct {
		PerformanceData []json.RawMessage `json:"performance_data"`
		ExecutionEnd    float64           `json:"execution_end"`
	}
	raw, ok := o.Attrs["last_check_result"]
	if !ok {
		return Service{}, errors.New("no attribute last_check_result")
	}
	if err := json.Unmarshal(raw, &cr); err != nil {
		return Service{}, fmt.Errorf("last_check_result: %w", err)
	}
	if cr != nil {
		s.Checked, s.LastCheck = true, cr.ExecutionEnd
		parts := make([]string, len(cr.PerformanceData))
		for i, p := range cr.PerformanceData {
			// Plugins' perfdata is kept as strings; Icinga would render
			// a structured PerfdataValue itself, which is not done here.
			if err := json.Unmarshal(p, &parts[i]); err != nil {
				return Service{}, fmt.Errorf("performance_data element %d is not a plugin string: %.60s", i, p)
			}
		}
		s.Perfdata = strings.Join(parts, " ")
	}
	h, ok := o.Joins["host"]
	if !ok {
		return Service{}, &Error{Status: "the host was not joined", Detail: "Missing permission: objects/query/host", Kind: ErrPermission}
	}
	hs, err := number(h, "state")
	if err != nil {
		return Service{}, fmt.Errorf("host: %w", err)
	}
	hd, err := number(h, "downtime_depth")
	if err != nil {
		return Service{}, fmt.Errorf("host: %w", err)
	}
	hl, err := number(h, "last_check")
	if err != nil {
		return Service{}, fmt.Errorf("host: %w", err)
	}
	if err := json.Unmarshal(h["last_reachable"], &s.HostReachable); err != nil || h["last_reachable"] == nil {
		return Service{}, errors.New("host: no boolean last_reachable")
	}
	s.HostState, s.HostDowntimeDepth, s.HostChecked = int(hs), int(hd), hl > 0
	return s, nil
}

// number is a numeric attribute that must be there: a missing one would
// read as 0, which means OK, no downtime, no acknowledgement.
func number(attrs map[string]json.RawMessage, name string) (float64, error) {
	raw, ok := attrs[name]
	if !ok {
		return 0, fmt.Errorf("no attribute %s", name)
	}
	var f *float64
	if err := json.Unmarshal(raw, &f); err != nil || f == nil || math.IsNaN(*f) {
		return 0, fmt.Errorf("attribute %s is not a number: %.40s", name, raw)
	}
	return *f, nil
}

// Services reads several services, one by-name query each (at most
// MaxServices, repeated names once), within ctx and each call's timeout.
// Queries by name need no filter expression (which Icinga 2.17 puts
// behind the filter-expression permission). A service that does not
// exist is left out of the map; any other failure ends the call.
func (c *Client) Services(ctx context.Context, names [][2]string) (map[[2]string]Service, error) {
	if len(names) > MaxServices {
		return nil, &Error{Op: "query services", Status: fmt.Sprintf("%d services asked, at most %d", len(names), MaxServices), Kind: ErrRequest}
	}
	out := make(map[[2]string]Service, len(names))
	seen := make(map[[2]string]bool, len(names))
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		s, err := c.Service(ctx, n[0], n[1])
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[n] = s
	}
	return out, nil
}

// Comment is one comment on a service.
type Comment struct {
	Name, Author, Text string
	EntryTime          time.Time
	Expiry             time.Time // zero: it does not expire
	Persistent         bool
}

// commentFilter is constant: the names are filter_vars, never text in it.
const commentFilter = `comment.host_name == selfheal_host && comment.service_name == selfheal_service && comment.author == selfheal_author`

// Comments returns the comments by author on host!service, oldest first
// (GET /v1/objects/comments with a filter on exactly those three). Needs
// objects/query/Comment, and on Icinga 2.17 (or with ApiListener's
// enforce_filter_expression_permission) filter-expression too.
func (c *Client) Comments(ctx context.Context, host, service, author string) ([]Comment, error) {
	op := "query comments on " + host + "!" + service
	if _, err := serviceTarget(host, service); err != nil {
		return nil, requestError(op, err)
	}
	if author == "" || !utf8.ValidString(author) {
		return nil, requestError(op, errors.New("need an author (valid UTF-8)"))
	}
	body := map[string]any{
		"type":        "Comment",
		"filter":      commentFilter,
		"filter_vars": map[string]string{"selfheal_host": host, "selfheal_service": service, "selfheal_author": author},
		"attrs":       []string{"host_name", "service_name", "author", "text", "entry_time", "expire_time", "persistent"},
		"verbose":     true,
	}
	res, err := c.call(ctx, op, "/v1/objects/comments", true, body, maxQueryBody)
	if err != nil {
		return nil, err
	}
	out := make([]Comment, 0, len(res))
	for _, raw := range res {
		var o struct {
			Name  string `json:"name"`
			Attrs struct {
				Host      string  `json:"host_name"`
				Service   string  `json:"service_name"`
				Author    string  `json:"author"`
				Text      string  `json:"text"`
				EntryTime float64 `json:"entry_time"`
				Expire    float64 `json:"expire_time"`
				Persist   bool    `json:"persistent"`
			} `json:"attrs"`
		}
		if err := json.Unmarshal(raw, &o); err != nil {
			return nil, &Error{Op: op, Code: 200, Status: "comment: " + err.Error(), Kind: ErrResponse}
		}
		// The filter already said so; a comment that is not ours would be
		// removed by the handler, so check again.
		if o.Attrs.Host != host || o.Attrs.Service != service || o.Attrs.Author != author || o.Name == "" {
			return nil, &Error{Op: op, Code: 200, Status: fmt.Sprintf("answer holds comment %q, not one by %q on that service", o.Name, author), Kind: ErrResponse}
		}
		c := Comment{Name: o.Name, Author: o.Attrs.Author, Text: o.Attrs.Text, EntryTime: floatTime(o.Attrs.EntryTime), Persistent: o.Attrs.Persist}
		if o.Attrs.Expire > 0 {
			c.Expiry = floatTime(o.Attrs.Expire)
		}
		out = append(out, c)
	}
	slices.SortStableFunc(out, func(a, b Comment) int { return a.EntryTime.Compare(b.EntryTime) })
	return out, nil
}

// AddComment adds a comment to host!service and returns its name (for
// RemoveComment). A zero expiry adds one that does not expire; otherwise
// Icinga removes it at expiry (add-comment's "expiry", in 2.13 already).
func (c *Client) AddComment(ctx context.Context, host, service, author, text string, expiry time.Time) (string, error) {
	op := "add-comment " + host + "!" + service
	t, err := serviceTarget(host, service)
	if err != nil {
		return "", requestError(op, err)
	}
	if author == "" || text == "" {
		return "", requestError(op, errors.New("a comment needs an author and a text"))
	}
	extra := map[string]any{"author": author, "comment": text}
	if !expiry.IsZero() {
		extra["expiry"] = unixFloat(expiry)
	}
	r, err := c.action(ctx, op, "add-comment", t, extra)
	if err != nil {
		return "", err
	}
	if r.Name == "" {
		return "", &Error{Op: op, Code: 200, Status: "no comment name in the answer", Kind: ErrResponse}
	}
	return r.Name, nil
}

// RemoveComment removes the one comment called name. It never targets
// the service: remove-comment on a service removes all its comments,
// the humans' too. A comment that is gone already is ErrNotFound.
func (c *Client) RemoveComment(ctx context.Context, name string) error {
	op := "remove-comment " + name
	t, err := newTarget("Comment", name)
	if err != nil {
		return requestError(op, err)
	}
	_, err = c.action(ctx, op, "remove-comment", t, nil)
	return err
}

// RescheduleCheck moves host!service's next check to next (zero: now);
// force runs it even outside its check period or with active checks off.
func (c *Client) RescheduleCheck(ctx context.Context, host, service string, next time.Time, force bool) error {
	op := "reschedule-check " + host + "!" + service
	t, err := serviceTarget(host, service)
	if err != nil {
		return requestError(op, err)
	}
	extra := map[string]any{"force": force}
	if !next.IsZero() {
		extra["next_check"] = unixFloat(next)
	}
	_, err = c.action(ctx, op, "reschedule-check", t, extra)
	return err
}

// Info is what GET /v1 says about the authenticated ApiUser.
type Info struct {
	User        string
	Permissions []string // as Icinga lists them: "actions/add-comment (filtered)"
	Version     string
}

// Ping checks that the API is reachable, its certificate verifies and the
// credentials are accepted (GET /v1, which needs no permission).
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.Info(ctx)
	return err
}

// Info returns the authenticated user's name and permissions and Icinga's
// version (GET /v1).
func (c *Client) Info(ctx context.Context) (Info, error) {
	const op = "ping"
	res, err := c.call(ctx, op, "/v1", false, nil, maxActionBody)
	if err != nil {
		return Info{}, err
	}
	var r struct {
		User        string   `json:"user"`
		Permissions []string `json:"permissions"`
		Version     string   `json:"version"`
	}
	if len(res) != 1 || json.Unmarshal(res[0], &r) != nil || r.User == "" {
		return Info{}, &Error{Op: op, Code: 200, Status: "answer is not Icinga's /v1", Kind: ErrResponse}
	}
	return Info(r), nil
}

func unixFloat(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func floatTime(f float64) time.Time {
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9))
}
