package breaker

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/fsutil"
)

var z0 = time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)

// zoneSim is a zone of endpoints (each its own snapshot) over one engine
// state: the failing services, as every endpoint reads them.
type zoneSim struct {
	cfg      ZoneConfig
	eps      []ZoneSnapshot
	failing  map[string]Failing
	restarts []string
}

func newSim(endpoints int, cfg ZoneConfig) *zoneSim {
	return &zoneSim{cfg: cfg, eps: make([]ZoneSnapshot, endpoints), failing: map[string]Failing{}}
}

func (z *zoneSim) fail(key string, at time.Time) {
	z.failing[key] = Failing{Key: key, Fault: fmt.Sprint(at.Unix()), Since: at}
}

func (z *zoneSim) list() []Failing {
	var out []Failing
	for _, f := range z.failing {
		out = append(out, f)
	}
	return out
}

// ask runs the rule for key on endpoint ep at now.
func (z *zoneSim) ask(ep int, key string, now time.Time) ZoneVerdict {
	f := z.failing[key]
	st, v := ZoneStep(z.eps[ep], now, key, f.Fault, z.list(), z.cfg)
	z.eps[ep] = st
	if v.Allow {
		z.restarts = append(z.restarts, key)
	}
	return v
}

func svc(host, i int) string { return fmt.Sprintf("h%03d!w%03d", host, i) }

// Independent faults, one every 10 s on different hosts, each healed
// within 5 s of its HARD state: all healed, on one or two endpoints (the
// issue's 50 of 50; the node count held 30 of them).
func TestZoneIndependentFaultsAllHealed(t *testing.T) {
	for _, eps := range []int{1, 2} {
		z := newSim(eps, ZoneConfig{})
		for i := range 50 {
			now := z0.Add(time.Duration(i) * 10 * time.Second)
			k := svc(i, 0)
			z.fail(k, now)
			if v := z.ask(i%eps, k, now); !v.Allow || v.Held {
				t.Fatalf("%d endpoints, fault %d: %+v; want allowed", eps, i, v)
			}
			delete(z.failing, svc(i-1, 0)) // the previous one healed
		}
		if len(z.restarts) != 50 {
			t.Fatalf("%d endpoints: %d restarts, want 50", eps, len(z.restarts))
		}
	}
}

// A storm: many services turn HARD within seconds, handled by two
// endpoints alternately. At most Allowance restarts in the whole zone,
// whatever the spread over hosts, then every later one is held.
func TestZoneStormAllowance(t *testing.T) {
	cases := map[string]struct {
		n    int
		host func(i int) int
	}{
		"1000 on 10 hosts":         {1000, func(i int) int { return i % 10 }},
		"10 per host on 100 hosts": {1000, func(i int) int { return i / 10 }},
		"20 on one host":           {20, func(int) int { return 0 }},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			z := newSim(2, ZoneConfig{})
			held := 0
			for i := range c.n {
				now := z0.Add(time.Duration(i) * 50 * time.Millisecond)
				k := svc(c.host(i), i)
				z.fail(k, now)
				v := z.ask(i%2, k, now)
				if !v.Allow {
					held++
					if !v.Held {
						t.Fatalf("%s held: %+v", k, v)
					}
				}
			}
			if len(z.restarts) != 10 || held != c.n-10 {
				t.Fatalf("%d restarts, %d held; want 10 and %d", len(z.restarts), held, c.n-10)
			}
		})
	}
}

// The allowance itself: exactly Allowance at once are all restarted.
func TestZoneAtAllowanceAllRestarted(t *testing.T) {
	z := newSim(2, ZoneConfig{Allowance: 3})
	for i := range 3 {
		k := svc(0, i)
		z.fail(k, z0)
		if v := z.ask(i%2, k, z0.Add(time.Second)); !v.Allow {
			t.Fatalf("%s: %+v", k, v)
		}
	}
	k := svc(0, 3)
	z.fail(k, z0.Add(time.Second))
	if v := z.ask(0, k, z0.Add(2*time.Second)); v.Allow || !v.Held || v.Failing != 4 || v.Hosts["h000"] != 4 {
		t.Fatalf("the 4th: %+v; want held, 4 failing on h000", v)
	}
}

