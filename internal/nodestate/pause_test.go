package nodestate_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/nodestate"
)

func pauseStore(t *testing.T) nodestate.Store {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return nodestate.Store{Dir: dir}
}

func setPause(t *testing.T, s nodestate.Store, now time.Time, p nodestate.Pause, remove bool) int {
	t.Helper()
	n, err := s.SetPause(context.Background(), now, p, remove)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPausedFor: a pause covers its scope only, and the most specific
// pause in force is the one that applies.
func TestPausedFor(t *testing.T) {
	node := nodestate.Pause{Reason: "node"}
	web1 := nodestate.Pause{Host: "web1", Reason: "host"}
	worker := nodestate.Pause{Host: "web1", Service: "Worker", Reason: "service"}
	other := nodestate.Pause{Host: "web1", Service: "Other", Reason: "other service"}
	web10 := nodestate.Pause{Host: "web10", Reason: "web10"}
	tests := []struct {
		name          string
		ps            []nodestate.Pause
		host, service string
		want          string // the Reason of the pause that applies, "" none
	}{
		{"none", nil, "web1", "Worker", ""},
		{"node", []nodestate.Pause{node}, "web2", "Anything", "node"},
		{"host", []nodestate.Pause{web1}, "web1", "Worker", "host"},
		{"host, other host", []nodestate.Pause{web1}, "web2", "Worker", ""},
		{"host is not a prefix", []nodestate.Pause{web10}, "web1", "Worker", ""},
		{"service", []nodestate.Pause{worker}, "web1", "Worker", "service"},
		{"service, other service", []nodestate.Pause{worker}, "web1", "Other", ""},
		{"service, same name on another host", []nodestate.Pause{worker}, "web2", "Worker", ""},
		{"host beats node", []nodestate.Pause{node, web1}, "web1", "Worker", "host"},
		{"host beats node, either order", []nodestate.Pause{web1, node}, "web1", "Worker", "host"},
		{"service beats host and node", []nodestate.Pause{node, worker, web1}, "web1", "Worker", "service"},
		{"node still covers the rest", []nodestate.Pause{node, worker, web1}, "web2", "Worker", "node"},
		{"host covers its other services", []nodestate.Pause{worker, web1}, "web1", "Third", "host"},
		{"only the other service", []nodestate.Pause{other}, "web1", "Worker", ""},
	}
	for _, tt := range tests {
		got := nodestate.PausedFor(tt.ps, tt.host, tt.service)
		reason := ""
		if got != nil {
			reason = got.Reason
		}
		if reason != tt.want {
			t.Errorf("%s: %s/%s paused by %q, want %q", tt.name, tt.host, tt.service, reason, tt.want)
		}
	}
	for p, scope := range map[nodestate.Pause]string{node: "every service on this node", web1: "host web1", worker: "web1/Worker"} {
		if p.Scope() != scope {
			t.Errorf("%+v: scope %q, want %q", p, p.Scope(), scope)
		}
	}
}

// TestPauseStore: pauses are kept in the state directory, one per scope
// (setting a scope again replaces it); they end by themselves at Until;
// resume removes its own scope only and says how many it removed.
func TestPauseStore(t *testing.T) {
	s := pauseStore(t)
	now := time.Date(2025, 11, 25, 10, 0, 0, 0, time.UTC)
	if ps, err := s.Pauses(now); err != nil || len(ps) != 0 {
		t.Fatalf("no file: %+v, %v", ps, err)
	}
	at := func(d time.Duration) time.Time { return now.Add(d) }
	if n := setPause(t, s, now, nodestate.Pause{Reason: "node", By: "alice", At: now, Until: at(time.Hour)}, false); n != 0 {
		t.Fatalf("a new pause replaced %d", n)
	}
	setPause(t, s, now, nodestate.Pause{Host: "web1", Reason: "host", By: "bob", At: now, Until: at(10 * time.Minute)}, false)
	setPause(t, s, now, nodestate.Pause{Host: "web1", Service: "Worker", Reason: "svc", By: "bob", At: now, Until: at(30 * time.Minute)}, false)
	// The same scope again: replaced, not added.
	if n := setPause(t, s, now, nodestate.Pause{Host: "web1", Reason: "host, longer", By: "bob", At: now, Until: at(20 * time.Minute)}, false); n != 1 {
		t.Fatalf("replacing a host pause: %d replaced, want 1", n)
	}
	reasons := func(at time.Time) []string {
		t.Helper()
		ps, err := s.Pauses(at)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range ps {
			out = append(out, p.Reason)
		}
		return out
	}
	for _, tc := range []struct {
		at   time.Duration
		want []string
	}{
		{0, []string{"node", "svc", "host, longer"}},
		{19 * time.Minute, []string{"node", "svc", "host, longer"}},
		{20 * time.Minute, []string{"node", "svc"}}, // Until itself is not in force
		{45 * time.Minute, []string{"node"}},
		{time.Hour, nil},
	} {
		if got := reasons(at(tc.at)); !sameStrings(got, tc.want) {
			t.Errorf("at +%s: pauses %q, want %q", tc.at, got, tc.want)
		}
	}
	ps, _ := s.Pauses(now)
	if p := nodestate.PausedFor(ps, "web1", "Worker"); p == nil || p.Reason != "svc" || p.By != "bob" || !p.Until.Equal(at(30*time.Minute)) {
		t.Fatalf("web1/Worker: %+v", p)
	}

	// Resume of a scope that has no pause changes nothing.
	if n := setPause(t, s, now, nodestate.Pause{Host: "web2"}, true); n != 0 {
		t.Fatalf("resume web2: %d removed", n)
	}
	if n := setPause(t, s, now, nodestate.Pause{Host: "web1", Service: "Other"}, true); n != 0 {
		t.Fatalf("resume web1/Other: %d removed", n)
	}
	if got := reasons(now); len(got) != 3 {
		t.Fatalf("after resuming nothing: %q", got)
	}
	// Resume of the host's pause leaves the service's and the node's.
	if n := setPause(t, s, now, nodestate.Pause{Host: "web1"}, true); n != 1 {
		t.Fatalf("resume web1: %d removed", n)
	}
	if got := reasons(now); !sameStrings(got, []string{"node", "svc"}) {
		t.Fatalf("after resuming web1: %q", got)
	}
	// An expired pause is not resumed (it is over) and is dropped.
	if n := setPause(t, s, at(2*time.Hour), nodestate.Pause{}, true); n != 0 {
		t.Fatalf("resume of the expired node pause: %d removed", n)
	}
	if got := reasons(now); len(got) != 0 {
		t.Fatalf("expired pauses were kept in the file: %q", got)
	}
	fi, err := os.Stat(filepath.Join(s.Dir, "pauses.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("pauses file: %v, %v", fi, err)
	}
}

// TestPauseStoreCorrupt: an unreadable pauses file is reported (the
// handler logs it and heals), and a new pause is refused until it is
// fixed or removed.
func TestPauseStoreCorrupt(t *testing.T) {
	now := time.Now()
	for name, content := range map[string]string{
		"not json":        "{",
		"unknown field":   `{"version":1,"pauses":[],"extra":1}`,
		"another version": `{"version":2,"pauses":[]}`,
	} {
		s := pauseStore(t)
		if err := os.WriteFile(filepath.Join(s.Dir, "pauses.json"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Pauses(now); !errors.Is(err, nodestate.ErrStateCorrupt) {
			t.Fatalf("%s: %v", name, err)
		}
		// A new pause is refused rather than written over it: the file
		// may hold the humans' pauses. Removed, the next pause goes in.
		if _, err := s.SetPause(context.Background(), now, nodestate.Pause{Host: "web1", Reason: "r", Until: now.Add(time.Hour)}, false); !errors.Is(err, nodestate.ErrStateCorrupt) {
			t.Fatalf("%s: a pause over a corrupt file: %v", name, err)
		}
		if b, _ := os.ReadFile(filepath.Join(s.Dir, "pauses.json")); string(b) != content {
			t.Fatalf("%s: the corrupt file was changed to %q", name, b)
		}
		if err := os.Remove(filepath.Join(s.Dir, "pauses.json")); err != nil {
			t.Fatal(err)
		}
		setPause(t, s, now, nodestate.Pause{Host: "web1", Reason: "r", Until: now.Add(time.Hour)}, false)
		if ps, err := s.Pauses(now); err != nil || len(ps) != 1 || ps[0].Host != "web1" {
			t.Fatalf("%s, after a new pause: %+v, %v", name, ps, err)
		}
	}
}

// sameStrings is slices.Equal (handler_test.go's slices helper shadows the package).
func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
