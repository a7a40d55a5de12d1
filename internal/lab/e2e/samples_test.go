package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/selfheal/selfheal/internal/lab/engine"
	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/testutil"
)

// The samples in nagios-config/ must validate as they are, with only the
// site values (resource.cfg, constants.conf) they ship with.

func TestNagiosSampleValidates(t *testing.T) {
	t.Parallel()
	bin := testutil.LookTool(t, "nagios4", "/usr/sbin/nagios4")
	dir := filepath.Join(testutil.ModuleRoot(t), "nagios-config", "nagios4")
	res, err := readResource(filepath.Join(dir, "resource.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	inst, err := engine.New(engine.Config{
		Kind:            engine.Nagios4,
		Binary:          bin,
		ObjectFiles:     []string{filepath.Join(dir, "commands.cfg"), filepath.Join(dir, "templates.cfg"), filepath.Join(dir, "worker.cfg"), filepath.Join(dir, "healer.cfg")},
		MainConfigFiles: []string{filepath.Join(dir, "nagios.cfg")},
		Resources:       res,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := inst.Validate(ctx)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// The sample defines exactly one worker service, with its handler.
	for _, want := range []string{"Total Errors:   0", "Checked 4 services.", "Checked 1 hosts."} {
		if !strings.Contains(out, want) {
			t.Errorf("nagios4 -v output lacks %q:\n%s", want, out)
		}
	}
}

func TestIcingaSampleValidates(t *testing.T) {
	t.Parallel()
	bin := testutil.LookTool(t, "icinga2", "/usr/sbin/icinga2")
	dir := filepath.Join(testutil.ModuleRoot(t), "nagios-config", "icinga2")
	inst, err := engine.New(engine.Config{
		Kind:   engine.Icinga2,
		Binary: bin,
		// The sample constants come first, exactly as a site would add them.
		ObjectFiles: []string{filepath.Join(dir, "constants.conf"), filepath.Join(dir, "selfheal.conf"), filepath.Join(dir, "hosts.conf"),
			filepath.Join(dir, "api-user.conf"), filepath.Join(dir, "healer.conf")},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := inst.Validate(ctx)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// The apply rules made one service from the host's selfheal_workers,
	// the node's reevaluate service, and the healer's two checks.
	for _, want := range []string{"Instantiated 4 Services.", "Instantiated 1 EventCommand.", "Instantiated 1 ApiUser."} {
		if !strings.Contains(out, want) {
			t.Errorf("icinga2 daemon -C output lacks %q:\n%s", want, out)
		}
	}
}

// TestSampleTimeoutsNest: the shipped timeouts nest, so that a slow restart
// ends, and is reported, before the handler gives up, and the handler ends
// before the engine kills it: every restart action's timeout plus its kill
// grace < handle_worker --deadline < the engine's event handler timeout.
func TestSampleTimeoutsNest(t *testing.T) {
	root := filepath.Join(testutil.ModuleRoot(t), "nagios-config")
	read := func(rel string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	find := func(rel, pattern string) time.Duration {
		t.Helper()
		m := regexp.MustCompile(pattern).FindStringSubmatch(read(rel))
		if m == nil {
			t.Fatalf("%s: no match for %s", rel, pattern)
		}
		v := m[1]
		if !strings.HasSuffix(v, "s") {
			v += "s" // nagios.cfg counts seconds
		}
		return parseDur(t, v)
	}
	nagiosDeadline := find("nagios4/commands.cfg", `handle_worker event .*--deadline (\d+s)`)
	nagiosKill := find("nagios4/nagios.cfg", `(?m)^event_handler_timeout=(\d+)$`)
	icingaDeadline := find("icinga2/selfheal.conf", `"--deadline" = "(\d+s)"`)
	icingaKill := find("icinga2/selfheal.conf", `(?m)^\s*timeout = (\d+s)$`)
	if nagiosDeadline != sampleDeadline || icingaDeadline != sampleDeadline {
		t.Errorf("handler deadlines %s (Nagios), %s (Icinga 2); the tests assume %s", nagiosDeadline, icingaDeadline, sampleDeadline)
	}
	if nagiosDeadline >= nagiosKill || icingaDeadline >= icingaKill {
		t.Errorf("handler deadline %s / %s not inside the engine's kill %s / %s", nagiosDeadline, icingaDeadline, nagiosKill, icingaKill)
	}
	for _, rel := range []string{"listener/worker_listener.yaml", "demo/worker_listener.yaml"} {
		var cfg struct {
			Services map[string]struct {
				Actions map[string]struct {
					Timeout   string `yaml:"timeout"`
					KillGrace string `yaml:"kill_grace"`
				} `yaml:"actions"`
			} `yaml:"services"`
		}
		if err := yaml.Unmarshal([]byte(read(rel)), &cfg); err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		n := 0
		for name, svc := range cfg.Services {
			a, ok := svc.Actions["restart"]
			if !ok {
				continue
			}
			n++
			timeout, grace := 30*time.Second, 5*time.Second // the agent's defaults
			if a.Timeout != "" {
				timeout = parseDur(t, a.Timeout)
			}
			if a.KillGrace != "" {
				grace = parseDur(t, a.KillGrace)
			}
			if timeout+grace >= sampleDeadline {
				t.Errorf("%s: %s's restart may take %s + %s kill grace, not inside the handler's %s deadline",
					rel, name, timeout, grace, sampleDeadline)
			}
		}
		if n == 0 {
			t.Errorf("%s: no restart action found", rel)
		}
	}
}

func parseDur(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The rig passes the sample resource.cfg's $USER6$ when a test sets none,
// so the loops run the node-wide judgment flags an admin starts with.
func TestSampleHandlerArgsAreTheRigs(t *testing.T) {
	res, err := readResource(filepath.Join(testutil.ModuleRoot(t), "nagios-config", "nagios4", "resource.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	if got := res["USER6"]; got != rig.DefaultHandlerArgs {
		t.Errorf("resource.cfg $USER6$ = %q, the rig's default is %q", got, rig.DefaultHandlerArgs)
	}
}
