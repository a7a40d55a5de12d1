package engine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ZoneConfig describes an Icinga 2 high-availability zone: several
// endpoints in one zone, all on this machine, each loading the same objects
// from its own config (no config sync).
type ZoneConfig struct {
	// Binary is icinga2; empty finds it as New does.
	Binary string
	// Name is the zone's name; empty is "master".
	Name string
	// Endpoints are the endpoint names, at least two; empty is
	// {"lab-a", "lab-b"}. Each is also the endpoint's certificate CN.
	Endpoints []string
	// ObjectFiles, Objects, Resources and Constants are as in Config and
	// given to every endpoint. Each endpoint also gets the string constants
	// NodeName (its endpoint name) and ZoneName, so an EventCommand can say
	// where it ran: command = [ ..., NodeName ].
	ObjectFiles []string
	Objects     string
	Resources   map[string]string
	Constants   map[string]string
	// Stderr receives every endpoint's stdout and stderr; nil discards.
	Stderr *os.File
	// Users are ApiUser objects given to every endpoint (besides the
	// lab's own). In Resources, ${api_url} is the endpoint's own API
	// (https://127.0.0.1:PORT) and ${api_ca} its CA file.
	Users []APIUser
	// Child, when set, adds a child zone (a satellite zone) under this
	// one: its endpoints come after the zone's own in Zone.Endpoints. The
	// zone itself may then have one endpoint.
	Child *ChildZone
}

// ChildZone is a zone whose parent is the ZoneConfig's zone.
type ChildZone struct {
	Name      string
	Endpoints []string
}

// Zone is a prepared (and possibly running) HA zone. The endpoints reach
// each other only through the lab's proxies, so Cut makes a split brain.
//
// Timing, Icinga 2.13 (apilistener.cpp, apilistener-authority.cpp): the
// endpoints connect at once on start and authority is set when the sync
// finishes; after Cut each endpoint sees its peer gone at once, but takes
// authority over everything only at its 10 s authority tick and never
// before 30 s of uptime (about 40 s after start when cut early). A silent
// partition would take 60-90 s to notice (no message for 60 s); the proxy
// resets connections instead.
//
//	z, err := engine.NewZone(engine.ZoneConfig{Objects: objs, Resources: res})
//	defer z.Close()
//	err = z.Start(ctx)
//	err = z.WaitConnected(ctx)
//	who, err := z.WaitAuthorities(ctx, "h1", "svc", 1)
//	z.Cut()
//	who, err = z.WaitAuthorities(ctx, "h1", "svc", len(z.Endpoints))
type Zone struct {
	Name      string
	Dir       string // holds the CA (pki/) and one directory per endpoint
	Endpoints []*ZoneEndpoint

	proxies []*linkProxy // proxies[i] leads to Endpoints[i]
	child   *ChildZone
	zoneOf  map[string]string // endpoint -> its zone's name
}

// ZoneEndpoint is one endpoint: a full lab Instance (status.dat, compat
// log, main log, command FIFO) plus its API.
type ZoneEndpoint struct {
	*Instance
	Name string
	Zone string // its zone's name
	// APIPort is the endpoint's own ApiListener port on 127.0.0.1. Peers
	// do not use it (they go through the proxy); the lab's API client does.
	APIPort int

	client   *http.Client
	user     string
	password string
}

