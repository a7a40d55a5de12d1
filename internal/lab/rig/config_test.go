package rig

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/selfheal/selfheal/internal/listener"
)

// TestListenerConfigParses: what the writer writes is what the listener
// reads, knob for knob, with the services in the caller's order.
func TestListenerConfigParses(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "k.key")
	if _, _, err := NewKeys("fleet1", "worker1", filepath.Join(dir, "fleet1.key"), key); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "a.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := ListenerConfig{
		Listen: "127.0.0.1:0", Agent: "worker1", Keys: []string{key}, Allow: Loopback, AuditLog: "-", StateDir: filepath.Join(dir, "state"),
		ReplayWindow: "10m", ShutdownGrace: "2s",
		Limits: Limits{Rate: 2.5, Burst: 7, MaxConns: 9, MaxConnsPerSource: 3, ReadTimeout: "1m"},
		Budget: &Budget{Max: 5, Window: "30m", MinGap: "1m"},
		Services: []Service{
			{Name: "zeta", Actions: map[string]Action{"restart": {Argv: []string{script, "a b", "it's"}, Timeout: "10s", KillGrace: "1s",
				Env: map[string]string{"MARK": dir + "/mark", "EMPTY": ""}}}, Budget: &Budget{Max: 2}},
			{Name: "alpha", Actions: map[string]Action{"stop": {Argv: []string{script}}, "start": {Argv: []string{script}}}},
		},
		Comment: "Written by a test.\nTwo lines.",
	}
	b, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	got, err := listener.Parse(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if got.Listen != c.Listen || got.Agent != "worker1" || !reflect.DeepEqual(got.Keys, c.Keys) || !reflect.DeepEqual(got.Allow, c.Allow) ||
		got.AuditLog != "-" || got.StateDir != c.StateDir || got.ReplayWindow != 10*time.Minute || got.ShutdownGrace != 2*time.Second {
		t.Errorf("top level: %+v\n%s", got, b)
	}
	if l := got.Limits; l.Rate != 2.5 || l.Burst != 7 || l.MaxConns != 9 || l.MaxConnsPerSource != 3 || l.ReadTimeout != time.Minute {
		t.Errorf("limits %+v", l)
	}
	a := got.Services["zeta"].Actions["restart"]
	if !reflect.DeepEqual(a.Argv, []string{script, "a b", "it's"}) || a.Timeout != 10*time.Second || a.KillGrace != time.Second ||
		a.Env["MARK"] != dir+"/mark" || len(a.Env) != 2 {
		t.Errorf("zeta restart %+v", a)
	}
	if len(got.Services) != 2 || len(got.Services["alpha"].Actions) != 2 {
		t.Errorf("services %+v", got.Services)
	}
	// The budget: the top level for alpha, zeta's override field by field.
	if b := got.Services["alpha"].RestartBudget(); b != (listener.Budget{Max: 5, Window: 30 * time.Minute, MinGap: time.Minute}) {
		t.Errorf("alpha's budget %+v", b)
	}
	if b := got.Services["zeta"].RestartBudget(); b != (listener.Budget{Max: 2, Window: 30 * time.Minute, MinGap: time.Minute}) {
		t.Errorf("zeta's budget %+v", b)
	}
	text := string(b)
	if !strings.HasPrefix(text, "# Written by a test.\n# Two lines.\n") {
		t.Errorf("no comment on top:\n%s", text)
	}
	if strings.Index(text, "zeta:") > strings.Index(text, "alpha:") {
		t.Errorf("services not in the caller's order:\n%s", text)
	}
}

// TestListenerConfigEdges: empty lists are written (and refused by the
// listener), empty knobs are left out, TLS and Extra are written as given.
func TestListenerConfigEdges(t *testing.T) {
	b, err := ListenerConfig{
		TLS:   &TLS{Cert: "/c.crt", Key: "/c.key", ClientCA: "/ca.crt"},
		Extra: "shutdown_grace_typo: 30s",
	}.YAML()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	want := map[string]any{
		"keys": []any{}, "allow": []any{}, "services": map[string]any{},
		"tls":                 map[string]any{"cert": "/c.crt", "key": "/c.key", "client_ca": "/ca.crt"},
		"shutdown_grace_typo": "30s",
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got %#v\nwant %#v\n%s", m, want, b)
	}
	if _, err := listener.Parse(b); err == nil || !strings.Contains(err.Error(), "shutdown_grace_typo") {
		t.Errorf("the listener took the typo: %v", err)
	}
}
