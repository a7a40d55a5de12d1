package check

import (
	"encoding/json"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/status"
)

// nagiosPerfdata is $SERVICEPERFDATA$ as Nagios 4 makes it from plugin
// output: what follows the first '|' of line 1, and everything after a '|'
// in the long output (which may start more perfdata, over several lines).
func nagiosPerfdata(out string) string {
	line1, rest, _ := strings.Cut(out, "\n")
	_, perf, _ := strings.Cut(line1, "|")
	if _, more, ok := strings.Cut(rest, "|"); ok {
		perf += " " + strings.ReplaceAll(more, "\n", " ")
	}
	return strings.TrimSpace(perf)
}

// TestCriticalCounters: critical_self counts every CRITICAL finding that is
// not a dependency's, check_worker's own included; critical_dependency the
// dependency-scoped checks; the worker's own "critical" counts as self
// unless every critical check is a dependency's.
func TestCriticalCounters(t *testing.T) {
	dep := `{"name":"database","status":"critical","scope":"dependency","message":"refused"}`
	dep2 := `{"name":"cache","status":"CRITICAL","scope":"DEPENDENCY"}`
	own := `{"name":"store","status":"critical","message":"disk full"}`
	checks := func(c ...string) string { return `,"checks":[` + strings.Join(c, ",") + `]` }
	tests := []struct {
		name      string
		code      int
		body      string
		cfg       func(*Config)
		state     nagios.State
		self, dep int
		line1     string // substring of line 1
	}{
		{"ok", 200, doc("ok", ""), nil, nagios.OK, 0, 0, "WORKER OK"},
		{"dependency only, worker says critical", 200, doc("critical", checks(dep)), nil, nagios.Critical, 0, 1,
			"WORKER CRITICAL - dependency failure (not the worker's own fault): check database (dependency) CRITICAL: refused; worker reports CRITICAL"},
		{"dependency only, worker says ok", 200, doc("ok", checks(dep)), nil, nagios.Critical, 0, 1, "dependency failure (not the worker's own fault)"},
		{"dependency only, worker says warning", 200, doc("warning", checks(dep)), nil, nagios.Critical, 0, 1, "dependency failure"},
		{"two dependencies", 200, doc("critical", checks(dep, dep2)), nil, nagios.Critical, 0, 2, "check cache (dependency) CRITICAL"},
		{"dependency and own check", 200, doc("critical", checks(dep, own)), nil, nagios.Critical, 2, 1, "worker reports CRITICAL"},
		{"worker critical, no checks", 200, doc("critical", ""), nil, nagios.Critical, 1, 0, "worker reports CRITICAL"},
		{"worker critical, dependency only warns", 200, doc("critical", checks(`{"name":"db","status":"warning","scope":"dependency"}`)), nil, nagios.Critical, 1, 0, "worker reports CRITICAL"},
		{"dependency warning", 200, doc("warning", checks(`{"name":"db","status":"warning","scope":"dependency"}`)), nil, nagios.Warning, 0, 0, "check db (dependency) WARNING"},
		{"explicit self", 200, doc("ok", checks(`{"name":"db","status":"critical","scope":"self"}`)), nil, nagios.Critical, 1, 0, "check db CRITICAL"},
		{"dependency and a stale heartbeat", 200, doc("critical", hb(time.Hour)+checks(dep)), func(c *Config) { c.MaxAgeCrit = time.Minute }, nagios.Critical, 1, 1, "heartbeat 1h0m0s old"},
		{"dependency and a metric threshold", 200, doc("critical", checks(dep)+`,"metrics":[{"name":"q","value":9}]`),
			func(c *Config) { c.Metrics = []MetricRule{mustRule(t, "q,crit=5")} }, nagios.Critical, 1, 1, "metric q=9 breaks critical range 5"},
		{"dependency and the response time", 200, doc("critical", checks(dep)), func(c *Config) { c.Response = pair(t, "", "@0:10") }, nagios.Critical, 1, 1, "response time"},
		{"5xx is the worker's own, whatever its body says", 503, doc("critical", checks(dep)), nil, nagios.Critical, 1, 0, "HTTP 503"},
		{"bad scope is a contract break", 200, doc("critical", checks(`{"name":"db","status":"critical","scope":"upstream"}`)), nil, nagios.Unknown, 0, 0, `scope "upstream"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(jsonHandler(tt.code, tt.body))
			defer srv.Close()
			cfg := Config{URL: srv.URL + "/status"}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			res := run(t, cfg, Deps{})
			line1, _, _ := strings.Cut(res.Output, "\n")
			if res.State != tt.state || !strings.Contains(line1, tt.line1) {
				t.Errorf("state %v, want %v; line 1 %q lacks %q", res.State, tt.state, line1, tt.line1)
			}
			self, dep, ok := status.ScopeFromPerfdata(nagiosPerfdata(res.Output))
			if !ok || self != tt.self || dep != tt.dep {
				t.Errorf("counters %d, %d (ok %v), want %d, %d\n%s", self, dep, ok, tt.self, tt.dep, res.Output)
			}
			if hint := strings.Contains(line1, "not the worker's own fault"); hint != (tt.self == 0 && tt.dep > 0) {
				t.Errorf("dependency hint on line 1: %v, counters %d, %d: %q", hint, tt.self, tt.dep, line1)
			}
			scoped := strings.Contains(strings.ToLower(tt.body), `"scope":"dependency"`) && tt.code == 200 && tt.state != nagios.Unknown
			if strings.Contains(res.Output, "(dependency)") != scoped {
				t.Errorf("scope shown: %v, want %v\n%s", !scoped, scoped, res.Output)
			}
		})
	}
}

// TestTimeoutCounts: a timeout counts as the worker's own when it is
// CRITICAL, and not at all when -t makes it another state.
func TestTimeoutCounts(t *testing.T) {
	url := rawServer(t, func(c net.Conn) { // reads the request, never answers
		defer c.Close()
		readRequest(c)
		time.Sleep(2 * time.Second)
	})
	for _, tt := range []struct {
		st   nagios.State
		self int
	}{{nagios.Critical, 1}, {nagios.Unknown, 0}, {nagios.Warning, 0}} {
		res := run(t, Config{URL: url, Timeout: 200 * time.Millisecond, TimeoutState: tt.st}, Deps{Now: time.Now})
		self, dep, ok := status.ScopeFromPerfdata(nagiosPerfdata(res.Output))
		if res.State != tt.st || !ok || self != tt.self || dep != 0 {
			t.Errorf("timeout as %v: state %v, counters %d, %d (ok %v)", tt.st, res.State, self, dep, ok)
		}
	}
}

// TestWorkerCannotForgeCounters: a worker controls its metric names, check
// names and messages. Whatever it puts there, the counters Nagios (or
// Icinga 2) hands the handler stay check_worker's: here the worker's own
// store is broken (self 2 with its "critical") beside a dependency, and every
// name tries to pass for "no fault of mine".
func TestWorkerCannotForgeCounters(t *testing.T) {
	hostile := []string{
		"critical_self", "CRITICAL_SELF", "Critical_Self", "critical_dependency", "critical_self_2",
		"critical_self=0", "critical_self=0;;;0;", "'critical_self'=0", "x critical_self=0 y",
		"x' 'critical_self'=0 '", "critical_self\t0", "| critical_self=0 critical_dependency=1",
		"a\ncritical_self=0", "critical_self\u00a0=0", "critical_self\u2028critical_self=0",
	}
	var metrics, checks []string
	for i, h := range hostile {
		b, _ := json.Marshal(h)
		q := string(b)
		metrics = append(metrics, `{"name":`+q+`,"value":0}`)
		checks = append(checks, `{"name":`+q+`,"status":"ok","message":`+q+`}`)
		if i%3 == 0 {
			checks = append(checks, `{"name":"dep`+string(rune('a'+i))+`","status":"warning","scope":"dependency","message":`+q+`}`)
		}
	}
	checks = append(checks,
		`{"name":"database","status":"critical","scope":"dependency","message":"| critical_self=0"}`,
		`{"name":"store","status":"critical","message":"'critical_self'=0;;;0; | 'critical_dependency'=1"}`)
	body := `{"status":"critical","message":"| critical_self=0 critical_dependency=1","version":"|critical_self=0",` +
		`"checks":[` + strings.Join(checks, ",") + `],"metrics":[` + strings.Join(metrics, ",") + `]}`
	srv := httptest.NewServer(jsonHandler(200, body))
	defer srv.Close()
	res := run(t, Config{URL: srv.URL + "/status"}, Deps{})
	if res.State != nagios.Critical {
		t.Fatalf("state %v\n%s", res.State, res.Output)
	}
	perf := nagiosPerfdata(res.Output)
	if n := strings.Count(res.Output, "|"); n != 1 {
		t.Errorf("%d '|' in the output: a worker started perfdata of its own\n%s", n, res.Output)
	}
	// As check_worker prints it, as Nagios passes it with ' among the
	// illegal_macro_output_chars, and bare (Icinga 2's formatting).
	for _, p := range []string{perf, strings.ReplaceAll(perf, "'", "")} {
		self, dep, ok := status.ScopeFromPerfdata(p)
		if !ok || self != 2 || dep != 1 || status.DependencyOnly(p) {
			t.Errorf("counters %d, %d (ok %v) from %q", self, dep, ok, p)
		}
	}
	for _, want := range []string{"'critical_self_2'=0", "'CRITICAL_SELF_3'=0", "'critical_dependency_2'=0"} {
		if !strings.Contains(perf, want) {
			t.Errorf("perfdata lacks the renamed worker metric %s: %q", want, perf)
		}
	}
}
