package icingaapi

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// seen is one request the fake API got.
type seen struct {
	Method, Path, Override, User, Pass, Accept string
	Body                                       map[string]any
}

// fake is an API on loopback that records requests and answers with
// reply (status, body).
type fake struct {
	srv   *httptest.Server
	mu    sync.Mutex
	reqs  []seen
	reply func(seen) (int, string)
}

func newFake(t *testing.T, reply func(seen) (int, string)) (*fake, *Client) {
	t.Helper()
	f := &fake{reply: reply}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := seen{Method: r.Method, Path: r.URL.Path, Override: r.Header.Get("X-HTTP-Method-Override"), Accept: r.Header.Get("Accept")}
		s.User, s.Pass, _ = r.BasicAuth()
		if b, _ := io.ReadAll(r.Body); len(b) > 0 {
			if err := json.Unmarshal(b, &s.Body); err != nil {
				t.Errorf("body is not a JSON object: %q", b)
			}
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, s)
		f.mu.Unlock()
		code, body := f.reply(s)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		io.WriteString(w, body)
	}))
	// The wrong-CA tests make the server log failed handshakes.
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{URL: f.srv.URL, CAFile: ca, User: "selfheal", Password: "s3cret-pw", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return f, c
}

func (f *fake) requests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.reqs...)
}

// goodReply answers every call as Icinga does when it succeeds.
func goodReply(s seen) (int, string) {
	switch {
	case s.Path == "/v1":
		return 200, `{"results":[{"user":"selfheal","permissions":["actions/add-comment"],"version":"r2.13.6-1"}]}`
	case s.Path == "/v1/objects/services":
		name, _ := s.Body["service"].(string)
		b, _ := json.Marshal(name)
		return 200, `{"results":[{"name":` + string(b) + `,"type":"Service","attrs":{"state":2,"state_type":1,
			"last_state_change":1796153301.987,"downtime_depth":0,"acknowledgement":0,
			"last_check_result":{"performance_data":["a=1","proc::b=2"]}},
			"joins":{"host":{"state":0,"downtime_depth":1,"last_check":1796153300.5,"last_reachable":true}}}]}`
	case s.Path == "/v1/objects/comments":
		return 200, `{"results":[]}`
	case s.Path == "/v1/actions/add-comment":
		return 200, `{"results":[{"code":200,"legacy_id":3,"name":"h!s!uuid","status":"Successfully added comment"}]}`
	case strings.HasPrefix(s.Path, "/v1/actions/"):
		return 200, `{"results":[{"code":200,"status":"Successfully done"}]}`
	}
	return 404, `{"error":404,"status":"no handler"}`
}

