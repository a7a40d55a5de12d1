package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/rig"
)

// zoneWorkers is how many workers the zone-rule test watches: more than
// the default allowance (10), and few enough for one endpoint's share
// (about half) to stay under it, as the old per-endpoint count did.
const zoneWorkers = 13

// TestHAZoneRule: the mass-failure rule is the zone's, on a real Icinga 2
// HA zone of two endpoints, each running the shipped selfheal.conf with
// its handler reading its own endpoint's REST API. One allowance: 4
// workers crashing at once are 4 restarts, none held. One storm: all 13
// crash at once; both endpoints handle their share, and together they
// restart at most 10 (the old per-endpoint count would have let all 13
// through, about 6 per endpoint; the zone rule usually holds all 13, as
// every one is SOFT CRITICAL before the first turns HARD); every held one
// gets one comment naming the zone's count.
func TestHAZoneRule(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Second)
	defer cancel()
	// The agent's own breaker is off: this test is about the zone's.
	l := newAPIZone(t, ctx, zoneWorkers, "")
	z, workers, audit, logf, waitOK := l.z, l.workers, l.audit, l.logf, l.waitOK
	waitOK(workers, "start")

	// handled reads both endpoints' handler logs: per service, the
	// endpoint that restarted it or held it by the zone rule.
	type handling struct{ restarted, held map[string]string }
	handled := func(since time.Time) handling {
		h := handling{restarted: map[string]string{}, held: map[string]string{}}
		for _, e := range z.Endpoints {
			recs, _ := rig.ReadHandlerLog(filepath.Join(e.Dir, "handle_worker.log"))
			for _, r := range recs {
				var x struct {
					Service string    `json:"service"`
					Time    time.Time `json:"time"`
				}
				if json.Unmarshal([]byte(r.Raw), &x) != nil || x.Time.Before(since) || r.Source != "event" {
					continue
				}
				switch {
				case r.Held == "breaker":
					h.held[x.Service] = e.Name
				case r.Decision == "restart" && r.Held == "":
					h.restarted[x.Service] = e.Name
				}
			}
		}
		return h
	}
	crash := func(list []zoneWorker) time.Time {
		t.Helper()
		at := time.Now().Add(-time.Second) // the handler log has whole seconds
		var wg sync.WaitGroup
		for _, w := range list {
			wg.Go(func() {
				if err := w.w.Fault(ctx, "crash"); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		return at
	}
	settle := func(since time.Time, n int) handling {
		t.Helper()
		for {
			h := handled(since)
			if len(h.restarted)+len(h.held) >= n {
				return h
			}
			select {
			case <-ctx.Done():
				t.Fatalf("only %d of %d crashed services handled: %+v", len(h.restarted)+len(h.held), n, h)
			case <-time.After(250 * time.Millisecond):
			}
		}
	}

	// One allowance: 4 at once, all restarted.
	since := crash(workers[:4])
	h := settle(since, 4)
	if len(h.restarted) != 4 || len(h.held) != 0 {
		t.Fatalf("4 at once: restarted %v, held %v; want all 4 restarted", h.restarted, h.held)
	}
	waitOK(workers[:4], "4 at once")
	logf("4 at once: restarted by %v", h.restarted)

	// One storm: all at once.
	since = crash(workers)
	h = settle(since, len(workers))
	per := map[string]int{}
	for _, e := range h.restarted {
		per[e]++
	}
	for _, e := range h.held {
		per[e+" (held)"]++
	}
	logf("%d at once: %d restarted, %d held; per endpoint %v", len(workers), len(h.restarted), len(h.held), per)
	if len(h.restarted) > 10 || len(h.restarted)+len(h.held) != len(workers) {
		for _, e := range z.Endpoints {
			recs, _ := rig.ReadHandlerLog(filepath.Join(e.Dir, "handle_worker.log"))
			for _, r := range recs[max(0, len(recs)-8):] {
				t.Logf("%s: %s", e.Name, r.Raw)
			}
		}
		t.Fatalf("storm: restarted %v, held %v; want at most 10 restarted in the zone, the rest held", h.restarted, h.held)
	}
	for svc, ep := range h.held {
		c, err := z.Endpoint(ep).WaitComment(ctx, hostName, svc, "(mass failure)")
		if err != nil {
			t.Fatalf("held %s (by %s): %v", svc, ep, err)
		}
		if !strings.Contains(c.Text, "services of this zone turned CRITICAL") || !strings.Contains(c.Text, "host "+hostName) {
			t.Fatalf("held %s: comment %q names no zone count or host", svc, c.Text)
		}
	}
	runs := 0
	recs, err := rig.ReadAudit(audit)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Verb == "restart" && r.Origin == "run" && !r.Time.Before(since) {
			runs++
		}
	}
	if runs > 10 {
		t.Fatalf("the agent ran %d restarts in the storm, want at most 10", runs)
	}
	logf("storm: the agent ran %d; every held service has its comment", runs)
}
