package healercheck

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/breaker"
	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/icingaapi"
	"github.com/selfheal/selfheal/internal/lab/rig/rigtest"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/nodestate"
)

var nodeNow = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

// stateDir is a handler state directory as the docs install it: 0700,
// this process's user's (the check runs as the handler's user).
func stateDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "handler")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

func nodeCfg(dir string) NodeConfig {
	return NodeConfig{StateDir: dir, Trust: fsutil.Self(), Breaker: breaker.Config{Threshold: 2, Window: 5 * time.Minute, Quiet: 2 * time.Minute},
		Recent: time.Hour, Timeout: 5 * time.Second}
}

// fifo makes a FIFO and, with reader, holds it open for reading as the
// engine does.
func fifo(t *testing.T, reader bool) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "nagios.cmd")
	if err := syscall.Mkfifo(p, 0o660); err != nil {
		t.Fatal(err)
	}
	if reader {
		f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
	}
	return p
}

func rec(host, svc, result string, at time.Time, held *nodestate.Held) nodestate.Record {
	return nodestate.Record{Host: host, Service: svc, At: at, Source: "event", Verb: "restart", Agent: host, Fault: "7",
		Result: result, Summary: result, Held: held}
}

// TestNodeStates judges handler state directories in each state; each
// case starts from an OK directory and makes one thing wrong, so a case
// cannot pass on what another set up.
func TestNodeStates(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		setup func(t *testing.T, c *NodeConfig, s nodestate.Store)
		state nagios.State
		want  []string
	}{
		{name: "node_ok", state: nagios.OK, setup: func(t *testing.T, c *NodeConfig, s nodestate.Store) {
			c.CommandFile = fifo(t, true)
			// A heal that worked, and a failure long ago (history).
			mustWrite(t, s, rec("web1", "Worker", "healed", nodeNow.Add(-time.Minute), nil))
			mustWrite(t, s, rec("web2", "Worker", "failed", nodeNow.Add(-3*time.Hour), nil))
		}, want: []string{"SELFHEAL OK - node: healing is on: nothing paused, held back or failing |", "'failing'=0;0;;0;", "'records'=2;;;0;",
			"has a reader", "trusted and writable"}},
		{name: "node_warning_paused", state: nagios.Warning, setup: func(t *testing.T, c *NodeConfig, s nodestate.Store) {
			if _, err := s.SetPause(ctx, nodeNow, nodestate.Pause{Host: "web1", Reason: "kernel update", By: "alice", At: nodeNow, Until: nodeNow.Add(time.Hour)}, false); err != nil {
				t.Fatal(err)
			}
		}, want: []string{"SELFHEAL WARNING - node: healing paused (host web1)", "'paused'=1;0;;0;", "paused: host web1 by alice for 1h more: kernel update"}},
		{name: "node_ok_pause_ignored", state: nagios.OK, setup: func(t *testing.T, c *NodeConfig, s nodestate.Store) {
			c.Ignore = map[nodestate.Rule]bool{nodestate.RulePause: true}
			if _, err := s.SetPause(ctx, nodeNow, nodestate.Pause{Reason: "x", By: "bob", At: nodeNow, Until: nodeNow.Add(time.Hour)}, false); err != nil {
				t.Fatal(err)
			}
		}, want: []string{"pauses switched off (--ignore pause): 1 set", "'paused'=1;;;0;"}},
		{name: "node_warning_breaker_open", state: nagios.Warning, setup: func(t *testing.T, c *NodeConfig, s nodestate.Store) {
			d, err := fsutil.Self().OpenDir(c.StateDir, fsutil.PrivateDir)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			bs := breaker.Store{Dir: d, Name: "breaker", Config: c.Breaker}
			for _, k := range []string{"web1!a", "web1!b", "web2!a"} {
				if _, err := bs.Admit(ctx, nodeNow.Add(-time.Minute), k, "1"); err != nil {
					t.Fatal(err)
				}
			}
		}, want: []string{"SELFHEAL WARNING - node: breaker open: 3 services needed a restart within 5m, restarts held back", "'breaker_open'=1;0;;0;1",
			"'breaker_failures'=3;2;;0;", "(web1!a, web1!b, web2!a); next step in 1m"}},
		{name: "node_warning_zone_trials_failing", state: nagios.Warning, setup: func(t *testing.T, c *NodeConfig, s nodestate.Store) {
			d, err := fsutil.Self().OpenDir(c.StateDir, fsutil.PrivateDir)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			zs := breaker.ZoneStore{Dir: d, Name: "zone", Config: breaker.ZoneConfig{Allowance: 1, Verify: time.Minute}}
			var failing []breaker.Failing
			for _, k := range []string{"web1!a", "web1!b", "web1!c"} {
				failing = append(failing, breaker.Failing{Key: k, Fault: "1", Since: nodeNow.Add(-5 * time.Minute)})
				if _, err := zs.Admit(ctx, nodeNow.Add(-4*time.Minute), time.Time{}, k, "1", failing, false); err != nil {
					t.Fatal(err)
				}
			}
			// web1!a's restart still fails after Verify.
			if _, err := zs.Admit(ctx, nodeNow.Add(-time.Minute), time.Time{}, "web1!b", "1", failing, false); err != nil {
				t.Fatal(err)
			}
		}, want: []string{"zone rule holding a storm since 4m ago: 1 trial round(s) failed, a human must look"}},
		{name: "node_warning_held", state: nagios.Warning, setup: func(t *testing.T, c *NodeConfig, s nodestate.Store) {
			mustWrite(t, s, rec("web1", "Worker", "held", nodeNow.Add(-time.Minute),
				&nodestate.Held{Rule: "downtime", Text: "in downtime", Since: nodeNow.Add(-10 * time.Minute), Fault: "7"}))
			mustWrite(t, s, rec("web2", "Worker", "backoff", nodeNow.Add(-time.Minute),
				&nodestate.Held{Rule: "backoff", Text: "agent back-off", Since: nodeNow.Add(-2 * time.Minute), Fault: "8"}))
		}, want: []string{"2 heal(s) held back: web1/Worker (downtime, since 10m ago), web2/Worker (backoff, since 2m ago)", "'held'=2;0;;0;", "'refused'=1;;;0;"}},
		{name: "node_warning_failing", state: nagios.Warning, setup: func(t *testing.T, c *NodeConfig, s nodestate.Store) {
			mustWrite(t, s, rec("web1", "Worker", "unreachable", nodeNow.Add(-5*time.Minute), nil))
			mustWrite(t, s, rec("web2", "Worker", "denied", nodeNow.Add(-time.Minute), nil))
		}, want: []string{"2 heal(s) failing: web1/Worker (unreachable 5m ago), web2/Worker (denied 1m ago)", "'failing'=2;0;;0;"}},
		{name: "node_warning_no_writeback", state: nagios.Warning, setup: func(t *testing.T, c *NodeConfig, s nodestate.Store) {
			c.CommandFile = fifo(t, false)
		}, want: []string{"no write-back to the engine: command file", "no process is reading the command file"}},
		{name: "node_critical_state_dir_open", state: nagios.Critical, setup: func(t *testing.T, c *NodeConfig, s nodestate.Store) {
			if err := os.Chmod(c.StateDir, 0o755); err != nil {
				t.Fatal(err)
			}
		}, want: []string{"SELFHEAL CRITICAL - node: the handler cannot use its state directory: state directory", "has mode 0755, not 0700"}},
		{name: "node_critical_state_dir_missing", state: nagios.Critical, setup: func(t *testing.T, c *NodeConfig, s nodestate.Store) {
			c.StateDir = filepath.Join(c.StateDir, "nope")
		}, want: []string{"the handler cannot use its state directory"}},
		{name: "node_critical_state_dir_symlink", state: nagios.Critical, setup: func(t *testing.T, c *NodeConfig, s nodestate.Store) {
			link := c.StateDir + ".link"
			if err := os.Symlink(c.StateDir, link); err != nil {
				t.Fatal(err)
			}
			c.StateDir = link
		}, want: []string{"the handler cannot use its state directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := nodeCfg(stateDir(t))
			tt.setup(t, &c, nodestate.Store{Dir: c.StateDir, Trust: c.Trust})
			res := RunNode(ctx, c, Deps{Now: func() time.Time { return nodeNow }})
			for _, w := range tt.want {
				if !strings.Contains(res.Output, w) {
					t.Errorf("output lacks %q:\n%s", w, res.Output)
				}
			}
			golden(t, tt.name, res, tt.state)
			// The write test leaves nothing the handler would read.
			if names, _ := filepath.Glob(filepath.Join(c.StateDir, probeName)); len(names) > 0 {
				t.Fatalf("probe file left behind: %v", names)
			}
		})
	}
}

