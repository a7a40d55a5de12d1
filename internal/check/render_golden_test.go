package check

import (
	"flag"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/nagios"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestGolden pins the exact plugin output, byte for byte (internal/plugin
// renders it; testdata is -text in .gitattributes). The clock is
// fixed, so every duration in the perfdata is 0 and the output is stable.
func TestGolden(t *testing.T) {
	full := `{"status":"ok","message":"processed 120 jobs in the last minute",` +
		`"heartbeat":"2026-11-24T09:59:58Z","started_at":"2026-11-24T09:00:00Z","version":"1.4.2",` +
		`"checks":[{"name":"database","status":"ok","message":"select 1 took 3 ms"}],` +
		`"metrics":[{"name":"queue_depth","value":12,"uom":"","min":0,"max":1000}]}`
	stale := `{"status":"ok","message":"processed 0 jobs","heartbeat":"2026-11-24T09:50:00Z",` +
		`"checks":[{"name":"database","status":"ok"},{"name":"disk","status":"warning","message":"91% full"}],` +
		`"metrics":[{"name":"queue_depth","value":750,"min":0,"max":1000},{"name":"latency","value":0.25,"uom":"s"}]}`
	// A worker whose database is down: critical, yet not its own fault.
	depOnly := `{"status":"critical","message":"cannot reach the database","version":"1.4.2",` +
		`"checks":[{"name":"database","status":"critical","scope":"dependency","message":"connection refused"},` +
		`{"name":"store","status":"ok","message":"results written"}]}`
	// ... and its own store is broken too.
	depAndSelf := `{"status":"critical","message":"two problems",` +
		`"checks":[{"name":"database","status":"critical","scope":"dependency","message":"connection refused"},` +
		`{"name":"store","status":"critical","scope":"self","message":"disk full"}]}`
	// ... and it has stopped making progress: check_worker's own finding.
	depStale := `{"status":"critical","message":"cannot reach the database","heartbeat":"2026-11-24T09:50:00Z",` +
		`"checks":[{"name":"database","status":"critical","scope":"dependency","message":"connection refused"}],` +
		`"metrics":[{"name":"queue_depth","value":12,"min":0,"max":1000}]}`
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String() + "/status"
	ln.Close()

	base := func(c *Config) {
		c.MaxAgeWarn, c.MaxAgeCrit = time.Minute, 5*time.Minute
		c.Metrics = []MetricRule{mustRule(t, "queue_depth,warn=100,crit=500")}
	}
	tests := []struct {
		name    string
		handler http.HandlerFunc // nil: connection refused
		cfg     func(*Config)
		state   nagios.State
	}{
		{"ok_minimal", jsonHandler(200, `{"status":"ok","message":"processed 120 jobs in the last minute"}`), nil, nagios.OK},
		{"ok_full", jsonHandler(200, full), base, nagios.OK},
		{"critical_stale_heartbeat", jsonHandler(200, stale), base, nagios.Critical},
		{"warning_restart_loop", jsonHandler(200, full), func(c *Config) { base(c); c.MinUptime = 2 * time.Hour }, nagios.Warning},
		{"critical_http_503", jsonHandler(503, `{"status":"critical","message":"draining"}`), nil, nagios.Critical},
		{"unknown_not_json", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html></html>"))
		}, nil, nagios.Unknown},
		{"critical_refused", nil, nil, nagios.Critical},
		{"plain_ok", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("OK all good\n")) }, func(c *Config) { c.Plain = true }, nagios.OK},
		{"critical_dependency_only", jsonHandler(200, depOnly), nil, nagios.Critical},
		{"critical_dependency_and_self", jsonHandler(200, depAndSelf), nil, nagios.Critical},
		{"critical_dependency_stale_heartbeat", jsonHandler(200, depStale), base, nagios.Critical},
		{"unknown_bad_scope", jsonHandler(200, `{"status":"critical","checks":[{"name":"database","status":"critical","scope":"upstream"}]}`), nil, nagios.Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := refused
			if tt.handler != nil {
				srv := httptest.NewServer(tt.handler)
				defer srv.Close()
				url = srv.URL + "/status"
			}
			cfg := Config{URL: url, Timeout: 10 * time.Second, TimeoutState: nagios.Critical}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			res := run(t, cfg, Deps{Now: fixedClock})
			if res.State != tt.state {
				t.Errorf("state %v, want %v", res.State, tt.state)
			}
			path := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(res.Output), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if res.Output != string(want) {
				t.Errorf("output differs from %s\n--- got\n%s\n--- want\n%s", path, res.Output, want)
			}
		})
	}
}
