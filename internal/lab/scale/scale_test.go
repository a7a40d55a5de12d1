// Package scale is the scale lab (`make scale`, never part of `make
// test`): N simulated workers on one machine, watched by a real Icinga 2 HA
// zone of two endpoints running the shipped selfheal.conf, with one real
// worker_listener per simulated host. The workers are one process (this
// test) serving every status endpoint, each host on its own loopback
// address (127.0.1.H), so N costs sockets, not processes. A restart action
// is curl asking that process to serve the endpoint again.
//
//	make scale                  # 10,000 workers on 100 hosts
//	make scale N=500 HOSTS=5    # smaller
//
// It prints the figures of issue 20's proof: the start-up (every service
// checked OK, check latency back under 5 s, the handlers' API requests),
// independent faults (INDEPENDENT, default 50, one every 10 s on
// different hosts: detection and heal times), two storms (STORM, default
// 1,000: all the services of 10 hosts, then 10 on every host: restarts,
// holds, comments and their delay, detection, then recovery without a
// person within RECOVER_MIN minutes: restarts in flight, reevaluate's
// passes). Before them, a control: the first storm with the event
// handlers off, the engine's own detection under the load. INDEPENDENT=0
// skips the independent faults; SHAPES picks of c (the control), a and b.
package scale

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/engine"
	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/testutil"
	"github.com/selfheal/selfheal/internal/status"
)

// fleet serves every simulated worker's /status.
type fleet struct {
	mu        sync.Mutex
	up        map[string]net.Listener // addr -> its listener while it runs
	restarted map[string][]time.Time  // addr -> when a restart started it
	srv       *http.Server
	ctrl      string // the control address: /restart?addr=...
}

func (f *fleet) start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.up[addr] = ln
	f.mu.Unlock()
	go f.srv.Serve(ln)
	return nil
}

// crash closes the endpoint: connection refused, as a crashed worker.
func (f *fleet) crash(addr string) {
	f.mu.Lock()
	ln := f.up[addr]
	delete(f.up, addr)
	f.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
}

func (f *fleet) running(addr string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.up[addr] != nil
}

func newFleet(t *testing.T) *fleet {
	f := &fleet{up: map[string]net.Listener{}, restarted: map[string][]time.Time{}}
	started := time.Now().Add(-time.Hour)
	mux := http.NewServeMux()
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		now := time.Now()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(status.Document{Status: "ok", Message: "simulated", Heartbeat: &now, StartedAt: &started})
	})
	mux.HandleFunc("/restart", func(w http.ResponseWriter, r *http.Request) {
		addr := r.URL.Query().Get("addr")
		if f.running(addr) {
			return
		}
		if err := f.start(addr); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		f.mu.Lock()
		f.restarted[addr] = append(f.restarted[addr], time.Now())
		f.mu.Unlock()
	})
	f.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.ctrl = ln.Addr().String()
	go f.srv.Serve(ln)
	t.Cleanup(func() { f.srv.Close() })
	return f
}