// TestEveryCallNamesExactlyOneObject: each request names its one object
// by name, carries no filter (comments: a constant one, the names as
// filter_vars), and crafted names travel verbatim.
func TestEveryCallNamesExactlyOneObject(t *testing.T) {
	f, c := newFake(t, goodReply)
	ctx := context.Background()
	host, svc := `h" || true || "`, `s\" || host.name == "`
	full := host + "!" + svc
	if _, err := c.Service(ctx, host, svc); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Comments(ctx, host, svc, `a" || true || "`); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddComment(ctx, host, svc, "handle_worker", "text", time.Unix(1796153400, 0)); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveComment(ctx, full+`!" || true`); err != nil {
		t.Fatal(err)
	}
	if err := c.RescheduleCheck(ctx, host, svc, time.Unix(1796153500, 500_000_000), true); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	reqs := f.requests()
	if len(reqs) != 6 {
		t.Fatalf("%d requests, want 6", len(reqs))
	}
	for _, r := range reqs {
		if r.User != "selfheal" || r.Pass != "s3cret-pw" || r.Accept != "application/json" {
			t.Errorf("%s: auth %q/%q accept %q", r.Path, r.User, r.Pass, r.Accept)
		}
		if _, ok := r.Body["filter"]; ok && r.Path != "/v1/objects/comments" {
			t.Errorf("%s carries a filter: %v", r.Path, r.Body)
		}
	}
	want := []struct {
		path, method, override, typ, key, name string
		keys                                   []string
	}{
		{"/v1/objects/services", "POST", "GET", "Service", "service", full, []string{"attrs", "joins"}},
		{"/v1/objects/comments", "POST", "GET", "Comment", "", "", []string{"filter", "filter_vars", "attrs"}},
		{"/v1/actions/add-comment", "POST", "", "Service", "service", full, []string{"author", "comment", "expiry"}},
		{"/v1/actions/remove-comment", "POST", "", "Comment", "comment", full + `!" || true`, nil},
		{"/v1/actions/reschedule-check", "POST", "", "Service", "service", full, []string{"next_check", "force"}},
		{"/v1", "GET", "", "", "", "", nil},
	}
	for i, w := range want {
		r := reqs[i]
		if r.Path != w.path || r.Method != w.method || r.Override != w.override {
			t.Errorf("request %d: %s %s override %q, want %s %s %q", i, r.Method, r.Path, r.Override, w.method, w.path, w.override)
		}
		if w.method == "GET" {
			if r.Body != nil {
				t.Errorf("%s: body %v", w.path, r.Body)
			}
			continue
		}
		allowed := map[string]bool{"type": true, "verbose": true}
		if w.key != "" {
			allowed[w.key] = true
		}
		for _, k := range w.keys {
			allowed[k] = true
		}
		for k := range r.Body {
			if !allowed[k] {
				t.Errorf("%s: unexpected parameter %q in %v", w.path, k, r.Body)
			}
		}
		if r.Body["type"] != w.typ || r.Body["verbose"] != true {
			t.Errorf("%s: type %v verbose %v", w.path, r.Body["type"], r.Body["verbose"])
		}
		if w.key != "" && r.Body[w.key] != w.name {
			t.Errorf("%s: %s = %v, want exactly %q", w.path, w.key, r.Body[w.key], w.name)
		}
	}
	cb := reqs[1].Body
	if cb["filter"] != commentFilter {
		t.Errorf("comment filter %q, want the constant %q", cb["filter"], commentFilter)
	}
	vars, _ := cb["filter_vars"].(map[string]any)
	if vars["selfheal_host"] != host || vars["selfheal_service"] != svc || vars["selfheal_author"] != `a" || true || "` || len(vars) != 3 {
		t.Errorf("filter_vars %v", vars)
	}
	if reqs[2].Body["expiry"] != float64(1796153400) || reqs[2].Body["author"] != "handle_worker" || reqs[2].Body["comment"] != "text" {
		t.Errorf("add-comment body %v", reqs[2].Body)
	}
	if reqs[4].Body["next_check"] != 1796153500.5 || reqs[4].Body["force"] != true {
		t.Errorf("reschedule-check body %v", reqs[4].Body)
	}

	// No expiry, no next_check: not sent (Icinga: none, now).
	if _, err := c.AddComment(ctx, "h", "s", "a", "t", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := c.RescheduleCheck(ctx, "h", "s", time.Time{}, false); err != nil {
		t.Fatal(err)
	}
	reqs = f.requests()
	if _, ok := reqs[6].Body["expiry"]; ok {
		t.Errorf("zero expiry sent: %v", reqs[6].Body)
	}
	if _, ok := reqs[7].Body["next_check"]; ok || reqs[7].Body["force"] != false {
		t.Errorf("zero next_check sent or force wrong: %v", reqs[7].Body)
	}
}

func TestServiceParsed(t *testing.T) {
	_, c := newFake(t, goodReply)
	s, err := c.Service(context.Background(), "h", "s")
	if err != nil {
		t.Fatal(err)
	}
	want := Service{Host: "h", Name: "s", State: 2, StateType: 1, LastStateChange: 1796153301.987, Perfdata: "a=1 proc::b=2",
		Checked: true, HostState: 0, HostDowntimeDepth: 1, HostChecked: true, HostReachable: true}
	if s != want {
		t.Errorf("got  %+v\nwant %+v", s, want)
	}
	if s.FaultID() != "1796153301" {
		t.Errorf("FaultID %q", s.FaultID())
	}
}

func TestFaultIDTruncates(t *testing.T) {
	for f, want := range map[float64]string{1796153301: "1796153301", 1796153301.999999: "1796153301", 1796153301.000001: "1796153301", 0: "0"} {
		if got := (Service{LastStateChange: f}).FaultID(); got != want {
			t.Errorf("FaultID(%v) = %q, want %q", f, got, want)
		}
	}
}

// TestRefusedBeforeSending: a call that could not name exactly one
// object is refused before anything is sent.
func TestRefusedBeforeSending(t *testing.T) {
	f, c := newFake(t, goodReply)
	ctx := context.Background()
	cases := map[string]func() error{
		"empty host":        func() error { _, err := c.Service(ctx, "", "s"); return err },
		"empty service":     func() error { _, err := c.AddComment(ctx, "h", "", "a", "t", time.Time{}); return err },
		"! in service":      func() error { return c.RescheduleCheck(ctx, "h", "s!x", time.Time{}, true) },
		"! in host":         func() error { _, err := c.Comments(ctx, "h!x", "s", "a"); return err },
		"invalid UTF-8":     func() error { _, err := c.Service(ctx, "h", "s\xff"); return err },
		"empty comment":     func() error { return c.RemoveComment(ctx, "") },
		"bad comment UTF-8": func() error { return c.RemoveComment(ctx, "h!s!\xfe") },
		"no author":         func() error { _, err := c.Comments(ctx, "h", "s", ""); return err },
		"no text":           func() error { _, err := c.AddComment(ctx, "h", "s", "a", "", time.Time{}); return err },
		"too many": func() error {
			_, err := c.Services(ctx, make([][2]string, MaxServices+1))
			return err
		},
		"empty in many": func() error { _, err := c.Services(ctx, [][2]string{{"h", ""}}); return err },
	}
	for name, call := range cases {
		if err := call(); !errors.Is(err, ErrRequest) {
			t.Errorf("%s: %v, want ErrRequest", name, err)
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("%d requests sent for refused calls", n)
	}
}

func TestParamsCannotRetarget(t *testing.T) {
	tg, err := serviceTarget("h", "s")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"filter", "filter_vars", "type", "service"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("extra %q accepted", k)
				}
			}()
			tg.params(map[string]any{k: "x"})
		}()
	}
}