// After a storm the workers stay crashed: re-asked (as reevaluate does,
// oldest first, every few seconds), healing resumes by itself: one trial
// after Quiet without new failures, then more while trials heal, never
// more than Allowance unverified in the zone, until all are healed.
func TestZoneRecoverySlowStart(t *testing.T) {
	cfg := ZoneConfig{Allowance: 10, Quiet: 2 * time.Minute, Verify: 3 * time.Minute}
	z := newSim(1, cfg)
	const n = 120
	for i := range n {
		k := svc(i%10, i)
		z.fail(k, z0)
		z.ask(0, k, z0)
	}
	if len(z.restarts) != 10 {
		t.Fatalf("%d restarts in the storm, want 10", len(z.restarts))
	}
	// The storm's ten restarts did not heal (the cause was still there);
	// they count as failed once Verify passes.
	inflight := map[string]time.Time{}
	maxInflight, first := 0, time.Time{}
	widths := []int{}
	now := z0
	for step := 0; len(z.failing) > 10 && step < 10000; step++ {
		now = now.Add(5 * time.Second)
		// A restart heals 10 s later (the cause has cleared).
		for k, at := range inflight {
			if now.Sub(at) >= 10*time.Second {
				delete(z.failing, k)
				delete(inflight, k)
			}
		}
		keys := slices.SortedFunc(func(yield func(string) bool) {
			for k := range z.failing {
				if !yield(k) {
					return
				}
			}
		}, func(a, b string) int { return z.failing[a].Since.Compare(z.failing[b].Since)*2 + cmpStr(a, b) })
		before := len(z.restarts)
		for _, k := range keys {
			if slices.Contains(z.restarts[:10], k) {
				continue // the storm's own, failed: its fault is spent
			}
			if v := z.ask(0, k, now); v.Allow && !slices.Contains(z.restarts[:len(z.restarts)-1], k) {
				inflight[k] = now
				if first.IsZero() {
					first = now
				}
			}
		}
		if d := len(z.restarts) - before; d > 0 {
			widths = append(widths, d)
		}
		maxInflight = max(maxInflight, len(inflight))
	}
	if len(z.failing) != 10 {
		t.Fatalf("%d still failing after recovery; want only the storm's 10 failed restarts", len(z.failing))
	}
	if maxInflight > 10 {
		t.Fatalf("%d unverified restarts at once, want at most 10", maxInflight)
	}
	if widths[0] != 1 {
		t.Fatalf("restarts per look %v: want a single trial first", widths)
	}
	t.Logf("first trial %s after the storm; restarts per look %v; healed %d in %s", first.Sub(z0), widths[:min(8, len(widths))], n-10, now.Sub(z0))
}