type host struct {
	name, ip string
	lport    int
	audit    string
	services []string // target names; service i listens on ip:basePort+i
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// TestScale is the lab. SELFHEAL_SCALE=N runs it (HOSTS, default N/100).
func TestScale(t *testing.T) {
	n := envInt("SELFHEAL_SCALE", 0)
	if n == 0 {
		t.Skip("set SELFHEAL_SCALE=N (make scale)")
	}
	nh := envInt("HOSTS", max(1, n/100))
	per := n / nh
	icinga := testutil.LookTool(t, "icinga2", "/usr/sbin/icinga2")
	begin := time.Now()
	logf := func(format string, args ...any) {
		t.Helper()
		t.Logf("[%6.1fs] %s", time.Since(begin).Seconds(), fmt.Sprintf(format, args...))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 110*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bins := map[string]string{}
	for _, name := range rig.Binaries {
		bins[name] = testutil.Binary(t, name)
	}
	binDir := filepath.Join(dir, "bin")
	if err := rig.LinkBinaries(binDir, bins); err != nil {
		t.Fatal(err)
	}
	f := newFleet(t)
	// One port range for every host (each host has its own address).
	var basePort int
	for try := 0; ; try++ {
		basePort = 20000 + rand.IntN(10000-per-2)
		ok := true
		for h := range nh {
			for s := range per + 1 {
				ln, err := net.Listen("tcp", fmt.Sprintf("127.0.1.%d:%d", h+1, basePort+s))
				if err != nil {
					ok = false
					break
				}
				ln.Close()
			}
		}
		if ok || try == 20 {
			break
		}
	}
	var hosts []*host
	var fleetFile string
	var objs strings.Builder
	// One node host per endpoint (NewZone's defaults), as hosts.conf says
	// for an HA zone: each endpoint's reevaluate re-asks its own holds.
	for _, ep := range []string{"lab-a", "lab-b"} {
		fmt.Fprintf(&objs, "object Host %q {\n  check_command = \"dummy\"\n  enable_active_checks = false\n"+
			"  vars.selfheal_node = true\n  vars.selfheal_endpoint = %q\n}\n", "node-"+ep, ep)
	}
	for h := range nh {
		hs := &host{name: fmt.Sprintf("sim%03d", h+1), ip: fmt.Sprintf("127.0.1.%d", h+1), lport: basePort + per,
			audit: filepath.Join(dir, fmt.Sprintf("audit-%03d.log", h+1))}
		var svcs []rig.Service
		fmt.Fprintf(&objs, "object Host %q {\n  address = %q\n  check_command = \"dummy\"\n  enable_active_checks = false\n  vars.listener_port = %d\n", hs.name, hs.ip, hs.lport)
		for s := range per {
			target := fmt.Sprintf("w%03d", s)
			addr := fmt.Sprintf("%s:%d", hs.ip, basePort+s)
			if err := f.start(addr); err != nil {
				t.Fatal(err)
			}
			hs.services = append(hs.services, target)
			svcs = append(svcs, rig.Service{Name: target, Actions: map[string]rig.Action{"restart": {
				Argv: []string{"/usr/bin/curl", "-fsS", "-m", "5", "http://" + f.ctrl + "/restart?addr=" + url.QueryEscape(addr)}, Timeout: "10s"}}})
			fmt.Fprintf(&objs, "  vars.selfheal_workers[%q] = { worker_port = %d\n    worker_target = %q\n    heal_recheck = \"2s\" }\n", target, basePort+s, target)
		}
		objs.WriteString("}\n")
		kit := rig.Kit{Dir: filepath.Join(dir, hs.name), Agent: hs.name, Issue: bins["handle_worker"], Fleet: fleetFile,
			Config: rig.ListenerConfig{Listen: fmt.Sprintf("%s:%d", hs.ip, hs.lport), Allow: []string{"127.0.0.0/8"}, AuditLog: hs.audit,
				Budget: &rig.Budget{Max: 3, Window: "1h", MinGap: "2m"}, Services: svcs}}
		files, err := rig.Prepare(ctx, kit)
		if err != nil {
			t.Fatal(err)
		}
		if fleetFile == "" {
			fleetFile = files.FleetFile
		}
		ln, err := rig.StartListener(ctx, rig.Serve{Bin: bins["worker_listener"], Config: files.Config, Log: filepath.Join(dir, hs.name+".log")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ln.Stop(10 * time.Second) })
		hosts = append(hosts, hs)
	}
	logf("%d simulated workers on %d hosts (%d each), %d agents", nh*per, nh, per, nh)

	password := "scale-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	labPassword := password + "-lab"
	creds := filepath.Join(dir, "api-credentials")
	if err := os.WriteFile(creds, []byte(handlerUser+":"+password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sample := filepath.Join(testutil.ModuleRoot(t), "nagios-config", "icinga2")
	z, err := engine.NewZone(engine.ZoneConfig{Binary: icinga, ObjectFiles: []string{filepath.Join(sample, "selfheal.conf")},
		// Two API users: the handlers' (its requests are counted in the
		// endpoints' logs) and the lab's own.
		Objects: objs.String() + fmt.Sprintf("object ApiUser %q {\n  password = %q\n  permissions = [ \"*\" ]\n}\n", handlerUser, password) +
			fmt.Sprintf("object ApiUser \"scale\" {\n  password = %q\n  permissions = [ \"*\" ]\n}\n", labPassword),
		Resources: map[string]string{"SelfhealPluginDir": binDir, "SelfhealKeyFile": fleetFile, "SelfhealStateDir": "${dir}/handler-state",
			"SelfhealLogFile": "${dir}/handle_worker.log", "SelfhealCommandFile": "", "SelfhealIcingaCredentials": creds,
			"SelfhealIcingaAPI": "zone-api-url", "SelfhealIcingaCA": "${dir}/var/lib/certs/ca.crt"},
		// The shipped sample's intervals (constants.conf).
		Constants: map[string]string{"SelfhealCheckInterval": "1m", "SelfhealRetryInterval": "5s", "SelfhealMaxCheckAttempts": "3"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = z.Close() })
	if keep := os.Getenv("SCALE_KEEP"); keep != "" {
		// Runs before z.Close (cleanups run last first): the handlers'
		// logs and state and the agents' audits outlive the run.
		t.Cleanup(func() { keepFiles(t, keep, z, dir) })
	}
	for _, e := range z.Endpoints {
		consts := filepath.Join(filepath.Dir(e.MainConfig), "constants.conf")
		b, err := os.ReadFile(consts)
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.Replace(b, []byte(`"zone-api-url"`), []byte(strconv.Quote(fmt.Sprintf("https://127.0.0.1:%d", e.APIPort))), 1)
		if err := os.WriteFile(consts, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(e.Dir, "handler-state"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	api := newAPI(t, z.Endpoints[0], labPassword)
	started := time.Now()
	if err := z.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := z.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	lat := &sampler{}
	go lat.run(ctx, api)
	hlogs := func() []hrec { return readHandlerLogs(t, z) }

	// Start-up: every service checked and OK; the latency back under 5 s.
	upBy := time.Now().Add(15 * time.Minute)
	for {
		ok, total, err := api.countOK(ctx)
		if err == nil && ok == total && total > nh*per {
			logf("start-up: all %d services checked OK %.0fs after the zone started", total, time.Since(started).Seconds())
			break
		}
		if time.Now().After(upBy) {
			t.Fatalf("start-up: %d of %d OK after 15 min: %v", ok, total, err)
		}
		time.Sleep(5 * time.Second)
	}
	under := lat.waitUnder(ctx, 5, started, time.Now(), 15*time.Minute)
	runs := 0
	for _, r := range hlogs() {
		if r.Mode == "" && r.State == "OK" {
			runs++
		}
	}
	logf("start-up: check latency peak %s; avg under 5 s %s after the zone started; %d handler runs for OK, %d API requests from handlers",
		lat.peak(started), under, runs, apiRequests(t, z, handlerUser))
	lat.waitUnder(ctx, 2, started, time.Now(), 15*time.Minute)

	// Independent faults: one every 10 s, each on another host.
	k := min(envInt("INDEPENDENT", 50), nh*per)
	if os.Getenv("INDEPENDENT") == "0" {
		k = 0
	}
	var lone []fault
	for i := range k {
		hs := hosts[i%nh]
		s := (i / nh) % per
		lone = append(lone, fault{host: hs.name, svc: hs.services[s], addr: fmt.Sprintf("%s:%d", hs.ip, basePort+s)})
		if err := api.scheduled(ctx, lone[i:], fmt.Sprintf("host.name == %q && service.name == %q", hs.name, hs.services[s])); err != nil {
			t.Fatal(err)
		}
		lone[i].at = time.Now()
		f.crash(lone[i].addr)
		time.Sleep(10 * time.Second)
	}
	var loneDetect time.Duration
	loneAfter := "not measured"
	if k > 0 {
		healed := waitRunning(ctx, f, addrsOf(lone), 3*time.Minute)
		st := judge(lone, f, hlogs())
		logf("independent: %d crashes one every 10 s on %d hosts: %d healed; fault -> HARD run %s, after its first scheduled check %s; HARD -> restart %s (%d later than HARD + 5 s); %s",
			k, min(k, nh), healed, st.detect, st.after, st.heal, st.late, counts(z, hosts, lone[0].at))
		loneDetect = st.detectMedian
		loneAfter = st.after
	}

	// Storms: STORM workers at once on STORM_HOSTS hosts (all of each),
	// then STORM/HOSTS on every host. The cause "clears" at once (the
	// endpoints stay down until restarted): healing resumes by itself.
	m := min(envInt("STORM", 1000), nh*per)
	sh := min(max(1, m/per), nh)
	shapes := []struct {
		name string
		pick func() []fault
	}{
		{fmt.Sprintf("%d on %d hosts", sh*per, sh), func() []fault {
			var out []fault
			for _, hs := range hosts[nh-sh:] {
				for s := range per {
					out = append(out, fault{host: hs.name, svc: hs.services[s], addr: fmt.Sprintf("%s:%d", hs.ip, basePort+s)})
				}
			}
			return out
		}},
		{fmt.Sprintf("%d per host on %d hosts", max(1, m/nh), nh), func() []fault {
			var out []fault
			for _, hs := range hosts {
				for s := per - max(1, m/nh); s < per; s++ {
					out = append(out, fault{host: hs.name, svc: hs.services[s], addr: fmt.Sprintf("%s:%d", hs.ip, basePort+s)})
				}
			}
			return out
		}},
	}
	// strike crashes storm at once, each fault with its service's next
	// scheduled check, and after 110 s reads the engine's HARD times.
	strike := func(storm []fault) (mark time.Time, det, after []time.Duration) {
		if err := api.scheduled(ctx, storm, ""); err != nil {
			t.Fatal(err)
		}
		mark = time.Now()
		for i := range storm {
			storm[i].at = mark
			f.crash(storm[i].addr)
		}
		time.Sleep(110 * time.Second)
		det, after, err := api.hardSince(ctx, storm, 110*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return mark, det, after
	}
	// settled waits (at most 10 min) for every service to be OK in the
	// engine, and says how many are, of how many.
	settled := func() (ok, total int, err error) {
		end := time.Now().Add(10 * time.Minute)
		for {
			ok, total, err = api.countOK(ctx)
			if err == nil && ok == total || time.Now().After(end) {
				return ok, total, err
			}
			time.Sleep(5 * time.Second)
		}
	}

	// The control: shape a's storm with the event handlers off on both
	// endpoints, so no handler runs. Its detection is the engine's own
	// under this load, the floor the storms' detection is held against.
	if sel := os.Getenv("SHAPES"); sel == "" || strings.Contains(sel, "c") {
		apis := []*apiClient{}
		for _, e := range z.Endpoints {
			apis = append(apis, newAPI(t, e, labPassword))
		}
		handlers := func(on bool) {
			for _, a := range apis {
				if err := a.eventHandlers(ctx, on); err != nil {
					t.Fatal(err)
				}
			}
		}
		handlers(false)
		storm := shapes[0].pick()
		mark, det, after := strike(storm)
		runs := len(slices.DeleteFunc(hlogs(), func(r hrec) bool { return r.Source != "event" || r.Time.Before(mark) }))
		logf("control, %s with no event handler: in 110 s %d of %d HARD; fault -> HARD (engine's) %s, after its first scheduled check %s (lone: HARD run %s, after its check %s); %d event handler runs; check latency peak %s",
			shapes[0].name, len(det), len(storm), spread(det), spread(after), loneDetect.Round(100*time.Millisecond), loneAfter, runs, lat.peak(mark))
		if runs > 0 {
			t.Fatalf("control: %d event handler runs with the handlers off", runs)
		}
		for _, x := range storm {
			if err := f.start(x.addr); err != nil {
				t.Fatal(err)
			}
		}
		if ok, total, err := settled(); err != nil || ok != total {
			// The storms would find some of theirs failing already.
			t.Fatalf("control: %d of %d OK 10 min after the workers started again (%v)", ok, total, err)
		}
		handlers(true)
		logf("control: all OK again %s after it began, event handlers on", time.Since(mark).Round(time.Second))
	}
	wait := time.Duration(envInt("RECOVER_MIN", 20)) * time.Minute
	for i, shape := range shapes {
		// SHAPES picks them (default: c, a and b).
		if sel := os.Getenv("SHAPES"); sel != "" && !strings.Contains(sel, string(rune('a'+i))) {
			continue
		}
		storm := shape.pick()
		// Held: every service HARD, held and commented; none restarted but
		// the rule's allowance. Quiet is 2 min: no trial before that.
		mark, det, after := strike(storm)
		logs := hlogs()
		st := judge(storm, f, logs)
		held, comm := holds(storm, logs, api, ctx)
		logf("storm %s: in 110 s: %d restarts run (allowance 10); %d HARD; fault -> HARD run %s, engine's HARD (held ones) %s, after its first scheduled check %s (lone: HARD run %s, after its check %s); %d held, %d with their comment (%d later than 15 s after HARD, latest %s); check latency now %s, peak %s",
			shape.name, auditRuns(hosts, mark), st.hard, st.detect, spread(det), spread(after), loneDetect.Round(100*time.Millisecond), loneAfter, held, comm.n, comm.late, comm.worst, lat.now(), lat.peak(mark))
		n2 := waitRunning(ctx, f, addrsOf(storm), wait)
		logs = hlogs()
		fl := inFlight(storm, f, logs)
		logf("storm %s: recovery: %d of %d running again %s after the storm (all by %s); at most %d restarted but not yet seen OK at once; %s; check latency peak %s; reevaluate passes %s",
			shape.name, n2, len(storm), time.Since(mark).Round(time.Second), fl.last, fl.max, counts(z, hosts, mark), lat.peak(mark), reevalPasses(logs, mark))
		if n2 < len(storm) {
			t.Errorf("storm %s: %d of %d not healed in %s; %s", shape.name, len(storm)-n2, len(storm), wait, lost(storm, f, hlogs()))
		}
		// Settle before the next: everything OK in the engine.
		if ok, total, err := settled(); err != nil || ok != total {
			logf("storm %s: %d of %d OK 10 min after its recovery (%v)", shape.name, ok, total, err)
		}
	}
}

// waitRunning waits (at most d) for the endpoints to run again and
// returns how many do.
func waitRunning(ctx context.Context, f *fleet, addrs []string, d time.Duration) int {
	end := time.Now().Add(d)
	for {
		n := 0
		for _, a := range addrs {
			if f.running(a) {
				n++
			}
		}
		if n == len(addrs) || time.Now().After(end) || ctx.Err() != nil {
			return n
		}
		time.Sleep(time.Second)
	}
}

// counts sums the agents' restarts and the handlers' holds since t.
func counts(z *engine.Zone, hosts []*host, since time.Time) string {
	runs, held, reeval := 0, map[string]int{}, map[string]int{}
	for _, h := range hosts {
		recs, _ := rig.ReadAudit(h.audit)
		for _, r := range recs {
			if r.Verb == "restart" && r.Origin == "run" && !r.Time.Before(since) {
				runs++
			}
		}
	}
	for _, e := range z.Endpoints {
		recs, _ := rig.ReadHandlerLog(filepath.Join(e.Dir, "handle_worker.log"))
		for _, r := range recs {
			var x struct {
				Time time.Time `json:"time"`
			}
			if json.Unmarshal([]byte(r.Raw), &x) != nil || x.Time.Before(since.Truncate(time.Second)) {
				continue
			}
			if r.Held != "" {
				held[r.Held]++
			}
			if r.Source == "reevaluate" && r.Result == "healed" {
				reeval[e.Name]++
			}
		}
	}
	return fmt.Sprintf("%d restarts run, holds by rule %v, healed by each endpoint's reevaluate %v", runs, held, reeval)
}

type apiClient struct {
	c        *http.Client
	base     string
	password string
}

func newAPI(t *testing.T, e *engine.ZoneEndpoint, password string) *apiClient {
	pem, err := os.ReadFile(filepath.Join(e.Dir, "var", "lib", "certs", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	return &apiClient{base: fmt.Sprintf("https://127.0.0.1:%d", e.APIPort), password: password, c: &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: e.Name, MinVersion: tls.VersionTLS12}}}}
}

func (a *apiClient) get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth("scale", a.password)
	resp, err := a.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// post sends body (JSON) to path and decodes the answer into out. An
// objects/ write answers 200 whatever became of it: each result's code is
// checked too.
func (a *apiClient) post(ctx context.Context, path string, body, out any, override string) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if override != "" {
		req.Header.Set("X-HTTP-Method-Override", override)
	}
	req.SetBasicAuth("scale", a.password)
	resp, err := a.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// eventHandlers turns the endpoint's event handlers on or off, and reads
// the setting back.
func (a *apiClient) eventHandlers(ctx context.Context, on bool) error {
	var w struct {
		Results []struct {
			Code   float64 `json:"code"`
			Status string  `json:"status"`
		} `json:"results"`
	}
	const app = "/v1/objects/icingaapplications/app"
	if err := a.post(ctx, app, map[string]any{"attrs": map[string]any{"enable_event_handlers": on}}, &w, ""); err != nil {
		return err
	}
	if len(w.Results) != 1 || w.Results[0].Code != 200 {
		return fmt.Errorf("enable_event_handlers=%v: %+v", on, w.Results)
	}
	var r struct {
		Results []struct {
			Attrs struct {
				On *bool `json:"enable_event_handlers"`
			} `json:"attrs"`
		} `json:"results"`
	}
	if err := a.get(ctx, app+"?attrs=enable_event_handlers", &r); err != nil {
		return err
	}
	if len(r.Results) != 1 || r.Results[0].Attrs.On == nil || *r.Results[0].Attrs.On != on {
		return fmt.Errorf("enable_event_handlers reads %+v after setting it to %v", r.Results, on)
	}
	return nil
}

// hardSince is, for each service of fs HARD CRITICAL within d of its
// fault, how long after the fault, and after its first scheduled check:
// the engine's own record (last_hard_state_change, the end of the check
// that made it HARD), the same whether a handler ran or not.
func (a *apiClient) hardSince(ctx context.Context, fs []fault, d time.Duration) (det, after []time.Duration, err error) {
	if len(fs) == 0 {
		return nil, nil, nil
	}
	since := fs[0].at
	for _, x := range fs {
		if x.at.Before(since) {
			since = x.at
		}
	}
	at, err := a.serviceTimes(ctx, "last_hard_state_change",
		fmt.Sprintf("service.last_hard_state == 2 && service.last_hard_state_change >= %d", since.Unix()))
	if err != nil {
		return nil, nil, err
	}
	for _, x := range fs {
		if h, ok := at[x.host+"!"+x.svc]; ok && h.After(x.at) && h.Sub(x.at) <= d {
			det = append(det, h.Sub(x.at))
			if !x.check.IsZero() {
				after = append(after, x.sinceCheck(h))
			}
		}
	}
	return det, after, nil
}

// serviceTimes reads one time attribute of the services filter matches
// ("" for all), by host!service.
func (a *apiClient) serviceTimes(ctx context.Context, attr, filter string) (map[string]time.Time, error) {
	var r struct {
		Results []struct {
			Attrs map[string]any `json:"attrs"`
		} `json:"results"`
	}
	q := map[string]any{"attrs": []string{"host_name", "name", attr}}
	if filter != "" {
		q["filter"] = filter
	}
	if err := a.post(ctx, "/v1/objects/services", q, &r, "GET"); err != nil {
		return nil, err
	}
	out := map[string]time.Time{}
	for _, x := range r.Results {
		h, _ := x.Attrs["host_name"].(string)
		n, _ := x.Attrs["name"].(string)
		if v, ok := x.Attrs[attr].(float64); ok {
			out[h+"!"+n] = time.Unix(0, int64(v*1e9))
		}
	}
	return out, nil
}

// scheduled sets each fault's check: the engine's next check of its
// service, read just before the crash.
func (a *apiClient) scheduled(ctx context.Context, fs []fault, filter string) error {
	next, err := a.serviceTimes(ctx, "next_check", filter)
	if err != nil {
		return err
	}
	for i := range fs {
		fs[i].check = next[fs[i].host+"!"+fs[i].svc]
	}
	return nil
}

// countOK is how many services are checked and OK, of how many: Icinga's
// own counts (cheap; a list of 10,000 services is not).
func (a *apiClient) countOK(ctx context.Context) (int, int, error) {
	var r struct {
		Results []struct {
			Status map[string]float64 `json:"status"`
		} `json:"results"`
	}
	if err := a.get(ctx, "/v1/status/CIB", &r); err != nil {
		return 0, 0, err
	}
	if len(r.Results) == 0 {
		return 0, 0, fmt.Errorf("no CIB status")
	}
	total := 0
	for k, v := range r.Results[0].Status {
		if strings.HasPrefix(k, "num_services_") && slices.Contains([]string{"ok", "warning", "critical", "unknown", "pending"}, strings.TrimPrefix(k, "num_services_")) {
			total += int(v)
		}
	}
	return int(r.Results[0].Status["num_services_ok"]), total, nil
}