// TestErrors: each Icinga answer maps to its kind, in one line, without
// the password.
func TestErrors(t *testing.T) {
	cases := []struct {
		name, body string
		code       int
		kind       error
		has        string
	}{
		{"401", `{"error":401,"status":"Unauthorized. Please check your user credentials."}`, 401, ErrUnauthorized, "HTTP 401: Unauthorized."},
		{"401 html", `<h1>Unauthorized</h1>`, 401, ErrUnauthorized, "HTTP 401: 401 Unauthorized"},
		{"2.13 missing permission", `{"error":404,"status":"No objects found.","diagnostic_information":"Error: Missing permission: actions/add-comment\n\n\t(0) libboost...\nstack"}`,
			404, ErrPermission, "HTTP 404: No objects found. (Missing permission: actions/add-comment)"},
		{"2.17 missing permission", `{"error":403,"status":"Missing permission: actions/add-comment"}`, 403, ErrPermission, "HTTP 403: Missing permission: actions/add-comment"},
		{"denied by lambda", `{"error":404,"status":"No objects found.","diagnostic_information":"Error: Access denied to object 'h!s' of type 'Service'\nstack"}`,
			404, ErrPermission, "(Access denied to object 'h!s' of type 'Service')"},
		{"no object", `{"error":404,"status":"No objects found.","diagnostic_information":"Error: Object 'h!s' of type 'Service' does not exist.\n\nstack"}`,
			404, ErrNotFound, "(Object 'h!s' of type 'Service' does not exist)"},
		{"action failed", `{"results":[{"code":500,"status":"Action execution failed: 'boom\nsecond line'."}]}`, 500, ErrResponse, "HTTP 500: Action execution failed: 'boom second line'."},
		{"result failed in a 200", `{"results":[{"code":409,"status":"conflict"}]}`, 200, ErrResponse, "HTTP 409: conflict"},
		{"two results", `{"results":[{"code":200},{"code":200}]}`, 200, ErrResponse, "2 results for one target"},
		{"not json", `<html>`, 200, ErrResponse, "not Icinga's JSON"},
		{"too large", `{"results":[{"code":200,"status":"` + strings.Repeat("x", maxActionBody) + `"}]}`, 200, ErrResponse, "larger than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, c := newFake(t, func(seen) (int, string) { return tc.code, tc.body })
			err := c.RescheduleCheck(context.Background(), "h", "s", time.Time{}, true)
			if !errors.Is(err, tc.kind) {
				t.Fatalf("%v, want %v", err, tc.kind)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.has) || strings.ContainsAny(msg, "\n\r") || strings.Contains(msg, "s3cret-pw") || len(msg) > 600 {
				t.Errorf("message %q, want one line with %q and no password", msg, tc.has)
			}
			if !strings.HasPrefix(msg, "icinga api reschedule-check h!s: ") {
				t.Errorf("message %q does not say what was asked", msg)
			}
		})
	}
}

