package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/engine"
	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/testutil"
	"github.com/selfheal/selfheal/internal/nagios"
)

// zoneWorkers is how many workers the zone-rule test watches: more than
// the default allowance (10), and few enough for one endpoint's share
// (about half) to stay under it, as the old per-endpoint count did.
const zoneWorkers = 13

// TestHAZoneRule: the mass-failure rule is the zone's, on a real Icinga 2
// HA zone of two endpoints, each running the shipped selfheal.conf with
// its handler reading its own endpoint's REST API. One allowance: 4
// workers crashing at once are 4 restarts, none held. One storm: all 13
// crash at once; both endpoints handle their share, and together they
// restart at most 10 (the old per-endpoint count would have let all 13
// through, about 6 per endpoint; the zone rule usually holds all 13, as
// every one is SOFT CRITICAL before the first turns HARD); every held one
// gets one comment naming the zone's count.
func TestHAZoneRule(t *testing.T) {
	icinga := testutil.LookTool(t, "icinga2", "/usr/sbin/icinga2")
	start := time.Now()
	logf := func(format string, args ...any) {
		t.Helper()
		t.Logf("[%5.1fs] %s", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	dir := t.TempDir()
	bins := map[string]string{}
	for _, name := range rig.Binaries {
		bins[name] = testutil.Binary(t, name)
	}
	binDir := filepath.Join(dir, "bin")
	if err := rig.LinkBinaries(binDir, bins); err != nil {
		t.Fatal(err)
	}
	bin := func(name string) string { return filepath.Join(binDir, name) }
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Second)
	defer cancel()

	type worker struct {
		name, target string
		w            rig.Worker
		port         int
	}
	var workers []worker
	var services []rig.Service
	var err error
	for i := range zoneWorkers {
		name, target := svcName, rig.Target
		if i > 0 {
			name, target = rig.ExtraName(i)
		}
		var w rig.Worker
		var port int
		// A free port can be taken again before the worker binds it (the
		// machine is shared): another port then.
		for try := 0; ; try++ {
			if port, err = rig.FreePort(); err != nil {
				t.Fatal(err)
			}
			w = rig.Worker{Bin: bin("demo_worker"), Addr: "127.0.0.1:" + strconv.Itoa(port),
				PIDFile: filepath.Join(dir, target+".pid"), LogFile: filepath.Join(dir, target+".log")}
			_, err := w.Daemon(ctx, "start")
			if err == nil {
				break
			}
			if try == 4 {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() { _ = w.Shutdown(context.Background()) })
		workers = append(workers, worker{name, target, w, port})
		services = append(services, rig.Service{Name: target, Actions: map[string]rig.Action{
			"restart": {Argv: w.Argv("restart"), Timeout: "10s", KillGrace: "5s"}}})
	}
	lport, err2 := rig.FreePort()
	if err2 != nil {
		t.Fatal(err2)
	}
	if err != nil {
		t.Fatal(err)
	}
	audit := filepath.Join(dir, "audit.log")
	off := false
	files, err := rig.Prepare(ctx, rig.Kit{Dir: filepath.Join(dir, "agent"), Agent: hostName, Issue: bin("handle_worker"),
		Config: rig.ListenerConfig{Listen: "127.0.0.1:" + strconv.Itoa(lport), Allow: rig.Loopback, AuditLog: audit,
			// The agent's own breaker is off: this test is about the zone's.
			Budget: &rig.Budget{Max: 100, Window: "1h", MinGap: "0s"}, Breaker: &rig.Breaker{Enabled: &off}, Services: services}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := rig.StartListener(ctx, rig.Serve{Bin: bin("worker_listener"), Config: files.Config, Log: filepath.Join(dir, "listener.log"),
		Ping: &files.Fleet, PingAgent: hostName})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Stop(10 * time.Second) })

	// The shipped selfheal.conf on both endpoints; each endpoint's handler
	// writes back and reads the zone through its own endpoint's API.
	password := "zone-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	creds := filepath.Join(dir, "api-credentials")
	if err := os.WriteFile(creds, []byte("selfheal:"+password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	site := rig.Site{Kind: engine.Icinga2, ConfigDir: filepath.Join(testutil.ModuleRoot(t), "nagios-config"), BinDir: binDir,
		KeyFile: files.FleetFile, StateDir: "${dir}/handler-state", HandlerLog: "${dir}/handle_worker.log",
		ListenerPort: lport, CheckTimeout: 2, MaxAge: "2s,3s", Recheck: "1s", WorkerPort: workers[0].port}
	for _, w := range workers[1:] {
		site.Extra = append(site.Extra, rig.SiteService{Name: w.name, Target: w.target, Port: w.port})
	}
	cfg, err := site.Config()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Resources["SelfhealCommandFile"] = ""
	cfg.Resources["SelfhealIcingaCredentials"] = creds
	cfg.Resources["SelfhealIcingaCA"] = "${dir}/var/lib/certs/ca.crt"
	cfg.Resources["SelfhealIcingaAPI"] = "zone-api-url" // each endpoint's own, below
	out, err := os.Create(filepath.Join(dir, "zone.out"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	z, err := engine.NewZone(engine.ZoneConfig{Binary: icinga, ObjectFiles: cfg.ObjectFiles, Resources: cfg.Resources,
		Constants: cfg.Constants, Stderr: out,
		Objects: cfg.Objects + fmt.Sprintf("object ApiUser \"selfheal\" {\n  password = %q\n  permissions = [ \"*\" ]\n}\n", password)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := z.Close(); err != nil {
			t.Errorf("closing the zone: %v", err)
		}
	})
	for _, e := range z.Endpoints {
		// The API's port is known only now: point the endpoint's
		// constant at it.
		consts := filepath.Join(filepath.Dir(e.MainConfig), "constants.conf")
		b, err := os.ReadFile(consts)
		if err != nil {
			t.Fatal(err)
		}
		url := fmt.Sprintf("https://127.0.0.1:%d", e.APIPort)
		if !strings.Contains(string(b), `"zone-api-url"`) {
			t.Fatalf("%s: no SelfhealIcingaAPI placeholder:\n%s", consts, b)
		}
		if err := os.WriteFile(consts, []byte(strings.Replace(string(b), `"zone-api-url"`, strconv.Quote(url), 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(e.Dir, "handler-state"), 0o700); err != nil {
			t.Fatal(err)
		}
		if text, err := e.Validate(ctx); err != nil {
			t.Fatalf("%s: %v\n%s", e.Name, err, text)
		}
	}
	if err := z.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := z.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	logf("zone up and connected; %d workers", len(workers))
	waitOK := func(list []worker, what string) {
		t.Helper()
		for _, w := range list {
			for _, e := range z.Endpoints {
				if _, err := e.WaitService(ctx, hostName, w.name, func(s engine.Service) bool {
					return s.HasBeenChecked && s.State == nagios.OK && s.Hard
				}); err != nil {
					t.Fatalf("%s: %s on %s: %v", what, w.name, e.Name, err)
				}
			}
		}
	}
	waitOK(workers, "start")

	// handled reads both endpoints' handler logs: per service, the
	// endpoint that restarted it or held it by the zone rule.
	type handling struct{ restarted, held map[string]string }
	handled := func(since time.Time) handling {
		h := handling{restarted: map[string]string{}, held: map[string]string{}}
		for _, e := range z.Endpoints {
			recs, _ := rig.ReadHandlerLog(filepath.Join(e.Dir, "handle_worker.log"))
			for _, r := range recs {
				var x struct {
					Service string    `json:"service"`
					Time    time.Time `json:"time"`
				}
				if json.Unmarshal([]byte(r.Raw), &x) != nil || x.Time.Before(since) || r.Source != "event" {
					continue
				}
				switch {
				case r.Held == "breaker":
					h.held[x.Service] = e.Name
				case r.Decision == "restart" && r.Held == "":
					h.restarted[x.Service] = e.Name
				}
			}
		}
		return h
	}
	crash := func(list []worker) time.Time {
		t.Helper()
		at := time.Now().Add(-time.Second) // the handler log has whole seconds
		var wg sync.WaitGroup
		for _, w := range list {
			wg.Go(func() {
				if err := w.w.Fault(ctx, "crash"); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		return at
	}
	settle := func(since time.Time, n int) handling {
		t.Helper()
		for {
			h := handled(since)
			if len(h.restarted)+len(h.held) >= n {
				return h
			}
			select {
			case <-ctx.Done():
				t.Fatalf("only %d of %d crashed services handled: %+v", len(h.restarted)+len(h.held), n, h)
			case <-time.After(250 * time.Millisecond):
			}
		}
	}

	// One allowance: 4 at once, all restarted.
	since := crash(workers[:4])
	h := settle(since, 4)
	if len(h.restarted) != 4 || len(h.held) != 0 {
		t.Fatalf("4 at once: restarted %v, held %v; want all 4 restarted", h.restarted, h.held)
	}
	waitOK(workers[:4], "4 at once")
	logf("4 at once: restarted by %v", h.restarted)

	// One storm: all at once.
	since = crash(workers)
	h = settle(since, len(workers))
	per := map[string]int{}
	for _, e := range h.restarted {
		per[e]++
	}
	for _, e := range h.held {
		per[e+" (held)"]++
	}
	logf("%d at once: %d restarted, %d held; per endpoint %v", len(workers), len(h.restarted), len(h.held), per)
	if len(h.restarted) > 10 || len(h.restarted)+len(h.held) != len(workers) {
		for _, e := range z.Endpoints {
			recs, _ := rig.ReadHandlerLog(filepath.Join(e.Dir, "handle_worker.log"))
			for _, r := range recs[max(0, len(recs)-8):] {
				t.Logf("%s: %s", e.Name, r.Raw)
			}
		}
		t.Fatalf("storm: restarted %v, held %v; want at most 10 restarted in the zone, the rest held", h.restarted, h.held)
	}
	for svc, ep := range h.held {
		c, err := z.Endpoint(ep).WaitComment(ctx, hostName, svc, "(mass failure)")
		if err != nil {
			t.Fatalf("held %s (by %s): %v", svc, ep, err)
		}
		if !strings.Contains(c.Text, "services of this zone turned CRITICAL") || !strings.Contains(c.Text, "host "+hostName) {
			t.Fatalf("held %s: comment %q names no zone count or host", svc, c.Text)
		}
	}
	runs := 0
	recs, err := rig.ReadAudit(audit)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Verb == "restart" && r.Origin == "run" && !r.Time.Before(since) {
			runs++
		}
	}
	if runs > 10 {
		t.Fatalf("the agent ran %d restarts in the storm, want at most 10", runs)
	}
	logf("storm: the agent ran %d; every held service has its comment", runs)
}
