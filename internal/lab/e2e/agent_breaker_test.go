package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/testutil"
)

// TestAgentBreakerMinCount: at a real worker_listener, the host breaker's
// minimum count. A host's three workers failing together are three
// restarts (as shipped: min_count 5); the same agent with min_count 1 (the
// old "half of 3 services") holds the second, so the rig can hold; on a
// host of 12 services the breaker still opens at the 7th (more than half,
// more than 5).
func TestAgentBreakerMinCount(t *testing.T) {
	t.Parallel()
	bins := map[string]string{}
	for _, name := range []string{"worker_listener", "handle_worker"} {
		bins[name] = testutil.Binary(t, name)
	}
	cases := []struct {
		name     string
		services int
		breaker  *rig.Breaker
		asks     int
		wantRun  int
	}{
		{"3 services, shipped", 3, nil, 3, 3},
		{"3 services, min_count 1", 3, &rig.Breaker{MinCount: 1}, 3, 1},
		{"12 services, shipped", 12, nil, 7, 6},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			port, err := rig.FreePort()
			if err != nil {
				t.Fatal(err)
			}
			var svcs []rig.Service
			for i := range c.services {
				svcs = append(svcs, rig.Service{Name: fmt.Sprint("w", i), Actions: map[string]rig.Action{"restart": {Argv: []string{"/bin/true"}}}})
			}
			audit := filepath.Join(dir, "audit.log")
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			files, err := rig.Prepare(ctx, rig.Kit{Dir: filepath.Join(dir, "agent"), Agent: "worker1", Issue: bins["handle_worker"],
				Config: rig.ListenerConfig{Listen: "127.0.0.1:" + strconv.Itoa(port), Allow: rig.Loopback, AuditLog: audit,
					Budget: &rig.Budget{Max: 100, Window: "1h", MinGap: "0s"}, Breaker: c.breaker, Services: svcs}})
			if err != nil {
				t.Fatal(err)
			}
			ln, err := rig.StartListener(ctx, rig.Serve{Bin: bins["worker_listener"], Config: files.Config, Log: filepath.Join(dir, "listener.log"),
				Ping: &files.Fleet, PingAgent: "worker1"})
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Stop(10 * time.Second)
			// The first three together, as workers dying at once; the
			// rest one by one after them.
			send := func(i int) {
				cmd := exec.CommandContext(ctx, bins["handle_worker"], "send", "restart", "--host", "127.0.0.1", "--port", strconv.Itoa(port),
					"--agent", "worker1", "--target", fmt.Sprint("w", i), "--key-file", files.FleetFile, "--state-dir", t.TempDir(),
					"--hostname", "h", "--service", fmt.Sprint("w", i))
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Logf("ask %d: %v: %s", i, err, out) // the audit log says what the agent did
				}
			}
			var wg sync.WaitGroup
			for i := range min(3, c.asks) {
				wg.Go(func() { send(i) })
			}
			wg.Wait()
			for i := 3; i < c.asks; i++ {
				send(i)
			}
			// Every ask's audit line, read until all are there (a loaded
			// machine may write the last after its answer was read).
			var recs []rig.AuditRecord
			run, held := 0, 0
			for end := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				if recs, err = rig.ReadAudit(audit); err != nil {
					t.Fatal(err)
				}
				run, held = 0, 0
				for _, r := range recs {
					switch {
					case r.Verb != "restart":
					case r.Origin == "run":
						run++
					case r.Outcome == "breaker":
						held++
					}
				}
				if run+held >= c.asks || time.Now().After(end) {
					break
				}
			}
			if run != c.wantRun || held != c.asks-c.wantRun {
				t.Fatalf("audit: %d run, %d held by the breaker; want %d and %d\n%v", run, held, c.wantRun, c.asks-c.wantRun, recs)
			}
			t.Logf("%d asked: %d run, %d held by the host's breaker", c.asks, run, held)
		})
	}
}