// TestAnswersChecked: an answer that is not about what was asked, or
// lacks what the rules read, is an error, never a zero value.
func TestAnswersChecked(t *testing.T) {
	svc := func(attrs, joins string) string {
		return `{"results":[{"name":"h!s","attrs":{` + attrs + `},"joins":{` + joins + `}}]}`
	}
	attrs := `"state":2,"state_type":1,"last_state_change":5.5,"downtime_depth":0,"acknowledgement":0,"last_check_result":null`
	host := `"host":{"state":1,"downtime_depth":0,"last_check":-1,"last_reachable":false}`
	cases := []struct {
		name, body string
		kind       error
	}{
		{"no host join", svc(attrs, ``), ErrPermission},
		{"no state", svc(strings.Replace(attrs, `"state":2,`, ``, 1), host), ErrResponse},
		{"null downtime", svc(strings.Replace(attrs, `"downtime_depth":0`, `"downtime_depth":null`, 1), host), ErrResponse},
		{"no last_check_result", svc(strings.Replace(attrs, `,"last_check_result":null`, ``, 1), host), ErrResponse},
		{"host without state", svc(attrs, `"host":{"downtime_depth":0,"last_check":-1,"last_reachable":false}`), ErrResponse},
		{"host without reachable", svc(attrs, `"host":{"state":0,"downtime_depth":0,"last_check":-1}`), ErrResponse},
		{"structured perfdata", svc(strings.Replace(attrs, `null`, `{"performance_data":[{"type":"PerfdataValue","label":"a","value":1}]}`, 1), host), ErrResponse},
		{"another service", strings.Replace(svc(attrs, host), `"h!s"`, `"h!t"`, 1), ErrResponse},
		{"two services", `{"results":[{"name":"h!s"},{"name":"h!s"}]}`, ErrResponse},
	}
	for _, tc := range cases {
		_, c := newFake(t, func(seen) (int, string) { return 200, tc.body })
		if _, err := c.Service(context.Background(), "h", "s"); !errors.Is(err, tc.kind) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.kind)
		}
	}
	// The same answer with everything there parses: unchecked, host DOWN.
	_, c := newFake(t, func(seen) (int, string) { return 200, svc(attrs, host) })
	s, err := c.Service(context.Background(), "h", "s")
	if err != nil || s.Checked || s.HostState != 1 || s.HostChecked || s.HostReachable || s.Perfdata != "" {
		t.Errorf("unchecked service on a DOWN host: %+v, %v", s, err)
	}

	// Comments: one that is not by that author on that service is refused,
	// whatever the filter said.
	for name, body := range map[string]string{
		"other author":  `{"results":[{"name":"h!s!1","attrs":{"host_name":"h","service_name":"s","author":"admin","text":"t","entry_time":1}}]}`,
		"other service": `{"results":[{"name":"h!t!1","attrs":{"host_name":"h","service_name":"t","author":"me","text":"t","entry_time":1}}]}`,
		"no name":       `{"results":[{"attrs":{"host_name":"h","service_name":"s","author":"me","text":"t","entry_time":1}}]}`,
	} {
		_, c := newFake(t, func(seen) (int, string) { return 200, body })
		if _, err := c.Comments(context.Background(), "h", "s", "me"); !errors.Is(err, ErrResponse) {
			t.Errorf("comments, %s: %v, want ErrResponse", name, err)
		}
	}
	_, c = newFake(t, func(seen) (int, string) {
		return 200, `{"results":[{"name":"h!s!2","attrs":{"host_name":"h","service_name":"s","author":"me","text":"new","entry_time":20.25}},
			{"name":"h!s!1","attrs":{"host_name":"h","service_name":"s","author":"me","text":"old","entry_time":10.5}}]}`
	})
	cs, err := c.Comments(context.Background(), "h", "s", "me")
	if err != nil || len(cs) != 2 || cs[0].Name != "h!s!1" || cs[1].Text != "new" || !cs[0].EntryTime.Equal(time.Unix(10, 500_000_000)) {
		t.Errorf("comments, oldest first: %+v, %v", cs, err)
	}
	// add-comment without a name in its result.
	_, c = newFake(t, func(seen) (int, string) { return 200, `{"results":[{"code":200,"status":"ok"}]}` })
	if _, err := c.AddComment(context.Background(), "h", "s", "a", "t", time.Time{}); !errors.Is(err, ErrResponse) {
		t.Errorf("add-comment without a name: %v", err)
	}
}

