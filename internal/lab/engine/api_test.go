package engine

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/testutil"
)

// TestAPIInstance proves the API-only instance: it starts with no command
// pipe and no status.dat, answers the lab's user, runs checks, and logs no
// DEPRECATED line, where the classic lab instance (command pipe,
// status.dat, compat log) does, so the scan can fail.
func TestAPIInstance(t *testing.T) {
	bin := testutil.LookTool(t, "icinga2", "/usr/sbin/icinga2")
	dir, stateFile := scripts(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res := map[string]string{"LabDir": dir, "LabState": stateFile}

	a, err := NewAPI(APIConfig{Binary: bin, Objects: icingaObjects, Resources: res,
		Users: []APIUser{{Name: "u", Password: "p", Permissions: []string{`"objects/query/Service"`}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := a.Close(); err != nil {
			t.Error(err)
		}
	}()
	if out, err := a.Validate(ctx); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	classic, err := New(Config{Kind: Icinga2, Binary: bin, Objects: icingaObjects, Resources: res})
	if err != nil {
		t.Fatal(err)
	}
	defer classic.Close()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := classic.Start(ctx); err != nil {
		t.Fatal(err)
	}

	err = poll(ctx, 100*time.Millisecond, func() (bool, error) {
		attrs, err := a.ServiceAttrs(ctx, "h1", "svc", "last_check_result", "state")
		if err != nil {
			return false, err
		}
		return attrs["last_check_result"] != nil, nil
	})
	if err != nil {
		t.Fatalf("no check result through the API: %v", err)
	}
	attrs, err := a.ServiceAttrs(ctx, "h1", "svc", "state")
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := attrs["state"].(json.Number); s.String() != "0" {
		t.Errorf("state %v, want 0", attrs["state"])
	}
	for _, p := range []string{filepath.Join(a.Dir, "run", "icinga2.cmd"), filepath.Join(a.Dir, "var", "cache", "status.dat")} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s exists (err %v): the API instance must run no deprecated feature", p, err)
		}
	}
	if a.CommandFile != "" || a.StatusFile != "" || a.LogFile != "" {
		t.Errorf("command, status and compat files set: %q %q %q", a.CommandFile, a.StatusFile, a.LogFile)
	}
	if _, _, err := a.ClientCert("nobody"); err == nil {
		t.Error("ClientCert of an unknown CN: no error")
	}

	if lines, err := a.Deprecations(); err != nil || len(lines) > 0 {
		t.Errorf("API instance logs deprecations (err %v):\n%q", err, lines)
	}
	// The classic instance logs its features' deprecation at start.
	var lines []string
	err = poll(ctx, 100*time.Millisecond, func() (bool, error) {
		var err error
		lines, err = deprecationLines(classic.MainLog)
		return len(lines) > 0, err
	})
	if err != nil {
		t.Errorf("the classic instance (command pipe, status.dat) logged no DEPRECATED line: %v", err)
	}
	t.Logf("classic instance: %q", lines)
}

func TestNewAPIRefuses(t *testing.T) {
	for name, cfg := range map[string]APIConfig{
		"lab user":      {Binary: "/bin/true", Users: []APIUser{{Name: labUser}}},
		"bad node name": {Binary: "/bin/true", NodeName: "a/b"},
		"repeated cert": {Binary: "/bin/true", NodeName: "x", ClientCNs: []string{"x"}},
		"NodeName":      {Binary: "/bin/true", Resources: map[string]string{"NodeName": "x"}},
	} {
		if a, err := NewAPI(cfg); err == nil {
			a.Close()
			t.Errorf("%s: no error", name)
		}
	}
}
