package rig

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/selfheal/selfheal/internal/listener"
	"github.com/selfheal/selfheal/internal/protocol"
)

// TestPrepareSecondAgentOfFleet: Kit.Fleet issues a second agent's host key
// from the first one's fleet: one fleet, two host keys, each config listing
// its own, and no second fleet key.
func TestPrepareSecondAgentOfFleet(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := ListenerConfig{Allow: Loopback, Services: []Service{{Name: "demo", Actions: map[string]Action{"restart": {Argv: []string{"/bin/true"}}}}}}
	a, err := Prepare(ctx, Kit{Dir: filepath.Join(dir, "a"), Agent: "web1", Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Prepare(ctx, Kit{Dir: filepath.Join(dir, "b"), Agent: "web2", Fleet: a.FleetFile, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if b.FleetFile != a.FleetFile || !bytes.Equal(a.Fleet.Secret, b.Fleet.Secret) {
		t.Errorf("the second agent has another fleet: %s", b.FleetFile)
	}
	if _, err := os.Stat(filepath.Join(dir, "b", "fleet1.fleet.key")); !os.IsNotExist(err) {
		t.Errorf("a second fleet key was written: %v", err)
	}
	want, _ := a.Fleet.ForAgent("web2")
	if b.Key.Kind != protocol.HostKey || b.Key.Agent != "web2" || !bytes.Equal(b.Key.Secret, want.Secret) || bytes.Equal(a.Key.Secret, b.Key.Secret) {
		t.Errorf("web2's key %+v", b.Key)
	}
	for _, f := range []Files{a, b} {
		cfg, err := listener.Load(f.Config)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Agent != f.Agent || len(cfg.Keys) != 1 || cfg.Keys[0] != f.KeyFile {
			t.Errorf("%s's config: agent %q, keys %v", f.Agent, cfg.Agent, cfg.Keys)
		}
	}
}
