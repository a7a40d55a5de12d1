package listener

import (
	"strings"
	"testing"
)

func TestPolkitRule(t *testing.T) {
	cfg := &Config{fromFile: "/etc/selfheal/worker_listener.yaml", Services: map[string]Service{
		"billing": {Actions: map[string]Action{
			"restart": {Argv: []string{"/usr/bin/systemctl", "--no-block", "restart", "billing-worker.service"}},
			"stop":    {Argv: []string{"/bin/systemctl", "stop", "billing-worker"}},
			"status":  {Argv: []string{"/usr/bin/systemctl", "is-active", "billing-worker.service"}},
		}},
		"demo": {Actions: map[string]Action{
			"restart": {Argv: []string{"/usr/bin/systemctl", "try-reload-or-restart", "demo.service"}},
		}},
		"script": {Actions: map[string]Action{"restart": {Argv: []string{"/opt/x/restart.sh"}}}},
	}}
	rule, err := PolkitRule(cfg, "selfheal")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`subject.user != "selfheal"`,
		`"billing-worker.service": ["restart", "stop"],`,
		`"demo.service": ["reload-or-try-restart"]` + "\n",
		`action.id != "org.freedesktop.systemd1.manage-units"`,
		"from /etc/selfheal/worker_listener.yaml",
	} {
		if !strings.Contains(rule, want) {
			t.Errorf("rule lacks %q:\n%s", want, rule)
		}
	}
	if strings.Contains(rule, "is-active") || strings.Contains(rule, "restart.sh") {
		t.Errorf("rule allows more than the actions need:\n%s", rule)
	}
}

func TestPolkitRuleRefuses(t *testing.T) {
	for name, a := range map[string]Action{
		"switches user": {Argv: []string{"/usr/bin/systemctl", "restart", "x.service"}, User: "demo"},
		"pattern":       {Argv: []string{"/usr/bin/systemctl", "restart", "x*.service"}},
		"user manager":  {Argv: []string{"/usr/bin/systemctl", "--user", "restart", "x.service"}},
		"unknown verb":  {Argv: []string{"/usr/bin/systemctl", "kill", "x.service"}},
		"no unit":       {Argv: []string{"/usr/bin/systemctl", "restart"}},
	} {
		cfg := &Config{Services: map[string]Service{"s": {Actions: map[string]Action{"restart": a}}}}
		if rule, err := PolkitRule(cfg, "selfheal"); err == nil {
			t.Errorf("%s: accepted:\n%s", name, rule)
		}
	}
	// Nothing to allow is an error too: an empty rule would look like a fix.
	cfg := &Config{Services: map[string]Service{"s": {Actions: map[string]Action{"restart": {Argv: []string{"/opt/x/restart.sh"}}}}}}
	if _, err := PolkitRule(cfg, "selfheal"); err == nil {
		t.Error("a config without systemctl actions got a rule")
	}
	if _, err := PolkitRule(&Config{}, `x"; polkit.Result.YES; "`); err == nil {
		t.Error("a hostile user name was accepted")
	}
}

func TestJSString(t *testing.T) {
	if got := jsString("a\"b\\c\n\u00e9"); got != `"a\"b\\c\u000a\u00e9"` {
		t.Fatalf("jsString: %s", got)
	}
}