// NewZone creates the zone's directory, a CA and one certificate per
// endpoint (with icinga2 pki), the link proxies and every endpoint's config.
// It starts no engine.
func NewZone(cfg ZoneConfig) (_ *Zone, err error) {
	if cfg.Name == "" {
		cfg.Name = "master"
	}
	if len(cfg.Endpoints) == 0 {
		cfg.Endpoints = []string{"lab-a", "lab-b"}
	}
	if len(cfg.Endpoints) < 2 && cfg.Child == nil {
		return nil, errors.New("engine: a zone needs at least two endpoints")
	}
	zoneOf := map[string]string{}
	all := slices.Clone(cfg.Endpoints)
	for _, n := range cfg.Endpoints {
		zoneOf[n] = cfg.Name
	}
	if c := cfg.Child; c != nil {
		if c.Name == "" || c.Name == cfg.Name || len(c.Endpoints) == 0 {
			return nil, errors.New("engine: a child zone needs its own name and endpoints")
		}
		for _, n := range c.Endpoints {
			zoneOf[n] = c.Name
		}
		all = append(all, c.Endpoints...)
	}
	seen := map[string]bool{}
	for _, n := range all {
		// Each name is a directory and a file name too.
		if n == "" || n == "." || n == ".." || n == "pki" || strings.ContainsAny(n, "/\x00") || seen[n] {
			return nil, fmt.Errorf("engine: bad or repeated endpoint name %q", n)
		}
		seen[n] = true
	}
	for _, k := range []string{"NodeName", "ZoneName"} {
		if _, ok := cfg.Resources[k]; ok {
			return nil, fmt.Errorf("engine: resource %s is set by the zone", k)
		}
		if _, ok := cfg.Constants[k]; ok {
			return nil, fmt.Errorf("engine: constant %s is set by the zone", k)
		}
	}
	bin := cfg.Binary
	if bin == "" {
		if bin, err = findBinary(string(Icinga2)); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("/tmp", "nz")
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	z := &Zone{Name: cfg.Name, Dir: dir, child: cfg.Child, zoneOf: zoneOf}
	defer func() {
		if err != nil {
			z.Close()
		}
	}()

	pki := filepath.Join(dir, "pki")
	if err := makeCerts(bin, pki, all); err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(filepath.Join(pki, "ca", "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		return nil, errors.New("engine: icinga2 pki wrote no usable CA certificate")
	}

	ports := make([]int, len(all))
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
		p, err := newLinkProxy(net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i])))
		if err != nil {
			return nil, err
		}
		z.proxies = append(z.proxies, p)
	}
	password, err := randomHex(16)
	if err != nil {
		return nil, err
	}

	for i, name := range all {
		res := map[string]string{"NodeName": name, "ZoneName": zoneOf[name]}
		url := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i]))
		for k, v := range cfg.Resources {
			res[k] = strings.NewReplacer("${api_url}", url, "${api_ca}", "${dir}/var/lib/certs/ca.crt").Replace(v)
		}
		inst, err := New(Config{
			Kind:        Icinga2,
			Binary:      bin,
			Dir:         filepath.Join(dir, name),
			ObjectFiles: cfg.ObjectFiles,
			Objects:     z.clusterObjects(all, i, ports[i], password) + apiUsers(cfg.Users) + cfg.Objects,
			Resources:   res,
			Constants:   cfg.Constants,
			Stderr:      cfg.Stderr,
		})
		if err != nil {
			return nil, err
		}
		ep := &ZoneEndpoint{Instance: inst, Name: name, Zone: zoneOf[name], APIPort: ports[i], user: "lab", password: password}
		z.Endpoints = append(z.Endpoints, ep)
		// ApiListener reads DataDir/certs/<NodeName>.{crt,key} and ca.crt.
		certs := filepath.Join(inst.icingaDataDir(), "certs")
		for src, dst := range map[string]string{
			filepath.Join(pki, name+".crt"):    filepath.Join(certs, name+".crt"),
			filepath.Join(pki, name+".key"):    filepath.Join(certs, name+".key"),
			filepath.Join(pki, "ca", "ca.crt"): filepath.Join(certs, "ca.crt"),
		} {
			if err := copyFile(src, dst); err != nil {
				return nil, err
			}
		}
		// A bare Transport ignores proxy variables: the API is on loopback.
		ep.client = &http.Client{
			Timeout: 5 * time.Second,
			Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: name, MinVersion: tls.VersionTLS12},
			},
		}
	}
	return z, nil
}

// clusterObjects is endpoint i's ApiListener, Endpoint and Zone objects, and
// the API user the lab queries with. Every peer's Endpoint points at the
// peer's proxy, never at its real port.
func (z *Zone) clusterObjects(names []string, i, port int, password string) string {
	var b strings.Builder
	b.WriteString("/* Generated by engine: one endpoint of a lab HA zone. */\n")
	fmt.Fprintf(&b, `object ApiListener "api" {
  bind_host = "127.0.0.1"
  bind_port = %d
  /* As Icinga's distributed-monitoring docs set up an HA master zone (the
   * second master is set up as a satellite of the first, accepting config
   * and commands): runtime objects made through one endpoint's API
   * (comments, downtimes) reach the others as config updates, which an
   * endpoint with accept_config = false ignores ("Ignoring config
   * update"). Every endpoint receives them, so every endpoint accepts. The
   * objects themselves are loaded by each endpoint from its own files. */
  accept_config = true
  accept_commands = true
}
`, port)
	for j, n := range names {
		if j == i {
			fmt.Fprintf(&b, "object Endpoint %s { }\n", quoteIcinga(n))
			continue
		}
		fmt.Fprintf(&b, "object Endpoint %s {\n  host = \"127.0.0.1\"\n  port = %d\n}\n", quoteIcinga(n), z.proxies[j].Port())
	}
	members := func(zone string) string {
		var q []string
		for _, n := range names {
			if z.zoneOf[n] == zone {
				q = append(q, quoteIcinga(n))
			}
		}
		return strings.Join(q, ", ")
	}
	fmt.Fprintf(&b, "object Zone %s { endpoints = [ %s ] }\n", quoteIcinga(z.Name), members(z.Name))
	if c := z.child; c != nil {
		fmt.Fprintf(&b, "object Zone %s {\n  endpoints = [ %s ]\n  parent = %s\n}\n", quoteIcinga(c.Name), members(c.Name), quoteIcinga(z.Name))
	}
	// The lab's user queries, and comments (the replication test).
	fmt.Fprintf(&b, "object ApiUser \"lab\" {\n  password = %s\n  permissions = [ \"objects/query/*\", \"actions/add-comment\", \"actions/remove-comment\" ]\n}\n\n", quoteIcinga(password))
	return b.String()
}

