package icingaapi

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRealFailing: the zone rule's one query finds exactly the CRITICAL
// services of the event command, turned CRITICAL since the time asked,
// with the fault id the EventCommand passes.
func TestRealFailing(t *testing.T) {
	r := lab(t)
	c := r.client(t, "selfheal")
	ctx := ctxFor(t, 60*time.Second)
	state := filepath.Join(r.dir, "state-svc")
	defer os.WriteFile(state, []byte("0\n"), 0o644)

	before := time.Now().Add(-time.Second)
	if fs, err := c.Failing(ctx, before.Add(-time.Hour), "lab_dump"); err != nil || len(fs) != 0 {
		t.Fatalf("all OK: %+v, %v; want none", fs, err)
	}
	if err := os.WriteFile(state, []byte("2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var s Service
	for s.State != 2 || s.StateType != 1 {
		var err error
		if s, err = c.Service(ctx, "h1", "svc"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("svc never HARD CRITICAL")
		case <-time.After(100 * time.Millisecond):
		}
	}
	fs, err := c.Failing(ctx, before, "lab_dump")
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 || fs[0].Host != "h1" || fs[0].Name != "svc" || fs[0].FaultID() != s.FaultID() ||
		fs[0].Since().Before(before) || fs[0].Since().After(time.Now()) {
		t.Fatalf("failing: %+v; want h1!svc, fault %s", fs, s.FaultID())
	}
	for what, call := range map[string]func() ([]FailingService, error){
		"another event command":   func() ([]FailingService, error) { return c.Failing(ctx, before, "other") },
		"turned CRITICAL earlier": func() ([]FailingService, error) { return c.Failing(ctx, time.Now().Add(time.Hour), "lab_dump") },
	} {
		if fs, err := call(); err != nil || len(fs) != 0 {
			t.Errorf("%s: %+v, %v; want none", what, fs, err)
		}
	}
	if _, err := c.Failing(ctx, before, ""); err == nil {
		t.Error("no event command: no error")
	}
	t.Logf("failing: %+v", fs[0])
}
