package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/engine"
	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/testutil"
	"github.com/selfheal/selfheal/internal/nagios"
)

// zoneWorker is one demo_worker watched by an apiZone.
type zoneWorker struct {
	name, target string
	w            rig.Worker
	port         int
}

// apiZone is a real two-endpoint Icinga 2 HA zone running the shipped
// selfheal.conf, each endpoint's handler writing back through its own
// endpoint's REST API with its own state dir and log (${dir} is the
// endpoint's), and one worker_listener (its own breaker off) for n workers.
type apiZone struct {
	t       *testing.T
	ctx     context.Context
	z       *engine.Zone
	workers []zoneWorker
	audit   string
	dir     string
	bin     func(string) string
	start   time.Time
	// password is the "selfheal" ApiUser's (every permission), which the
	// test also uses to force checks.
	password string
}

func (l *apiZone) logf(format string, args ...any) {
	l.t.Helper()
	l.t.Logf("[%5.1fs] %s", time.Since(l.start).Seconds(), fmt.Sprintf(format, args...))
}

// waitOK waits until every endpoint sees each worker's service OK HARD.
func (l *apiZone) waitOK(list []zoneWorker, what string) {
	l.t.Helper()
	for _, w := range list {
		for _, e := range l.z.Endpoints {
			if _, err := e.WaitService(l.ctx, hostName, w.name, func(s engine.Service) bool {
				return s.HasBeenChecked && s.State == nagios.OK && s.Hard
			}); err != nil {
				l.t.Fatalf("%s: %s on %s: %v", what, w.name, e.Name, err)
			}
		}
	}
}

// newAPIZone starts the zone, connected, with objects added to the site's
// (host objects, say) and the shipped object files named in more (say
// healer.conf); it does not wait for the services.
func newAPIZone(t *testing.T, ctx context.Context, n int, objects string, more ...string) *apiZone {
	t.Helper()
	icinga := testutil.LookTool(t, "icinga2", "/usr/sbin/icinga2")
	l := &apiZone{t: t, ctx: ctx, start: time.Now(), dir: t.TempDir()}
	dir := l.dir
	bins := map[string]string{}
	for _, name := range rig.Binaries {
		bins[name] = testutil.Binary(t, name)
	}
	binDir := filepath.Join(dir, "bin")
	if err := rig.LinkBinaries(binDir, bins); err != nil {
		t.Fatal(err)
	}
	// check_selfheal too, for healer.conf's node check.
	if err := os.Symlink(testutil.Binary(t, "check_selfheal"), filepath.Join(binDir, "check_selfheal")); err != nil {
		t.Fatal(err)
	}
	l.bin = func(name string) string { return filepath.Join(binDir, name) }

	var services []rig.Service
	var err error
	for i := range n {
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
			w = rig.Worker{Bin: l.bin("demo_worker"), Addr: "127.0.0.1:" + strconv.Itoa(port),
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
		l.workers = append(l.workers, zoneWorker{name, target, w, port})
		services = append(services, rig.Service{Name: target, Actions: map[string]rig.Action{
			"restart": {Argv: w.Argv("restart"), Timeout: "10s", KillGrace: "5s"}}})
	}
	lport, err := rig.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	l.audit = filepath.Join(dir, "audit.log")
	off := false
	files, err := rig.Prepare(ctx, rig.Kit{Dir: filepath.Join(dir, "agent"), Agent: hostName, Issue: l.bin("handle_worker"),
		Config: rig.ListenerConfig{Listen: "127.0.0.1:" + strconv.Itoa(lport), Allow: rig.Loopback, AuditLog: l.audit,
			Budget: &rig.Budget{Max: 100, Window: "1h", MinGap: "0s"}, Breaker: &rig.Breaker{Enabled: &off}, Services: services}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := rig.StartListener(ctx, rig.Serve{Bin: l.bin("worker_listener"), Config: files.Config, Log: filepath.Join(dir, "listener.log"),
		Ping: &files.Fleet, PingAgent: hostName})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Stop(10 * time.Second) })

	password := "zone-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	l.password = password
	creds := filepath.Join(dir, "api-credentials")
	if err := os.WriteFile(creds, []byte("selfheal:"+password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	site := rig.Site{Kind: engine.Icinga2, ConfigDir: filepath.Join(testutil.ModuleRoot(t), "nagios-config"), BinDir: binDir,
		KeyFile: files.FleetFile, StateDir: "${dir}/handler-state", HandlerLog: "${dir}/handle_worker.log",
		ListenerPort: lport, CheckTimeout: 2, MaxAge: "2s,3s", Recheck: "1s", WorkerPort: l.workers[0].port}
	for _, w := range l.workers[1:] {
		site.Extra = append(site.Extra, rig.SiteService{Name: w.name, Target: w.target, Port: w.port})
	}
	cfg, err := site.Config()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range more {
		cfg.ObjectFiles = append(cfg.ObjectFiles, filepath.Join(site.ConfigDir, "icinga2", f))
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
		Objects: cfg.Objects + objects + fmt.Sprintf("object ApiUser \"selfheal\" {\n  password = %q\n  permissions = [ \"*\" ]\n}\n", password)})
	if err != nil {
		t.Fatal(err)
	}
	l.z = z
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
	l.logf("zone up and connected; %d workers", len(l.workers))
	return l
}
