package e2e

// Issue 20's "an engine start costs nothing", under a real Icinga 2: the
// handler runs for every service at its first check (OK HARD 1) and must
// make no API call, not even a connection. The API is reached through a
// counting TCP proxy (TLS end to end), so every connection is counted; the
// same rig then heals a crash, which must go through the proxy.

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
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

func TestIcingaStartMakesNoAPICall(t *testing.T) {
	t.Parallel()
	bin := testutil.LookTool(t, "icinga2", "/usr/sbin/icinga2")
	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
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
	port := func() int {
		p, err := rig.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	wport, oport, lport := port(), port(), port()
	worker := func(name string, p int) rig.Worker {
		return rig.Worker{Bin: filepath.Join(binDir, "demo_worker"), Addr: "127.0.0.1:" + strconv.Itoa(p),
			PIDFile: filepath.Join(dir, name+".pid"), LogFile: filepath.Join(dir, name+".log")}
	}
	// w is healed; the other services watch o, which stays healthy.
	w, o := worker("worker", wport), worker("other", oport)
	audit := filepath.Join(dir, "audit.log")
	files, err := rig.Prepare(ctx, rig.Kit{Dir: filepath.Join(dir, "listener"), Agent: "worker1", Issue: filepath.Join(binDir, "handle_worker"),
		Config: rig.ListenerConfig{Listen: fmt.Sprintf("127.0.0.1:%d", lport), Allow: rig.Loopback, AuditLog: audit,
			Budget: &rig.Budget{Max: 3, Window: "1h", MinGap: "1s"},
			Services: []rig.Service{{Name: rig.Target, Actions: map[string]rig.Action{
				"restart": {Argv: w.Argv("restart"), Timeout: "10s", KillGrace: "5s"}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []rig.Worker{w, o} {
		if _, err := x.Daemon(ctx, "start"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { x.Shutdown(context.Background()) })
	}
	ln, err := rig.StartListener(ctx, rig.Serve{Bin: filepath.Join(binDir, "worker_listener"), Config: files.Config,
		Log: filepath.Join(dir, "listener.out"), Ping: &files.Fleet, PingAgent: "worker1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Stop(10 * time.Second) })

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
	// The handler reaches the API only through the proxy.
	proxy, err := engine.NewProxy("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	const others = 12
	site := rig.Site{Kind: engine.Icinga2, ListenerPort: lport, WorkerPort: wport, CheckTimeout: 2, MaxAge: "2s,3s", Recheck: "1s"}
	for i := range others {
		site.Extra = append(site.Extra, rig.SiteService{Name: fmt.Sprintf("other%02d", i), Target: rig.Target, Port: oport})
	}
	scfg, err := site.Config()
	if err != nil {
		t.Fatal(err)
	}
	sample := filepath.Join(testutil.ModuleRoot(t), "nagios-config", "icinga2")
	a, err := engine.NewAPI(engine.APIConfig{Binary: bin, ObjectFiles: []string{filepath.Join(sample, "selfheal.conf")},
		Objects: scfg.Objects,
		Resources: map[string]string{"SelfhealPluginDir": binDir, "SelfhealKeyFile": files.FleetFile, "SelfhealStateDir": state,
			"SelfhealLogFile": handlerLog, "SelfhealCommandFile": "", "SelfhealIcingaCredentials": creds,
			"SelfhealIcingaAPI": "https://127.0.0.1:" + strconv.Itoa(proxy.Port()), "SelfhealIcingaCA": "${api_ca}"},
		Constants: map[string]string{"SelfhealCheckInterval": "10s", "SelfhealRetryInterval": "1s", "SelfhealMaxCheckAttempts": "3"},
		Users:     []engine.APIUser{{Name: "selfheal", Password: password, Permissions: documentedPermissions(t)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	proxy.SetTarget(net.JoinHostPort("127.0.0.1", strconv.Itoa(a.APIPort)))
	if err := a.Start(ctx); err != nil {
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
	okRuns := func() []rig.HandlerRecord {
		recs, _ := rig.ReadHandlerLog(handlerLog)
		return slices.DeleteFunc(recs, func(r rig.HandlerRecord) bool { return r.State != "OK" })
	}
	// Every service's first check runs the handler: OK HARD 1.
	for ctx.Err() == nil && len(okRuns()) < others+1 {
		time.Sleep(200 * time.Millisecond)
	}
	runs := okRuns()
	if len(runs) < others+1 {
		t.Fatalf("%d handler runs for OK, want %d\n%s", len(runs), others+1, report())
	}
	if n := proxy.Conns(); n != 0 {
		t.Fatalf("the engine's start: %d handler runs for OK opened %d connection(s) to the API, want none\n%s", len(runs), n, report())
	}
	var ms []float64
	for _, r := range runs {
		ms = append(ms, r.Elapsed)
	}
	slices.Sort(ms)
	t.Logf("%d OK runs at the engine's start, no API connection; run time inside the handler: median %.2f ms, max %.2f ms", len(ms), ms[len(ms)/2], ms[len(ms)-1])

	// The same rig heals through the proxy: a crash gets one restart and
	// its comment, read back directly from the API.
	client, err := icingaapi.New(icingaapi.Config{URL: a.URL, CAFile: a.CAFile, ServerName: a.NodeName, User: "selfheal", Password: password})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := w.Fault(ctx, "crash"); err != nil {
		t.Fatal(err)
	}
	var ok icingaapi.Comment
	for ctx.Err() == nil && ok.Name == "" {
		cs, _ := client.Comments(ctx, rig.HostName, rig.ServiceName, "handle_worker")
		if i := slices.IndexFunc(cs, func(c icingaapi.Comment) bool { return strings.HasPrefix(c.Text, "auto-restart ok") }); i >= 0 {
			ok = cs[i]
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if ok.Name == "" {
		t.Fatalf("no success comment after the crash\n%s", report())
	}
	// A routine comment goes by itself: Icinga expires it in a day.
	if d := ok.Expiry.Sub(ok.EntryTime); d < 23*time.Hour || d > 25*time.Hour {
		t.Errorf("the success comment expires %s after it was made (%+v), want a day", d, ok)
	}
	healConns := proxy.Conns()
	if healConns != 1 {
		t.Errorf("the heal opened %d connections to the API, want 1 (one per handler run)", healConns)
	}
	// Its recovery keeps the success comment: again no call.
	for ctx.Err() == nil && len(okRuns()) < others+2 {
		time.Sleep(200 * time.Millisecond)
	}
	if len(okRuns()) < others+2 {
		t.Fatalf("no handler run for the recovery\n%s", report())
	}
	if n := proxy.Conns(); n != healConns {
		t.Errorf("the recovery opened %d connection(s), want none", n-healConns)
	}
	if recs, _ := rig.ReadAudit(audit); rig.CountRestarts(recs).Run != 1 {
		t.Errorf("audit: %s, want 1 run", rig.CountRestarts(recs))
	}
}