// TestNodeWriteFails: a state directory the trust rule passes but where
// the write fails (a directory planted as the probe's name) is CRITICAL.
func TestNodeWriteFails(t *testing.T) {
	c := nodeCfg(stateDir(t))
	if err := os.Mkdir(filepath.Join(c.StateDir, probeName), 0o700); err != nil {
		t.Fatal(err)
	}
	res := RunNode(context.Background(), c, Deps{Now: func() time.Time { return nodeNow }})
	if res.State != nagios.Critical || !strings.Contains(res.Output, "the handler cannot write its state") {
		t.Fatalf("%v\n%s", res.State, res.Output)
	}
}

func mustWrite(t *testing.T, s nodestate.Store, r nodestate.Record) {
	t.Helper()
	if err := s.Write(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

// TestIcingaAPIAnswers: the API is asked through internal/icingaapi, as
// the handler asks it. Without credentials any HTTP answer over verified
// TLS is a working channel (a 401 included); with them, they must be
// accepted. An untrusted certificate, refused credentials or no answer
// is a WARNING.
func TestIcingaAPIAnswers(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if u, p, ok := r.BasicAuth(); ok && u == "selfheal" && p == "s3cret" {
			w.Write([]byte(`{"results":[{"user":"selfheal","permissions":["actions/add-comment"],"version":"r2.13.2-1"}]}`))
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":401,"status":"Unauthorized. Please check your user credentials."}`))
	}))
	defer srv.Close()
	dir := t.TempDir()
	caFile := func(name string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// Another CA: a self-signed certificate of its own.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other CA"}, IsCA: true,
		BasicConstraintsValid: true, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign}
	otherDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, wrongCA := caFile("ca.crt", srv.Certificate().Raw), caFile("other.crt", otherDER)
	closed := "https://127.0.0.1:" + strconv.Itoa(rigtest.ClosedPort(t))
	tests := []struct {
		name  string
		ic    icingaapi.Config
		state nagios.State
		want  string
	}{
		{"no credentials", icingaapi.Config{URL: srv.URL, CAFile: ca}, nagios.OK, "answers (HTTP 401; no credentials given"},
		{"credentials accepted", icingaapi.Config{URL: srv.URL, CAFile: ca, User: "selfheal", Password: "s3cret"}, nagios.OK, "answers as ApiUser selfheal (Icinga r2.13.2-1)"},
		{"credentials refused", icingaapi.Config{URL: srv.URL, CAFile: ca, User: "selfheal", Password: "wrong"}, nagios.Warning, "HTTP 401: Unauthorized."},
		{"untrusted certificate", icingaapi.Config{URL: srv.URL, CAFile: wrongCA}, nagios.Warning, "Icinga 2 API " + srv.URL + ": icinga api probe: "},
		{"no answer", icingaapi.Config{URL: closed, CAFile: ca}, nagios.Warning, "connection refused"},
	}
	for _, tt := range tests {
		c := nodeCfg(stateDir(t))
		c.Icinga = &tt.ic
		res := RunNode(context.Background(), c, Deps{Now: func() time.Time { return nodeNow }})
		if res.State != tt.state || !strings.Contains(res.Output, tt.want) {
			t.Errorf("%s: %v, want %v and %q\n%s", tt.name, res.State, tt.state, tt.want, res.Output)
		}
	}
}
