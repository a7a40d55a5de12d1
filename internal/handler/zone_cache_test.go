package handler

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestZoneCache: the runs of one process share one read of the zone for
// zoneViewTTL, from their own copy when the file is gone; another process
// reads the engine then; past the TTL the first reads again.
func TestZoneCache(t *testing.T) {
	dir := t.TempDir()
	state, status := filepath.Join(dir, "state"), filepath.Join(dir, "status.dat")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_800_000_000, 0)
	write := func(svcs ...string) {
		var in string
		for i, s := range svcs {
			in += fmt.Sprintf("servicestatus {\n\thost_name=h\n\tservice_description=%s\n\thas_been_checked=1\n\tcurrent_state=2\n\tstate_type=1\n\t"+
				"current_problem_id=%d\n\tevent_handler=selfheal-handle-worker!x\n\tlast_state_change=%d\n\t}\n", s, i+1, t0.Unix()-10)
		}
		if err := os.WriteFile(status, []byte(in), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	now := t0
	ask := func(c *ZoneCache) int {
		t.Helper()
		r := newRun(Config{StateDir: state, Judgment: Judgment{StatusFile: status}, Engine: NagiosEngine{StatusFile: status},
			Deadline: 10 * time.Second, ZoneCache: c}, Deps{Now: func() time.Time { return now }})
		l, _, err := r.sharedZone(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return len(l)
	}
	one, two := &ZoneCache{}, &ZoneCache{}
	write("s1")
	if n := ask(one); n != 1 {
		t.Fatalf("first read: %d failing, want 1", n)
	}
	write("s1", "s2")
	if err := os.Remove(filepath.Join(state, "zone-view.json")); err != nil {
		t.Fatal(err)
	}
	now = t0.Add(time.Second)
	if n := ask(one); n != 1 {
		t.Fatalf("same process within the TTL: %d failing, want 1 (its copy)", n)
	}
	if n := ask(two); n != 2 {
		t.Fatalf("another process, no shared view: %d failing, want 2 (the engine)", n)
	}
	write("s1", "s2", "s3")
	now = t0.Add(zoneViewTTL)
	if n := ask(one); n != 2 {
		t.Fatalf("past the TTL: %d failing, want 2 (the other's shared view)", n)
	}
	now = t0.Add(time.Second + zoneViewTTL)
	if n := ask(one); n != 3 {
		t.Fatalf("past the shared view's TTL: %d failing, want 3 (the engine)", n)
	}
}

// TestZoneCacheStorm: a view with more failing services than the
// allowance serves the event runs for zoneStormTTL, one within it for
// zoneViewTTL only; reevaluate's asks always for zoneViewTTL.
func TestZoneCacheStorm(t *testing.T) {
	for _, tc := range []struct {
		failing int
		source  string
		ttl     time.Duration
	}{{2, "event", zoneViewTTL}, {3, "event", zoneStormTTL}, {3, sourceReevaluate, zoneViewTTL}} {
		dir := t.TempDir()
		state, status := filepath.Join(dir, "state"), filepath.Join(dir, "status.dat")
		if err := os.Mkdir(state, 0o700); err != nil {
			t.Fatal(err)
		}
		t0 := time.Unix(1_800_000_000, 0)
		write := func(n int) {
			var in string
			for i := range n {
				in += fmt.Sprintf("servicestatus {\n\thost_name=h\n\tservice_description=s%d\n\thas_been_checked=1\n\tcurrent_state=2\n\tstate_type=1\n\t"+
					"current_problem_id=%d\n\tevent_handler=selfheal-handle-worker!x\n\tlast_state_change=%d\n\t}\n", i, i+1, t0.Unix()-10)
			}
			if err := os.WriteFile(status, []byte(in), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		zone := DefaultZone
		zone.Allowance = 2
		ask := func(now time.Time) int {
			t.Helper()
			r := newRun(Config{StateDir: state, Judgment: Judgment{StatusFile: status, Zone: zone}, Engine: NagiosEngine{StatusFile: status},
				Deadline: 10 * time.Second, Source: tc.source}, Deps{Now: func() time.Time { return now }})
			l, _, err := r.sharedZone(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			return len(l)
		}
		write(tc.failing)
		if n := ask(t0); n != tc.failing {
			t.Fatalf("first read: %d failing, want %d", n, tc.failing)
		}
		write(tc.failing + 1)
		if n := ask(t0.Add(tc.ttl - time.Millisecond)); n != tc.failing {
			t.Fatalf("%s, %d failing, just inside %v: read %d, want the shared view's %d", tc.source, tc.failing, tc.ttl, n, tc.failing)
		}
		if n := ask(t0.Add(tc.ttl)); n != tc.failing+1 {
			t.Fatalf("%s, %d failing, at %v: read %d, want the engine's %d", tc.source, tc.failing, tc.ttl, n, tc.failing+1)
		}
	}
}