// TestServicesSkipsMissing: a service that is gone is left out; any other
// failure ends the call.
func TestServicesSkipsMissing(t *testing.T) {
	f, c := newFake(t, func(s seen) (int, string) {
		switch s.Body["service"] {
		case "h!gone":
			return 404, `{"error":404,"status":"No objects found.","diagnostic_information":"Object 'h!gone' of type 'Service' does not exist."}`
		case "h!denied":
			return 404, `{"error":404,"status":"No objects found.","diagnostic_information":"Missing permission: objects/query/service"}`
		}
		return goodReply(s)
	})
	ctx := context.Background()
	m, err := c.Services(ctx, [][2]string{{"h", "a"}, {"h", "gone"}, {"h", "a"}, {"h", "b"}})
	if err != nil || len(m) != 2 || m[[2]string{"h", "a"}].Name != "a" || m[[2]string{"h", "b"}].Name != "b" {
		t.Errorf("Services: %+v, %v", m, err)
	}
	if n := len(f.requests()); n != 3 {
		t.Errorf("%d requests for 3 distinct names", n)
	}
	if _, err := c.Services(ctx, [][2]string{{"h", "a"}, {"h", "denied"}}); !errors.Is(err, ErrPermission) {
		t.Errorf("Services with a denied one: %v", err)
	}
}

