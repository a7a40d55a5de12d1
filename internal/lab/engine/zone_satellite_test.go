package engine

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/icingaapi"
	"github.com/selfheal/selfheal/internal/lab/testutil"
	"github.com/selfheal/selfheal/internal/nagios"
)

const satelliteObjects = `
object CheckCommand "lab_check" { command = [ LabDir + "/check.sh", LabState ] }
object EventCommand "lab_zone_handler" {
  command = [ LabDir + "/zone-handler.sh", NodeName, "$service.state$", "$service.state_type$",
    "$service.check_attempt$", "$service.last_state_change$", "$service.last_hard_state_change$" ]
}
object Host "h1" {
  address = "127.0.0.1"
  check_command = "lab_check"
  enable_active_checks = false
  zone = "sat"
}
object Service "svc" {
  host_name = "h1"
  zone = "sat"
  check_command = "lab_check"
  event_command = "lab_zone_handler"
  max_check_attempts = 2
  check_interval = 1s
  retry_interval = 1s
}
`

// TestZoneSatellite proves the master + satellite lab and what the
// write-back depends on: the satellite zone checks and handles its
// services (one endpoint of it per fault), the master gets the results;
// a comment made through the master reaches the satellites, one made
// through a satellite is not accepted by the master (a child zone does
// not send config up).
func TestZoneSatellite(t *testing.T) {
	bin := testutil.LookTool(t, "icinga2", "/usr/sbin/icinga2")
	dir, stateFile := scripts(t)
	if err := os.WriteFile(filepath.Join(dir, "zone-handler.sh"), []byte(zoneHandlerScript), 0o755); err != nil {
		t.Fatal(err)
	}
	setState := func(s nagios.State) {
		if err := os.WriteFile(stateFile, []byte(strconv.Itoa(int(s))+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	setState(nagios.OK)
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	z, err := NewZone(ZoneConfig{Binary: bin, Endpoints: []string{"lab-m"}, Child: &ChildZone{Name: "sat", Endpoints: []string{"lab-s1", "lab-s2"}},
		Objects: satelliteObjects, Resources: map[string]string{"LabDir": dir, "LabState": stateFile}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeZone(t, z) })
	if err := z.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := z.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	master := z.Endpoint("lab-m")
	// "paused" is about the endpoint's own zone: the master reports the
	// satellite zone's service not paused, though it does not check it.
	auth, err := z.Authorities(ctx, "h1", "svc")
	t.Logf("not paused for h1!svc: %v (%v)", auth, err)
	if _, err := master.WaitService(ctx, "h1", "svc", StateIs(nagios.OK, true)); err != nil {
		t.Fatal(err)
	}
	setState(nagios.Critical)
	if _, err := master.WaitService(ctx, "h1", "svc", StateIs(nagios.Critical, true)); err != nil {
		t.Fatal(err)
	}
	callsFile := filepath.Join(dir, "zone.calls")
	waitFor(t, ctx, "a CRITICAL HARD handler run", func() bool {
		return len(callsFrom(readZoneCalls(t, callsFile), "CRITICAL", "HARD")) > 0
	})
	time.Sleep(3 * time.Second) // let a second node's run show, if any
	t.Logf("CRITICAL HARD handler runs on: %v", nodesOf(callsFrom(readZoneCalls(t, callsFile), "CRITICAL", "HARD")))

	clients := map[string]*icingaapi.Client{}
	for _, e := range z.Endpoints {
		user, pw := e.Credentials()
		c, err := icingaapi.New(icingaapi.Config{URL: "https://127.0.0.1:" + strconv.Itoa(e.APIPort), CAFile: z.CAFile(), ServerName: e.Name, User: user, Password: pw})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[e.Name] = c
	}
	has := func(on, name string) bool {
		cs, err := clients[on].Comments(ctx, "h1", "svc", "handle_worker")
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(cs, func(x icingaapi.Comment) bool { return x.Name == name })
	}
	name, err := clients["lab-m"].AddComment(ctx, "h1", "svc", "handle_worker", "through the master", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the master's comment on both satellites", func() bool { return has("lab-s1", name) && has("lab-s2", name) })
	name, err = clients["lab-s1"].AddComment(ctx, "h1", "svc", "handle_worker", "through a satellite", time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the satellite's comment on its peer", func() bool { return has("lab-s2", name) })
	time.Sleep(3 * time.Second)
	t.Logf("a comment made through a satellite is on the master: %v", has("lab-m", name))
	lines, _ := master.MainLogLines("child zone")
	t.Logf("master log, child zone: %q", lines)
}
