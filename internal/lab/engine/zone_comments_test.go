package engine

import (
	"context"
	"errors"
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

// TestZoneCommentsReplicate: in the HA zone as Icinga documents it, a
// comment added through one endpoint's API (with the handler's own
// client) is found and removed through the other's, both ways, and
// neither endpoint ignores the other's config updates.
func TestZoneCommentsReplicate(t *testing.T) {
	bin := testutil.LookTool(t, "icinga2", "/usr/sbin/icinga2")
	dir, stateFile := scripts(t)
	if err := os.WriteFile(filepath.Join(dir, "zone-handler.sh"), []byte(zoneHandlerScript), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stateFile, []byte(strconv.Itoa(int(nagios.OK))+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	z, err := NewZone(ZoneConfig{Binary: bin, Objects: zoneObjects, Resources: map[string]string{"LabDir": dir, "LabState": stateFile}})
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
	clients := map[string]*icingaapi.Client{}
	for _, e := range z.Endpoints {
		user, pw := e.Credentials()
		c, err := icingaapi.New(icingaapi.Config{URL: "https://127.0.0.1:" + strconv.Itoa(e.APIPort), CAFile: z.CAFile(),
			ServerName: e.Name, User: user, Password: pw})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[e.Name] = c
	}
	// reach retries call while the API cannot be reached: on a loaded
	// machine an endpoint refused connections once between two calls that
	// succeeded. Any answer from Icinga (an error too) is final.
	reach := func(what string, call func() error) {
		t.Helper()
		var err error
		if perr := poll(ctx, 100*time.Millisecond, func() (bool, error) {
			err = call()
			return !errors.Is(err, icingaapi.ErrTransport), nil
		}); perr != nil || err != nil {
			t.Fatalf("%s: %v (%v)", what, err, perr)
		}
	}
	has := func(c *icingaapi.Client, name string) bool {
		var cs []icingaapi.Comment
		reach("reading the comments", func() (err error) {
			cs, err = c.Comments(ctx, "h1", "svc", "handle_worker")
			return err
		})
		return slices.ContainsFunc(cs, func(x icingaapi.Comment) bool { return x.Name == name })
	}
	for i, from := range z.Endpoints {
		to := z.Endpoints[1-i]
		var name string
		reach("adding a comment through "+from.Name, func() (err error) {
			name, err = clients[from.Name].AddComment(ctx, "h1", "svc", "handle_worker", "auto-restart ok via "+from.Name, time.Now().Add(time.Hour))
			return err
		})
		waitFor(t, ctx, "the comment added on "+from.Name+" to reach "+to.Name, func() bool { return has(clients[to.Name], name) })
		reach("removing "+name+" through "+to.Name, func() error { return clients[to.Name].RemoveComment(ctx, name) })
		waitFor(t, ctx, "the removal on "+to.Name+" to reach "+from.Name, func() bool { return !has(clients[from.Name], name) })
		t.Logf("comment added through %s, found and removed through %s", from.Name, to.Name)
	}
	for _, e := range z.Endpoints {
		if lines, err := e.MainLogLines("Ignoring config"); err != nil || len(lines) > 0 {
			t.Errorf("%s ignored config updates (err %v): %q", e.Name, err, lines)
		}
	}
}