// TestZoneHealedTrialNotNew: a trial seen healed is not the zone's newest
// failure. It asked here moments before (the rule counts such asks while
// the engine's view lags); counted, it held the next trial for Quiet, and
// with an allowance of 1 a storm healed one service per Quiet.
func TestZoneHealedTrialNotNew(t *testing.T) {
	cfg := ZoneConfig{Allowance: 1, Quiet: 2 * time.Minute, Verify: 3 * time.Minute}
	z := newSim(1, cfg)
	keys := []string{svc(1, 1), svc(1, 2), svc(2, 3)}
	for _, k := range keys {
		z.fail(k, z0)
	}
	for _, k := range keys {
		if v := z.ask(0, k, z0); v.Allow {
			t.Fatalf("%s restarted in a storm of 3 (allowance 1)", k)
		}
	}
	now := z0.Add(cfg.Quiet)
	if v := z.ask(0, keys[0], now); !v.Allow || !v.Trial {
		t.Fatalf("first trial after Quiet: %+v", v)
	}
	delete(z.failing, keys[0]) // the engine shows it healed
	now = now.Add(5 * time.Second)
	if v := z.ask(0, keys[1], now); !v.Allow {
		t.Fatalf("the next trial 5 s after the first healed: %+v, want allowed", v)
	}
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Trials that fail keep it held, back off, and name the failed trial.
func TestZoneFailedTrialStaysHeld(t *testing.T) {
	cfg := ZoneConfig{Allowance: 2, Quiet: time.Minute, Verify: 2 * time.Minute}
	z := newSim(1, cfg)
	for i := range 5 {
		k := svc(0, i)
		z.fail(k, z0)
		z.ask(0, k, z0)
	}
	// Before Quiet: no trial.
	if v := z.ask(0, svc(0, 2), z0.Add(30*time.Second)); v.Allow || !v.Held {
		t.Fatalf("before quiet: %+v", v)
	}
	// The storm's two restarts failed (Verify passed, still failing).
	now := z0.Add(3 * time.Minute)
	v := z.ask(0, svc(0, 2), now)
	if v.Allow || v.Fails != 1 || v.LastFail == "" || v.RetryAfter != time.Minute {
		t.Fatalf("after the failed restarts: %+v; want held, 1 fail, retry in 1m", v)
	}
	now = now.Add(time.Minute)
	if v := z.ask(0, svc(0, 2), now); !v.Allow || !v.Trial {
		t.Fatalf("after the back-off: %+v; want a trial", v)
	}
	if v := z.ask(0, svc(0, 3), now); v.Allow {
		t.Fatalf("a second one with a trial in flight: %+v", v)
	}
	now = now.Add(2 * time.Minute) // the trial did not heal
	v = z.ask(0, svc(0, 3), now)
	if v.Allow || v.Fails != 2 || v.LastFail != svc(0, 2) || v.RetryAfter != 2*time.Minute {
		t.Fatalf("after a failed trial: %+v; want held, back-off doubled", v)
	}
}

// A storm that clears by itself (the services recover) closes the rule.
func TestZoneClosesWhenFailuresFit(t *testing.T) {
	z := newSim(1, ZoneConfig{Allowance: 2})
	for i := range 4 {
		z.fail(svc(0, i), z0)
		z.ask(0, svc(0, i), z0)
	}
	if !z.eps[0].Held {
		t.Fatal("not held")
	}
	for i := range 4 {
		delete(z.failing, svc(0, i))
	}
	z.fail(svc(5, 0), z0.Add(time.Minute))
	if v := z.ask(0, svc(5, 0), z0.Add(time.Minute)); !v.Allow || v.Held {
		t.Fatalf("after the storm healed: %+v; want allowed, closed", v)
	}
}

// Failures older than Window are a human's, not part of a storm now.
func TestZoneWindow(t *testing.T) {
	z := newSim(1, ZoneConfig{Allowance: 1, Window: time.Hour})
	z.fail(svc(0, 0), z0)
	z.fail(svc(1, 0), z0.Add(2*time.Hour))
	if v := z.ask(0, svc(1, 0), z0.Add(2*time.Hour)); !v.Allow || v.Failing != 1 {
		t.Fatalf("%+v", v)
	}
}

// A restart that did not heal, asked again outside a storm, is let
// through (the agent answers from its record) and not counted again.
func TestZoneFailedAskedAgainOutsideStorm(t *testing.T) {
	z := newSim(1, ZoneConfig{Allowance: 5, Verify: time.Minute})
	k := svc(0, 0)
	z.fail(k, z0)
	z.ask(0, k, z0)
	v := z.ask(0, k, z0.Add(2*time.Minute))
	if !v.Allow || v.Held || len(z.eps[0].Admitted) != 0 || len(z.eps[0].Failed) != 1 {
		t.Fatalf("%+v, state %+v", v, z.eps[0])
	}
}

// A storm held by two endpoints, each holding half: one endpoint's
// reevaluate asks only for its own holds, and its slow start is not
// stalled by the other's older holds; it never has more than Allowance
// unverified restarts.
func TestZoneRecoveryPerEndpoint(t *testing.T) {
	cfg := ZoneConfig{Allowance: 4, Quiet: time.Minute, Verify: 3 * time.Minute}
	z := newSim(2, cfg)
	const n = 40
	for i := range n {
		k := svc(i%4, i)
		z.fail(k, z0.Add(time.Duration(i)*time.Millisecond))
		z.ask(i%2, k, z0.Add(time.Second))
	}
	if len(z.restarts) != 4 {
		t.Fatalf("%d restarts in the storm, want 4", len(z.restarts))
	}
	for _, k := range z.restarts {
		delete(z.failing, k) // the storm's 4 healed
	}
	ours := func() []string { // endpoint 1's holds, oldest first
		var out []string
		for i := range n {
			if k := svc(i%4, i); i%2 == 1 && z.failing[k].Key != "" {
				out = append(out, k)
			}
		}
		return out
	}
	now := z0.Add(2 * time.Minute)
	inflight := map[string]bool{}
	for step := 0; len(ours()) > 0 && step < 100; step++ {
		for k := range inflight {
			delete(z.failing, k)
			delete(inflight, k)
		}
		for _, k := range ours() {
			if v := z.ask(1, k, now); v.Allow {
				inflight[k] = true
			}
		}
		if len(inflight) > 4 {
			t.Fatalf("%d unverified restarts on one endpoint", len(inflight))
		}
		now = now.Add(10 * time.Second)
	}
	if left := len(ours()); left != 0 {
		t.Fatalf("%d of endpoint 1's holds still failing", left)
	}
}

// TestZoneStepViewPredates: a restart let through after the view was read
// is not in that view yet; it stays unverified (not "healed") until a view
// read after it leaves it out. With a view as old as the request, as
// ZoneStep takes it, the same restart looked healed at once.
func TestZoneStepViewPredates(t *testing.T) {
	cfg := ZoneConfig{Allowance: 2, Window: time.Hour, Quiet: 2 * time.Minute, Verify: 3 * time.Minute}
	t0 := time.Unix(1_800_000_000, 0)
	a := Failing{Key: "h!a", Fault: "1", Since: t0.Add(-10 * time.Second)}
	s, v := ZoneStepView(ZoneSnapshot{}, t0, t0.Add(-time.Second), "h!a", "1", []Failing{a}, cfg)
	if !v.Allow || len(s.Admitted) != 1 {
		t.Fatalf("first: %+v %+v", v, s)
	}
	// One second later, the same view (shared, read before the restart):
	// h!a is not in it, yet it is not healed.
	s2, _ := ZoneStepView(s, t0.Add(time.Second), t0.Add(-time.Second), "h!b", "2", nil, cfg)
	if len(s2.Admitted) != 2 {
		t.Fatalf("with the older view: admitted %+v, want h!a kept and h!b", s2.Admitted)
	}
	// A view read after the restart without h!a: healed.
	s3, _ := ZoneStepView(s2, t0.Add(3*time.Second), t0.Add(2*time.Second), "h!c", "3", []Failing{{Key: "h!b", Fault: "2", Since: t0}}, cfg)
	if slices.ContainsFunc(s3.Admitted, func(x Admission) bool { return x.Key == "h!a" }) {
		t.Fatalf("with a newer view: admitted %+v, want h!a seen healed", s3.Admitted)
	}
	// ZoneStep dates the view at the request: the older view's h!a
	// looked healed.
	s4, _ := ZoneStep(s, t0.Add(time.Second), "h!b", "2", nil, cfg)
	if slices.ContainsFunc(s4.Admitted, func(x Admission) bool { return x.Key == "h!a" }) {
		t.Fatalf("ZoneStep: admitted %+v", s4.Admitted)
	}
}

// TestZoneVerifyOnTheView: a restart is judged failed once a view read
// Verify after it still shows it failing, not once Verify passed on the
// clock: a shared view seconds old cannot know whether it healed since.
func TestZoneVerifyOnTheView(t *testing.T) {
	cfg := ZoneConfig{Allowance: 2, Window: time.Hour, Quiet: 2 * time.Minute, Verify: 3 * time.Minute}
	t0 := time.Unix(1_800_000_000, 0)
	a := Failing{Key: "h!a", Fault: "1", Since: t0.Add(-10 * time.Second)}
	s, v := ZoneStep(ZoneSnapshot{}, t0, "h!a", "1", []Failing{a}, cfg)
	if !v.Allow || len(s.Admitted) != 1 {
		t.Fatalf("first: %+v %+v", v, s)
	}
	now := t0.Add(cfg.Verify + 5*time.Second)
	for _, tc := range []struct {
		viewAt time.Time
		failed bool
	}{{now.Add(-10 * time.Second), false}, {t0.Add(cfg.Verify), true}, {now, true}} {
		s2, _ := ZoneStepView(s, now, tc.viewAt, "h!b", "2", []Failing{a}, cfg)
		if got := len(s2.Failed) == 1; got != tc.failed {
			t.Errorf("view read %v after the restart, Verify %v: failed=%v, want %v (admitted %+v)",
				tc.viewAt.Sub(t0), cfg.Verify, got, tc.failed, s2.Admitted)
		}
	}
}

// TestZoneRankWholeSeconds: failures inside one second rank by name, as
// reevaluate asks its holds (its records keep whole seconds), whatever
// fractions Icinga's last_state_change has.
func TestZoneRankWholeSeconds(t *testing.T) {
	cfg := ZoneConfig{Allowance: 1, Window: time.Hour, Quiet: time.Minute, Verify: 3 * time.Minute}
	t0 := time.Unix(1_800_000_000, 0)
	failing := []Failing{
		{Key: "h!a", Fault: "1", Since: t0.Add(900 * time.Millisecond)},
		{Key: "h!b", Fault: "2", Since: t0.Add(100 * time.Millisecond)},
	}
	_, v := ZoneStep(ZoneSnapshot{}, t0.Add(10*time.Second), "h!a", "1", failing, cfg)
	if v.Rank != 1 {
		t.Fatalf("h!a ranked %d, want 1 (same second, first by name)", v.Rank)
	}
}

// TestZoneHoldAgent: the holds of a host whose agent's breaker is open
// leave this node's ranking (the trials go to other hosts' holds) until
// asked again; the agent's hold is kept, replaced whole, and forgotten
// once its time passed.
func TestZoneHoldAgent(t *testing.T) {
	d, err := fsutil.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cfg := ZoneConfig{Allowance: 1, Window: time.Hour, Quiet: time.Minute, Verify: 3 * time.Minute}
	zs := ZoneStore{Dir: d, Name: "zone", Config: cfg, Poll: time.Millisecond}
	ctx := t.Context()
	failing := []Failing{{Key: "a!1", Fault: "1", Since: z0}, {Key: "a!2", Fault: "2", Since: z0}, {Key: "b!1", Fault: "3", Since: z0.Add(time.Second)}}
	for _, f := range failing {
		if v, err := zs.Admit(ctx, z0.Add(2*time.Second), time.Time{}, f.Key, f.Fault, failing, false); err != nil || v.Allow {
			t.Fatalf("%s: %+v %v, want held (a storm of 3)", f.Key, v, err)
		}
	}
	later := z0.Add(2 * time.Minute)
	if v, _ := zs.Admit(ctx, later, time.Time{}, "b!1", "3", failing, true); v.Rank != 3 || v.Allow {
		t.Fatalf("b!1 before: %+v, want ranked 3 behind a's holds, held", v)
	}
	h := AgentHold{Agent: "A", Until: later.Add(time.Minute), Quiet: time.Minute, Trial: "a!0"}
	if err := zs.HoldAgent(ctx, later, h, "a!1", "a!2"); err != nil {
		t.Fatal(err)
	}
	if v, _ := zs.Admit(ctx, later, time.Time{}, "b!1", "3", failing, true); v.Rank != 1 || !v.Allow {
		t.Fatalf("b!1 after: %+v, want ranked 1, a trial", v)
	}
	if v, _ := zs.Admit(ctx, later, time.Time{}, "a!2", "2", failing, true); v.Rank != 1 {
		t.Fatalf("a!2 asked again: %+v, want ranked again (1: the oldest)", v)
	}
	h.Trial = ""
	if err := zs.HoldAgent(ctx, later, h); err != nil {
		t.Fatal(err)
	}
	s, err := zs.Current()
	if err != nil {
		t.Fatal(err)
	}
	if got := s.AgentsHeld(later); len(got) != 1 || got["A"] != h {
		t.Fatalf("agents held %+v, want %+v", got, h)
	}
	if got := s.AgentsHeld(h.Until); len(got) != 0 {
		t.Fatalf("agents held at their time %v, want none", got)
	}
	if err := zs.HoldAgent(ctx, h.Until, AgentHold{Agent: "B", Until: h.Until.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if s, _ := zs.Current(); len(s.Agents) != 1 || s.Agents[0].Agent != "B" {
		t.Fatalf("agents kept %+v, want only B (A's time passed)", s.Agents)
	}
}

// TestZoneNewStormWhileHeld: a held storm whose window healed trials
// widened meets a new storm: slow start begins again, and nothing is
// restarted before the zone is quiet again, whether the first storm
// healed whole (its rule, asked by nothing since, kept its wide window:
// the scale lab's run 11) or a few of it still fail. A straggler does not
// restart it: the window stays wide.
func TestZoneNewStormWhileHeld(t *testing.T) {
	cfg := ZoneConfig{Allowance: 3, Window: time.Hour, Quiet: 2 * time.Minute, Verify: 3 * time.Minute}
	// widened is a storm of 20 on host 1, recovered until a look
	// restarts the full window.
	widened := func(t *testing.T) (*zoneSim, time.Time) {
		z := newSim(1, cfg)
		for i := range 20 {
			z.fail(svc(1, i), z0)
		}
		for i := range 20 {
			if v := z.ask(0, svc(1, i), z0); v.Allow {
				t.Fatalf("storm 1, %s: let through, want held (20 failing, allowance 3)", svc(1, i))
			}
		}
		now, perLook := z0.Add(2*time.Minute), 0
		for look := 0; look < 10 && perLook < cfg.Allowance; look++ {
			now = now.Add(5 * time.Second)
			for _, k := range z.restarts {
				delete(z.failing, k)
			}
			before := len(z.restarts)
			for i := range 20 {
				if _, ok := z.failing[svc(1, i)]; ok {
					z.ask(0, svc(1, i), now)
				}
			}
			perLook = len(z.restarts) - before
		}
		if perLook != cfg.Allowance {
			t.Fatalf("recovery: %d restarts in the last look, want %d (the window widened)", perLook, cfg.Allowance)
		}
		return z, now
	}
	for _, remain := range []int{0, 2} {
		t.Run(fmt.Sprintf("%d of storm 1 failing", remain), func(t *testing.T) {
			z, now := widened(t)
			// Storm 1 heals (the rest by another endpoint's restarts:
			// nothing asks here) but remain, which another endpoint
			// holds; storm 2 begins.
			for i := range 20 {
				delete(z.failing, svc(1, i))
			}
			for i := range remain {
				z.fail(svc(4, i), z0)
			}
			now = now.Add(time.Minute)
			t2, before := now, len(z.restarts)
			for i := range 20 {
				z.fail(svc(2, i), t2)
			}
			// Healed whole, storm 1 is over: storm 2 is held as a storm of
			// its own; else storm 1's hold goes on, at a window of 1.
			v := z.ask(0, svc(2, 0), now)
			if want := map[bool]time.Time{true: t2, false: z0}[remain == 0]; v.Allow || !v.Since.Equal(want) || v.Window != 1 {
				t.Fatalf("storm 2's first ask: %+v, want held since %s at a window of 1", v, want)
			}
			for ; now.Before(t2.Add(cfg.Quiet)); now = now.Add(5 * time.Second) {
				for i := range 20 {
					z.ask(0, svc(2, i), now)
				}
			}
			if got := z.restarts[before:]; len(got) != 0 {
				t.Fatalf("storm 2: %d restarted within Quiet of its failures (%v), want none", len(got), got)
			}
			for i := range 20 {
				z.ask(0, svc(2, i), now)
			}
			if got := z.restarts[before:]; len(got) != 1 {
				t.Fatalf("storm 2 once quiet: %d restarted (%v), want 1 trial (slow start again)", len(got), got)
			}
		})
	}
	t.Run("a straggler", func(t *testing.T) {
		z, now := widened(t)
		now = now.Add(5 * time.Second)
		for _, k := range z.restarts {
			delete(z.failing, k)
		}
		z.fail(svc(3, 0), now)
		before := len(z.restarts)
		for i := range 20 {
			if _, ok := z.failing[svc(1, i)]; ok {
				z.ask(0, svc(1, i), now)
			}
		}
		z.ask(0, svc(3, 0), now)
		if got := len(z.restarts) - before; got != cfg.Allowance {
			t.Fatalf("a look with one new failure: %d restarted, want %d (the window stays wide)", got, cfg.Allowance)
		}
	})
}