// TestCallsBounded: a hung API costs the call's timeout, not more.
func TestCallsBounded(t *testing.T) {
	release := make(chan struct{})
	f, _ := newFake(t, func(seen) (int, string) { <-release; return 200, `{}` })
	defer close(release)
	c, err := New(Config{URL: f.srv.URL, CAFile: caOf(t, f), User: "u", Password: "p", Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	err = c.Ping(context.Background())
	if !errors.Is(err, ErrTransport) || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("hung API: %v, want a transport timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v with a 200ms timeout", d)
	}
	// ctx bounds it too.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	c.timeout = time.Hour
	start = time.Now()
	if err := c.Ping(ctx); err == nil || time.Since(start) > 2*time.Second {
		t.Errorf("ctx deadline: %v after %v", err, time.Since(start))
	}
}

func caOf(t *testing.T, f *fake) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWrongCAIsTLSError(t *testing.T) {
	f, _ := newFake(t, goodReply)
	other := filepath.Join(t.TempDir(), "other.crt")
	writeCA(t, other)
	c, err := New(Config{URL: f.srv.URL, CAFile: other, User: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Ping(context.Background()); !errors.Is(err, ErrTLS) {
		t.Errorf("wrong CA: %v, want ErrTLS", err)
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("%d requests reached a server whose certificate failed", n)
	}
}

func TestNewRefuses(t *testing.T) {
	f, _ := newFake(t, goodReply)
	ca := caOf(t, f)
	ok := Config{URL: f.srv.URL, CAFile: ca, User: "u", Password: "p"}
	cases := map[string]func(c *Config){
		"http":          func(c *Config) { c.URL = strings.Replace(c.URL, "https", "http", 1) },
		"no host":       func(c *Config) { c.URL = "https://" },
		"user in URL":   func(c *Config) { c.URL = strings.Replace(c.URL, "https://", "https://u:p@", 1) },
		"path":          func(c *Config) { c.URL += "/v1" },
		"query":         func(c *Config) { c.URL += "?x=1" },
		"no CA":         func(c *Config) { c.CAFile = "" },
		"missing CA":    func(c *Config) { c.CAFile = ca + ".missing" },
		"no creds":      func(c *Config) { c.User, c.Password = "", "" },
		"no password":   func(c *Config) { c.Password = "" },
		"colon in user": func(c *Config) { c.User = "a:b" },
		"half cert":     func(c *Config) { c.ClientCert = ca },
		"bad key pair":  func(c *Config) { c.ClientCert, c.ClientKey = ca, ca },
	}
	for name, mod := range cases {
		cfg := ok
		mod(&cfg)
		if c, err := New(cfg); err == nil {
			c.Close()
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %q is not one line", name, err)
		}
	}
	c, err := New(Config{URL: f.srv.URL + "/", CAFile: ca, User: "u", Password: "p"})
	if err != nil {
		t.Errorf("a trailing slash: %v", err)
	} else {
		c.Close()
	}
}

// TestFailingDropsRecovered: Icinga matches the filter and reads the
// attributes apart. A service that recovered in between comes back OK
// with its recovery's time: not a failure of this query's view. An answer
// without the state is an error, not a zone with nothing failing.
func TestFailingDropsRecovered(t *testing.T) {
	answer := `{"results":[
		{"name":"h!failing","attrs":{"state":2,"last_state_change":1796153301.5}},
		{"name":"h!recovered","attrs":{"state":0,"last_state_change":1796153399.5}}]}`
	f, c := newFake(t, func(s seen) (int, string) { return 200, answer })
	fs, err := c.Failing(context.Background(), time.Unix(1796150000, 0), "selfheal-handle-worker")
	if err != nil || len(fs) != 1 || fs[0].Name != "failing" || fs[0].LastStateChange != 1796153301.5 {
		t.Fatalf("Failing: %+v, %v; want only h!failing", fs, err)
	}
	if attrs := fmt.Sprint(f.requests()[0].Body["attrs"]); !strings.Contains(attrs, "state ") {
		t.Errorf("asked for attrs %s, want the state among them", attrs)
	}
	answer = `{"results":[{"name":"h!failing","attrs":{"last_state_change":1796153301.5}}]}`
	if fs, err := c.Failing(context.Background(), time.Unix(1796150000, 0), "selfheal-handle-worker"); !errors.Is(err, ErrResponse) {
		t.Errorf("an answer without the state: %+v, %v; want a response error", fs, err)
	}
}
