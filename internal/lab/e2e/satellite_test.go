package e2e

// The distributed shape after the HA master zone (issue 20): a master zone
// and a satellite zone of two endpoints where the checks run, with the
// shipped selfheal.conf on every node writing back through its own node's
// REST API. A crash gets one restart and the OK, and the success comment
// is on the master.

import (
	"context"
	"fmt"
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

func TestSatelliteZoneHeals(t *testing.T) {
	t.Parallel()
	icinga := testutil.LookTool(t, "icinga2", "/usr/sbin/icinga2")
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
	wport, err := rig.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	w := rig.Worker{Bin: filepath.Join(binDir, "demo_worker"), Addr: "127.0.0.1:" + strconv.Itoa(wport),
		PIDFile: filepath.Join(dir, "worker.pid"), LogFile: filepath.Join(dir, "worker.log")}
	audit := filepath.Join(dir, "audit.log")
	files, err := rig.Prepare(ctx, rig.Kit{Dir: filepath.Join(dir, "listener"), Agent: "worker1", Issue: filepath.Join(binDir, "handle_worker"),
		Config: rig.ListenerConfig{Listen: "127.0.0.1:1", Allow: rig.Loopback, AuditLog: audit,
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
	ln, err := rig.StartListener(ctx, rig.Serve{Bin: filepath.Join(binDir, "worker_listener"), Config: files.Config,
		Log: filepath.Join(dir, "listener.out"), Ping: &files.Fleet, PingAgent: "worker1", Activate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Stop(10 * time.Second) })
	lport, _ := strconv.Atoi(ln.Addr[strings.LastIndexByte(ln.Addr, ':')+1:])

	password := "selfheal-e2e-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	creds := filepath.Join(dir, "api-credentials")
	if err := os.WriteFile(creds, []byte("selfheal:"+password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	site := rig.Site{Kind: engine.Icinga2, ConfigDir: filepath.Join(testutil.ModuleRoot(t), "nagios-config"), BinDir: binDir,
		KeyFile: files.FleetFile, StateDir: "${dir}/handler-state", HandlerLog: "${dir}/handle_worker.log",
		ListenerPort: lport, WorkerPort: wport, CheckTimeout: 2, MaxAge: "2s,3s", Recheck: "1s"}
	cfg, err := site.Config()
	if err != nil {
		t.Fatal(err)
	}
	// The host and its worker service are the satellite zone's: the
	// service is the sample's template, declared for that zone (an apply
	// rule in conf.d would put it in every node's own zone).
	objs := strings.Replace(cfg.Objects, "vars.selfheal_workers[", "vars.sat_workers[", -1)
	objs = strings.Replace(objs, fmt.Sprintf("object Host %q {\n", rig.HostName), fmt.Sprintf("object Host %q {\n  zone = \"sat\"\n", rig.HostName), 1)
	objs += fmt.Sprintf(`object Service %q {
  import "selfheal-worker"
  host_name = %q
  zone = "sat"
  vars.selfheal_agent = "worker1"
  vars.worker_port = %d
  vars.worker_target = %q
  vars.worker_timeout = 2
  vars.worker_max_age = "2s,3s"
  vars.heal_recheck = "1s"
}
`, rig.ServiceName, rig.HostName, wport, rig.Target)
	res := cfg.Resources
	res["SelfhealCommandFile"], res["SelfhealIcingaAPI"], res["SelfhealIcingaCA"], res["SelfhealIcingaCredentials"] = "", "${api_url}", "${api_ca}", creds
	out, err := os.Create(filepath.Join(dir, "zone.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	z, err := engine.NewZone(engine.ZoneConfig{Binary: icinga, ObjectFiles: cfg.ObjectFiles, Objects: objs, Resources: res,
		Constants: map[string]string{"SelfhealCheckInterval": "20s", "SelfhealRetryInterval": "1s", "SelfhealMaxCheckAttempts": "3"},
		Users:     []engine.APIUser{{Name: "selfheal", Password: password, Permissions: documentedPermissions(t)}},
		Endpoints: []string{"lab-m"}, Child: &engine.ChildZone{Name: "sat", Endpoints: []string{"lab-s1", "lab-s2"}}, Stderr: out})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { z.Close() })
	for _, e := range z.Endpoints {
		if err := os.MkdirAll(filepath.Join(e.Dir, "handler-state"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	report := func() string {
		var b strings.Builder
		for _, e := range z.Endpoints {
			data, _ := os.ReadFile(filepath.Join(e.Dir, "handle_worker.log"))
			fmt.Fprintf(&b, "==> %s handle_worker.log <==\n%s\n", e.Name, data)
		}
		data, _ := os.ReadFile(audit)
		fmt.Fprintf(&b, "==> audit <==\n%s\n", data)
		return b.String()
	}
	if err := z.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := z.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	master := z.Endpoint("lab-m")
	user, pw := "selfheal", password
	mc, err := icingaapi.New(icingaapi.Config{URL: "https://127.0.0.1:" + strconv.Itoa(master.APIPort), CAFile: z.CAFile(), ServerName: "lab-m", User: user, Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	waitState := func(what string, ok func(icingaapi.Service) bool) {
		t.Helper()
		for ctx.Err() == nil {
			if s, err := mc.Service(ctx, rig.HostName, rig.ServiceName); err == nil && ok(s) {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("%s on the master: never\n%s", what, report())
	}
	waitState("OK", func(s icingaapi.Service) bool { return s.Checked && s.State == 0 })
	if err := w.Fault(ctx, "crash"); err != nil {
		t.Fatal(err)
	}
	// No wait for HARD CRITICAL: the heal follows it within milliseconds,
	// so a poll may never see it; the success comment is the proof.
	for ctx.Err() == nil {
		cs, _ := mc.Comments(ctx, rig.HostName, rig.ServiceName, "handle_worker")
		if slices.ContainsFunc(cs, func(c icingaapi.Comment) bool { return strings.HasPrefix(c.Text, "auto-restart ok") }) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if ctx.Err() != nil {
		t.Fatalf("no success comment on the master\n%s", report())
	}
	waitState("OK after the restart", func(s icingaapi.Service) bool { return s.State == 0 })
	recs, err := rig.ReadAudit(audit)
	if err != nil {
		t.Fatal(err)
	}
	if c := rig.CountRestarts(recs); c.Run != 1 {
		t.Errorf("audit: %s, want 1 run\n%s", c, report())
	}
	for _, e := range z.Endpoints {
		hr, _ := rig.ReadHandlerLog(filepath.Join(e.Dir, "handle_worker.log"))
		var seen []string
		for _, r := range hr {
			if r.State == "CRITICAL" && r.Type == "HARD" {
				seen = append(seen, r.Result+"/"+r.Origin)
			}
		}
		t.Logf("%s (zone %s): CRITICAL HARD handler runs %v", e.Name, e.Zone, seen)
	}
}