// freePort returns a port the kernel just handed out for 127.0.0.1:0. The
// listener is closed before the engine binds it: a small race, accepted
// because icinga2 takes its port only from config.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("engine: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("engine: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	return os.WriteFile(dst, b, 0o600)
}

// CAFile is the zone's CA certificate, which signed every endpoint's.
func (z *Zone) CAFile() string { return filepath.Join(z.Dir, "pki", "ca", "ca.crt") }

// Credentials are the lab's ApiUser on every endpoint (objects/query/*,
// actions/add-comment, actions/remove-comment).
func (e *ZoneEndpoint) Credentials() (user, password string) { return e.user, e.password }

// Endpoint returns the endpoint called name, or nil.
func (z *Zone) Endpoint(name string) *ZoneEndpoint {
	for _, e := range z.Endpoints {
		if e.Name == name {
			return e
		}
	}
	return nil
}

// Start starts every endpoint at once and waits until each is ready (as
// Instance.Start). On error the endpoints already started are stopped.
func (z *Zone) Start(ctx context.Context) error {
	errs := make([]error, len(z.Endpoints))
	var wg sync.WaitGroup
	for i, e := range z.Endpoints {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.Start(ctx); err != nil {
				errs[i] = fmt.Errorf("endpoint %s: %w", e.Name, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		_ = z.Stop()
		return err
	}
	return nil
}

// Stop stops every endpoint (in parallel; each Stop is bounded).
func (z *Zone) Stop() error {
	errs := make([]error, len(z.Endpoints))
	var wg sync.WaitGroup
	for i, e := range z.Endpoints {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.Stop()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close stops the endpoints, closes the proxies and removes the directory.
func (z *Zone) Close() error {
	err := z.Stop()
	for _, p := range z.proxies {
		err = errors.Join(err, p.Close())
	}
	for _, e := range z.Endpoints {
		if e.client != nil {
			e.client.CloseIdleConnections()
		}
	}
	return errors.Join(err, os.RemoveAll(z.Dir))
}

// Cut breaks the link between all endpoints: every connection through the
// proxies is reset and new ones are refused, so each endpoint sees its
// peers disconnect at once and, within Icinga's 10 s authority timer (and
// not before 30 s after its start), takes authority over every object.
func (z *Zone) Cut() {
	for _, p := range z.proxies {
		p.Cut()
	}
}

// Restore reconnects the link; Icinga 2 dials again on its 10 s timer.
// Authority goes back to one endpoint per object when the reconnecting
// side syncs or at the next 10 s authority tick: until then both endpoints
// may still hold it (WaitAuthorities with n = 1 waits that out).
func (z *Zone) Restore() {
	for _, p := range z.proxies {
		p.Restore()
	}
}

// Peers asks the endpoint's API which of its peers are connected.
func (e *ZoneEndpoint) Peers(ctx context.Context) (map[string]bool, error) {
	var res []apiObject
	if err := e.apiGet(ctx, "/v1/objects/endpoints", []string{"connected"}, &res); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, o := range res {
		if o.Name != e.Name {
			c, _ := o.Attrs["connected"].(bool)
			out[o.Name] = c
		}
	}
	return out, nil
}

// ServiceAttrs returns attributes of host!service from the endpoint's API
// (numbers decoded as json.Number, to keep their exact text).
func (e *ZoneEndpoint) ServiceAttrs(ctx context.Context, host, service string, attrs ...string) (map[string]any, error) {
	var res []apiObject
	name := host + "!" + service
	if err := e.apiGet(ctx, "/v1/objects/services/"+name, attrs, &res); err != nil {
		return nil, err
	}
	if len(res) != 1 {
		return nil, fmt.Errorf("engine: %s: %d objects named %s", e.Name, len(res), name)
	}
	return res[0].Attrs, nil
}

// HasAuthority reports whether the endpoint is active for host!service
// (not HA-paused): it runs the checks and the event handler.
func (e *ZoneEndpoint) HasAuthority(ctx context.Context, host, service string) (bool, error) {
	a, err := e.ServiceAttrs(ctx, host, service, "paused")
	if err != nil {
		return false, err
	}
	paused, ok := a["paused"].(bool)
	if !ok {
		return false, fmt.Errorf("engine: %s: no paused attribute for %s!%s", e.Name, host, service)
	}
	return !paused, nil
}

// MainLogLines returns the lines of the endpoint's main log containing
// substr, e.g. "Skipping event handler for HA-paused checkable 'h!s'".
func (e *ZoneEndpoint) MainLogLines(substr string) ([]string, error) {
	f, err := os.Open(e.MainLog)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), substr) {
			out = append(out, sc.Text())
		}
	}
	return out, sc.Err()
}

type apiObject struct {
	Name  string         `json:"name"`
	Attrs map[string]any `json:"attrs"`
}

func (e *ZoneEndpoint) apiGet(ctx context.Context, path string, attrs []string, out *[]apiObject) error {
	q := url.Values{}
	for _, a := range attrs {
		q.Add("attrs", a)
	}
	u := url.URL{Scheme: "https", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(e.APIPort)), Path: path, RawQuery: q.Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(e.user, e.password)
	req.Header.Set("Accept", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		return fmt.Errorf("engine: %s API: %w", e.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("engine: %s API: %w", e.Name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("engine: %s API %s: %s: %.200s", e.Name, path, resp.Status, body)
	}
	var doc struct {
		Results []apiObject `json:"results"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("engine: %s API %s: %w", e.Name, path, err)
	}
	*out = doc.Results
	return nil
}

func (z *Zone) peersAre(ctx context.Context, want bool) (bool, error) {
	for _, e := range z.Endpoints {
		peers, err := e.Peers(ctx)
		if err != nil {
			return false, err
		}
		if len(peers) != len(z.Endpoints)-1 {
			return false, fmt.Errorf("engine: %s knows %d peers, want %d", e.Name, len(peers), len(z.Endpoints)-1)
		}
		for _, c := range peers {
			if c != want {
				return false, nil
			}
		}
	}
	return true, nil
}

// WaitConnected polls until every endpoint sees all its peers connected.
func (z *Zone) WaitConnected(ctx context.Context) error {
	return z.waitPeers(ctx, true)
}

// WaitSplit polls until no endpoint sees any peer connected.
func (z *Zone) WaitSplit(ctx context.Context) error {
	return z.waitPeers(ctx, false)
}

func (z *Zone) waitPeers(ctx context.Context, want bool) error {
	var last error
	err := poll(ctx, 200*time.Millisecond, func() (bool, error) {
		if err := z.running(); err != nil {
			return false, err
		}
		ok, err := z.peersAre(ctx, want)
		last = err // the API may not answer yet: keep polling
		return ok, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the zone to be %s (last API error: %v): %w", map[bool]string{true: "connected", false: "split"}[want], last, err)
	}
	return nil
}

// Authorities returns the names of the endpoints that hold authority over
// host!service, sorted.
func (z *Zone) Authorities(ctx context.Context, host, service string) ([]string, error) {
	var out []string
	for _, e := range z.Endpoints {
		ok, err := e.HasAuthority(ctx, host, service)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, e.Name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// WaitAuthorities polls until exactly n endpoints hold authority over
// host!service (1: HA as designed; all: split brain) and returns them.
func (z *Zone) WaitAuthorities(ctx context.Context, host, service string, n int) ([]string, error) {
	var last []string
	var lastErr error
	err := poll(ctx, 200*time.Millisecond, func() (bool, error) {
		if err := z.running(); err != nil {
			return false, err
		}
		a, err := z.Authorities(ctx, host, service)
		if err != nil {
			lastErr = err
			return false, nil
		}
		last = a
		return len(a) == n, nil
	})
	if err != nil {
		return last, fmt.Errorf("waiting for %d endpoint(s) with authority over %s!%s (last: %q, API error: %v): %w", n, host, service, last, lastErr, err)
	}
	return last, nil
}

func (z *Zone) running() error {
	for _, e := range z.Endpoints {
		if !e.Running() {
			return fmt.Errorf("engine: endpoint %s is not running (see %s)", e.Name, e.MainLog)
		}
	}
	return nil
}
