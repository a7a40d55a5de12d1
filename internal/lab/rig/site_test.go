package rig

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/selfheal/selfheal/internal/lab/engine"
)

// The object definitions the loop and the Nagios demo each wrote before
// the rig wrote them once; the rig's must say the same, less the restart
// budget, which moved to the agent's config (SH2).
const (
	loopNagios = `define host {
  use                    selfheal-host
  host_name              %[1]s
  address                127.0.0.1
  active_checks_enabled  0
  max_check_attempts     1
  _LISTENER_PORT         %[3]d
}
define service {
  use                  selfheal-worker
  host_name            %[1]s
  service_description  %[2]s
  _WORKER_PORT         %[4]d
  _WORKER_TARGET       %[5]s
  _WORKER_TIMEOUT      %[6]d
  _WORKER_CHECK_ARGS   --max-age %[7]s
  _HEAL_RECHECK        %[8]s
}
define service {
  use                  selfheal-reevaluator
  host_name            %[1]s
  service_description  selfheal reevaluate
}
`
	loopIcinga = `object Host %[1]q {
  address = "127.0.0.1"
  check_command = "dummy"
  enable_active_checks = false
  vars.listener_port = %[3]d
  vars.selfheal_workers[%[2]q] = {
    worker_port = %[4]d
    worker_target = %[5]q
    worker_timeout = %[6]d
    worker_max_age = %[7]q
    heal_recheck = %[8]q
  }
}
`
	demoNagios = `
define host {
  use                    selfheal-host
  host_name              %[1]s
  address                127.0.0.1
  active_checks_enabled  0
  max_check_attempts     1
  _LISTENER_PORT         %[3]s
}
define service {
  use                  selfheal-worker
  host_name            %[1]s
  service_description  %[2]s
  _WORKER_PORT         %[4]s
  _WORKER_TARGET       demo
  _WORKER_TIMEOUT      %[5]s
  _WORKER_CHECK_ARGS   --max-age %[6]s
  _HEAL_RECHECK        1s
}
define service {
  use                  selfheal-reevaluator
  host_name            %[1]s
  service_description  selfheal reevaluate
}
`
)

// definitions reads object text as its lines, in order, each with its
// whitespace collapsed, comments and blank lines dropped: what Nagios and
// Icinga take from it, not how it is laid out.
func definitions(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		l = strings.Join(strings.Fields(l), " ")
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "/*") {
			continue
		}
		out = append(out, l)
	}
	return out
}

func TestSiteObjectsAreTheLoopsAndTheDemos(t *testing.T) {
	loop := Site{ListenerPort: 5690, WorkerPort: 8080, CheckTimeout: 2, MaxAge: "2s,3s", Recheck: "1s"}
	args := []any{HostName, ServiceName, 5690, 8080, Target, 2, "2s,3s", "1s"}
	if got, want := definitions(loop.nagiosObjects()), definitions(fmt.Sprintf(loopNagios, args...)); !reflect.DeepEqual(got, want) {
		t.Errorf("Nagios objects\n got %q\nwant %q", got, want)
	}
	if got, want := definitions(loop.icingaObjects()), definitions(fmt.Sprintf(loopIcinga, args...)); !reflect.DeepEqual(got, want) {
		t.Errorf("Icinga objects\n got %q\nwant %q", got, want)
	}
	demo := Site{ListenerPort: 5690, WorkerPort: 8080, CheckTimeout: 2, MaxAge: "5,10", Recheck: "1s"}
	want := definitions(fmt.Sprintf(demoNagios, HostName, ServiceName, "5690", "8080", "2", "5,10"))
	if got := definitions(demo.nagiosObjects()); !reflect.DeepEqual(got, want) {
		t.Errorf("the demo's Nagios objects\n got %q\nwant %q", got, want)
	}
	// No budget and no agent name in the engine's objects: the agent keeps
	// the budget, and the handler names the agent after the host.
	for _, text := range []string{loop.nagiosObjects(), loop.icingaObjects(), demo.nagiosObjects(), demo.icingaObjects()} {
		for _, gone := range []string{"MAX_RESTARTS", "max_restarts", "WINDOW", "window", "MIN_GAP", "min_gap", "agent", "AGENT"} {
			if strings.Contains(text, gone) {
				t.Errorf("objects still set %s:\n%s", gone, text)
			}
		}
	}
}

func TestSiteConfig(t *testing.T) {
	s := Site{Kind: engine.Nagios4, ConfigDir: "/nc", BinDir: "/bin", KeyFile: "/k", StateDir: "/s", HandlerLog: "/h"}
	cfg, err := s.Config()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.ObjectFiles, []string{"/nc/nagios4/commands.cfg", "/nc/nagios4/templates.cfg"}) ||
		!reflect.DeepEqual(cfg.MainConfigFiles, []string{"/nc/nagios4/nagios.cfg"}) ||
		!reflect.DeepEqual(cfg.Resources, map[string]string{"USER1": "/bin", "USER3": "/k", "USER4": "/s", "USER5": "/h", "USER6": DefaultHandlerArgs}) {
		t.Errorf("Nagios config %+v", cfg)
	}
	s.Kind = engine.Icinga2
	if cfg, err = s.Config(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.ObjectFiles, []string{"/nc/icinga2/selfheal.conf"}) || cfg.Resources["SelfhealKeyFile"] != "/k" ||
		cfg.Constants["SelfhealMaxCheckAttempts"] != "3" {
		t.Errorf("Icinga config %+v", cfg)
	}
	s.Kind = "zabbix"
	if _, err := s.Config(); err == nil {
		t.Error("an unknown engine was accepted")
	}
}
