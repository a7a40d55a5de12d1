package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/engine"
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
		ObjectFiles:     []string{filepath.Join(dir, "commands.cfg"), filepath.Join(dir, "templates.cfg"), filepath.Join(dir, "worker.cfg")},
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
	for _, want := range []string{"Total Errors:   0", "Checked 1 services.", "Checked 1 hosts."} {
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
		ObjectFiles: []string{filepath.Join(dir, "constants.conf"), filepath.Join(dir, "selfheal.conf"), filepath.Join(dir, "hosts.conf")},
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
	// The apply rule made one service from the host's selfheal_workers.
	for _, want := range []string{"Instantiated 1 Service.", "Instantiated 1 EventCommand."} {
		if !strings.Contains(out, want) {
			t.Errorf("icinga2 daemon -C output lacks %q:\n%s", want, out)
		}
	}
}
