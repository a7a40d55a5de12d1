package e2e

// Issue 12's proof under a real Icinga 2 with the api feature on and the
// command feature off (no deprecated feature at all): the sample
// selfheal.conf, unchanged, writes back through the REST API as an ApiUser
// with exactly the documented permissions.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/icingaapi"
	"github.com/selfheal/selfheal/internal/lab/engine"
	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/testutil"
)

// documentedPermissions reads the ApiUser block of docs/icinga-api.md: the
// test runs with exactly what the docs tell an admin to grant.
func documentedPermissions(t *testing.T) []string {
	b, err := os.ReadFile(filepath.Join(testutil.ModuleRoot(t), "docs", "icinga-api.md"))
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile("(?s)```icinga\nobject ApiUser \"selfheal\" \\{.*?permissions = \\[(.*?)\\]").FindSubmatch(b)
	if block == nil {
		t.Fatal("docs/icinga-api.md has no ApiUser \"selfheal\" block")
	}
	var out []string
	for _, m := range regexp.MustCompile(`"[^"]+"`).FindAll(block[1], -1) {
		out = append(out, string(m))
	}
	if len(out) == 0 {
		t.Fatal("no permissions in the documented ApiUser")
	}
	return out
}

func TestIcingaAPIWriteBack(t *testing.T) {
	t.Parallel()
	bin := testutil.LookTool(t, "icinga2", "/usr/sbin/icinga2")
	// Three phases at a 20 s check interval (the forced re-check must be
	// told from a scheduled check).
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Second)
	defer cancel()
	dir := t.TempDir()
	binDir := filepath.Join(dir, "bin")
	bins := map[string]string{}
	for _, name := range rig.Binaries {
		bins[name] = testutil.Binary(t, name)
	}
	if err := rig.LinkBinaries(binDir, bins); err != nil {
		t.Fatal(err)
	}
	wport, err := rig.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	lport, err := rig.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	w := rig.Worker{Bin: filepath.Join(binDir, "demo_worker"), Addr: "127.0.0.1:" + strconv.Itoa(wport),
		PIDFile: filepath.Join(dir, "worker.pid"), LogFile: filepath.Join(dir, "worker.log")}
	audit := filepath.Join(dir, "audit.log")
	files, err := rig.Prepare(ctx, rig.Kit{Dir: filepath.Join(dir, "listener"), Agent: "worker1", Issue: filepath.Join(binDir, "handle_worker"),
		Config: rig.ListenerConfig{Listen: fmt.Sprintf("127.0.0.1:%d", lport), Allow: rig.Loopback, AuditLog: audit,
			Budget: &rig.Budget{Max: 3, Window: "1h", MinGap: "1s"},
			Services: []rig.Service{{Name: rig.Target, Actions: map[string]rig.Action{
				"restart": {Argv: w.Argv("restart"), Timeout: "10s", KillGrace: "5s"}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Daemon(ctx, "start"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Shutdown(context.Background()) })

	password := "selfheal-e2e-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	creds := filepath.Join(dir, "api-credentials")
	if err := os.WriteFile(creds, []byte("selfheal:"+password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "handler-state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	handlerLog := filepath.Join(dir, "handle_worker.log")
	// The sample's own objects, with the site's values; the check interval
	// is long, so a quick OK after the restart is the forced re-check's.
	site := rig.Site{Kind: engine.Icinga2, ListenerPort: lport, WorkerPort: wport, CheckTimeout: 2, MaxAge: "2s,3s", Recheck: "1s"}
	scfg, err := site.Config()
	if err != nil {
		t.Fatal(err)
	}
	sample := filepath.Join(testutil.ModuleRoot(t), "nagios-config", "icinga2")
	a, err := engine.NewAPI(engine.APIConfig{Binary: bin, ObjectFiles: []string{filepath.Join(sample, "selfheal.conf")},
		// worker1 stands for the node too: it gets the sample's reevaluate service.
		Objects: strings.Replace(scfg.Objects, "  vars.listener_port", "  vars.selfheal_node = true\n  vars.listener_port", 1),
		Resources: map[string]string{"SelfhealPluginDir": binDir, "SelfhealKeyFile": files.FleetFile, "SelfhealStateDir": state,
			"SelfhealLogFile": handlerLog, "SelfhealCommandFile": "", "SelfhealIcingaCredentials": creds,
			"SelfhealIcingaAPI": "${api_url}", "SelfhealIcingaCA": "${api_ca}"},
		Constants: map[string]string{"SelfhealCheckInterval": "20s", "SelfhealRetryInterval": "1s", "SelfhealMaxCheckAttempts": "3"},
		Users: []engine.APIUser{{Name: "selfheal", Password: password, Permissions: documentedPermissions(t)},
			// The test's own user, to schedule and remove a downtime.
			{Name: "e2e", Password: password, Permissions: []string{`"actions/schedule-downtime"`, `"actions/remove-downtime"`}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	if want := filepath.Join(a.Dir, "var", "lib", "certs", "ca.crt"); a.CAFile != want {
		t.Fatalf("the lab's CA is %s, ${api_ca} says %s", a.CAFile, want)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	client, err := icingaapi.New(icingaapi.Config{URL: a.URL, CAFile: a.CAFile, ServerName: a.NodeName, User: "selfheal", Password: password})
	if err != nil {
		t.Fatal(err)
	}
	report := func() string {
		var b strings.Builder
		for _, f := range []string{handlerLog, audit, a.MainLog} {
			data, _ := os.ReadFile(f)
			fmt.Fprintf(&b, "==> %s <==\n%s\n", filepath.Base(f), data)
		}
		return b.String()
	}
	state0 := func() (icingaapi.Service, error) { return client.Service(ctx, rig.HostName, rig.ServiceName) }
	waitState := func(what string, ok func(icingaapi.Service) bool) icingaapi.Service {
		t.Helper()
		var last icingaapi.Service
		for ctx.Err() == nil {
			if s, err := state0(); err == nil {
				last = s
				if ok(s) {
					return s
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("%s: never (last %+v)\n%s", what, last, report())
		return last
	}
	comments := func() []icingaapi.Comment {
		cs, err := client.Comments(ctx, rig.HostName, rig.ServiceName, "handle_worker")
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	waitComment := func(substr string, present bool) {
		t.Helper()
		for ctx.Err() == nil {
			found := false
			for _, c := range comments() {
				found = found || strings.Contains(c.Text, substr)
			}
			if found == present {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("comment %q present=%v never (have %v)\n%s", substr, present, comments(), report())
	}
	waitState("the healthy worker OK", func(s icingaapi.Service) bool { return s.Checked && s.State == 0 })

	// 1. The agent is down: the heal fails, and the handler's persistent
	// "a human must look" comment is on the service, read back through the
	// API. The worker comes back by hand: the recovery removes it.
	if err := w.Fault(ctx, "crash"); err != nil {
		t.Fatal(err)
	}
	waitComment("auto-restart failed", true)
	if _, err := w.Daemon(ctx, "start"); err != nil {
		t.Fatal(err)
	}
	waitState("OK after a manual start", func(s icingaapi.Service) bool { return s.State == 0 && s.StateType == 1 })
	waitComment("auto-restart failed", false)

	// 2. The agent is up: a crash is healed, the comment says so, and the
	// forced re-check confirms it long before the 20 s check interval.
	ln, err := rig.StartListener(ctx, rig.Serve{Bin: filepath.Join(binDir, "worker_listener"), Config: files.Config,
		Log: filepath.Join(dir, "listener.out"), Ping: &files.Fleet, PingAgent: "worker1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Stop(10 * time.Second) })
	if err := w.Fault(ctx, "crash"); err != nil {
		t.Fatal(err)
	}
	// The heal follows HARD CRITICAL within milliseconds and the forced
	// re-check within seconds, so a poll may never see the HARD state:
	// the success comment, written right after the restart, times it.
	waitComment("auto-restart ok", true)
	var healed time.Time
	for _, c := range comments() {
		if strings.Contains(c.Text, "auto-restart ok") {
			healed = c.EntryTime
		}
	}
	ok := waitState("OK again", func(s icingaapi.Service) bool {
		return s.State == 0 && !time.Unix(int64(s.LastStateChange), 0).Before(healed.Truncate(time.Second))
	})
	if took := time.Unix(int64(ok.LastStateChange), 0).Sub(healed); took > 15*time.Second {
		t.Errorf("OK %s after the heal: the forced re-check did not run (the check interval is 20s)", took)
	}
	recs, err := rig.ReadAudit(audit)
	if err != nil {
		t.Fatal(err)
	}
	if c := rig.CountRestarts(recs); c.Run != 1 {
		t.Errorf("audit log: %s; want 1 run", c)
	}
	// 3. In downtime the restart is held; once the downtime is removed the
	// sample's reevaluate service asks again through the API and heals.
	now := time.Now().Unix()
	res := apiPost(t, a, password, "/v1/actions/schedule-downtime", fmt.Sprintf(
		`{"type":"Service","service":"%s!%s","start_time":%d,"end_time":%d,"fixed":true,"author":"e2e","comment":"maintenance"}`,
		rig.HostName, rig.ServiceName, now-1, now+3600))
	name := regexp.MustCompile(`"name":"([^"]+)"`).FindStringSubmatch(res)
	if name == nil {
		t.Fatalf("schedule-downtime: %s", res)
	}
	waitState("in downtime", func(s icingaapi.Service) bool { return s.DowntimeDepth > 0 })
	if err := w.Fault(ctx, "crash"); err != nil {
		t.Fatal(err)
	}
	for ctx.Err() == nil {
		recs, _ := rig.ReadHandlerLog(handlerLog)
		if slices.ContainsFunc(recs, func(r rig.HandlerRecord) bool { return r.Held == "downtime" }) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	if recs, _ := rig.ReadAudit(audit); rig.CountRestarts(recs).Run != 1 {
		t.Fatalf("a restart ran in downtime: %s\n%s", rig.CountRestarts(recs), report())
	}
	apiPost(t, a, password, "/v1/actions/remove-downtime", fmt.Sprintf(`{"type":"Downtime","downtime":%q}`, name[1]))
	waitState("healed by reevaluate after the downtime", func(s icingaapi.Service) bool { return s.State == 0 && s.DowntimeDepth == 0 })
	recs, _ = rig.ReadAudit(audit)
	hrecs, _ := rig.ReadHandlerLog(handlerLog)
	if rig.CountRestarts(recs).Run != 2 || !slices.ContainsFunc(hrecs, func(r rig.HandlerRecord) bool { return r.Source == "reevaluate" && r.Result == "healed" }) {
		t.Errorf("after the downtime: audit %s, and no reevaluate heal in the handler's log\n%s", rig.CountRestarts(recs), report())
	}

	if dep, err := a.Deprecations(); err != nil || len(dep) > 0 {
		t.Errorf("Icinga 2 logged DEPRECATED warnings (err %v): %q", err, dep)
	}
	hl, _ := os.ReadFile(handlerLog)
	if strings.Contains(string(hl), "not told") {
		t.Errorf("a write-back failed:\n%s", hl)
	}
}

// apiPost sends one action as the test's own ApiUser and returns the body.
func apiPost(t *testing.T, a *engine.APIInstance, password, path, body string) string {
	t.Helper()
	pem, err := os.ReadFile(a.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: a.NodeName}}}
	req, err := http.NewRequest(http.MethodPost, a.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("e2e", password)
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s: %s", path, resp.Status, b)
	}
	return string(b)
}
