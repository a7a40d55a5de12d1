package handler_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/breaker"
	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/handler"
	"github.com/selfheal/selfheal/internal/nodestate"
)

var statusNow = time.Date(2025, 11, 25, 10, 0, 0, 0, time.UTC)

func writeRecords(t *testing.T, s nodestate.Store, recs ...nodestate.Record) {
	t.Helper()
	for _, r := range recs {
		if err := s.Write(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
}

func dirNames(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n []string
	for _, e := range ents {
		n = append(n, e.Name())
	}
	return strings.Join(n, " ")
}

// TestStatus: per service the last answer, how long ago (a record in the
// future says the clock moved), the budget, and what is held back and
// why, with the pauses and the node's breaker on top. It writes nothing.
func TestStatus(t *testing.T) {
	s := pauseStore(t)
	now := statusNow
	budget := &nodestate.RecordBudget{Used: 1, Max: 3, WindowS: 3600}
	writeRecords(t, s,
		nodestate.Record{Host: "web1", Service: "A", At: now.Add(-2 * time.Minute), Result: "healed", Outcome: "ok", Budget: budget},
		nodestate.Record{Host: "web1", Service: "B", At: now.Add(-90 * time.Second), Result: "held", Outcome: "ok",
			Held: &nodestate.Held{Rule: "host", Since: now.Add(-90 * time.Second), Fault: "7"}},
		nodestate.Record{Host: "web2", Service: "C", At: now.Add(5 * time.Minute), Result: "backoff", Outcome: "backoff",
			Held: &nodestate.Held{Rule: "backoff", Since: now.Add(-time.Minute), RetryAt: now.Add(3 * time.Minute), Fault: "8"}},
		nodestate.Record{Host: "web3", Service: "D", At: now.Add(-10 * time.Minute), Result: "healed", Outcome: "ok", Budget: budget},
	)
	setPause(t, s, now, nodestate.Pause{Host: "web3", Reason: "disk swap", By: "alice", At: now, Until: now.Add(time.Hour)}, false)
	if err := os.WriteFile(filepath.Join(s.Dir, "x,y.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := dirNames(t, s.Dir)
	// The breaker's line is TestStatusBreaker's.
	off := handler.Judgment{Breaker: handler.DefaultBreaker, Ignore: map[nodestate.Rule]bool{nodestate.RuleBreaker: true}}
	got, err := handler.Status(context.Background(), s, off, now)
	if err != nil {
		t.Fatal(err)
	}
	want := "paused: host web3 by alice until 2025-11-25T11:00:00Z (1h0m0s left): disk swap\n" +
		"breaker: switched off (--ignore breaker)\n" +
		"HOST/SERVICE  LAST ANSWER  AGO                                        BUDGET          HELD BACK\n" +
		"web1/A        healed (ok)  2m0s ago                                   1/3 per 1h0m0s  -\n" +
		"web1/B        held (ok)    1m30s ago                                  -               host since 1m30s (fault 7)\n" +
		"web2/C        backoff      5m0s in the future (the clock moved back)  -               backoff since 1m0s (fault 8), agent allows in 3m0s\n" +
		"web3/D        healed (ok)  10m0s ago                                  1/3 per 1h0m0s  paused (host web3)\n" +
		"unreadable record: x,y.json (replaced by the next answer for it)\n"
	if got != want {
		t.Fatalf("status:\n%s\nwant:\n%s", got, want)
	}
	if after := dirNames(t, s.Dir); after != before {
		t.Fatalf("status wrote in the state directory: %s, was %s", after, before)
	}
}

// TestStatusBreaker: the node's breaker as it stands: how many services
// needed a restart, and when it takes its next step; or switched off.
// Unreadable pauses are said, not fatal; a missing directory is an error.
func TestStatusBreaker(t *testing.T) {
	s := pauseStore(t)
	now := statusNow
	cfg := breaker.Config{Window: 5 * time.Minute, Threshold: 2, Quiet: 2 * time.Minute}
	admit := func(at time.Time, keys ...string) {
		t.Helper()
		d, err := fsutil.Trust{}.OpenDir(s.Dir, fsutil.PrivateDir)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		for _, k := range keys {
			if _, err := (breaker.Store{Dir: d, Name: "breaker", Config: cfg}).Admit(context.Background(), at, k, "1"); err != nil {
				t.Fatal(err)
			}
		}
	}
	head := func(j handler.Judgment, at time.Time) string {
		t.Helper()
		out, err := handler.Status(context.Background(), s, j, at)
		if err != nil {
			t.Fatal(err)
		}
		return out[:strings.Index(out, "HOST/SERVICE")]
	}
	on := handler.Judgment{Breaker: cfg}
	for _, tc := range []struct {
		name string
		keys []string // admitted at now
		at   time.Duration
		want string
	}{
		{"nothing failed", nil, 0, "breaker: closed (0 of at most 2 services needed a restart within 5m0s)\n"},
		{"at the threshold, still closed", []string{"web1!A", "web1!B"}, 10 * time.Second,
			"breaker: closed (2 of at most 2 services needed a restart within 5m0s)\n"},
		{"over it: open, trial Quiet after the last failure", []string{"web2!C"}, 30 * time.Second,
			"breaker: open since 2025-11-25T10:00:00Z: 3 services needed a restart within 5m0s; next step in 1m30s\n"},
	} {
		admit(now, tc.keys...)
		if got := head(on, now.Add(tc.at)); got != "pauses: none\n"+zoneIdle+tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, "pauses: none\n"+zoneIdle+tc.want)
		}
	}
	if got, want := head(handler.Judgment{Breaker: cfg, Ignore: map[nodestate.Rule]bool{nodestate.RuleBreaker: true}}, now),
		"pauses: none\nbreaker: switched off (--ignore breaker)\n"; got != want {
		t.Fatalf("off:\n got %q\nwant %q", got, want)
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "pauses.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := head(on, now); !strings.HasPrefix(got, "pauses: unreadable: state file corrupt: ") {
		t.Fatalf("corrupt pauses: %q", got)
	}
	if _, err := handler.Status(context.Background(), nodestate.Store{Dir: filepath.Join(s.Dir, "nope")}, on, now); err == nil {
		t.Fatal("no error for a missing state directory")
	}
}

// zoneIdle is the zone rule's status line on a node that holds no storm.
const zoneIdle = "zone rule: not holding (at most 10 failing services restarted at once; 0 restarts from here not yet seen healed)\n"
