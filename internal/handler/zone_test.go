package handler_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/breaker"
	"github.com/selfheal/selfheal/internal/handler"
	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/rig/rigtest"
	"github.com/selfheal/selfheal/internal/nodestate"
)

// zoneSvc is a HARD CRITICAL service running the shipped event handler,
// turned CRITICAL at at, Nagios problem id fault.
func zoneSvc(host, svc, fault string, at time.Time, extra ...string) string {
	return svcStatus(host, svc, append([]string{"current_state=2", "state_type=1", "current_problem_id=" + fault,
		"scheduled_downtime_depth=0", "problem_has_been_acknowledged=0", "event_handler=selfheal-handle-worker!x",
		fmt.Sprintf("last_state_change=%d", at.Unix())}, extra...)...)
}

func writeStatus(t *testing.T, path string, blocks ...string) {
	t.Helper()
	// No info block: the zone rule takes the view as of its read (a
	// created= time would date it).
	in := strings.Join(blocks, "\n")
	if err := os.WriteFile(path, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRunZoneRule: the zone rule read from status.dat (allowance 2).
// Services of other event handlers, on DOWN hosts, acknowledged or in
// downtime are not counted. Two failing services are restarted; when a
// third fails too, it is held with one comment naming the zone's count and the
// suspected host; once the two are seen healed, the third is restarted
// by the next ask (as reevaluate asks). In a second storm the restarts do
// not heal: after Verify the held ones say a human must look.
func TestRunZoneRule(t *testing.T) {
	l := rigtest.StartHandlerListener(t, bigBudget)
	e := newEnv(t, l)
	e.cfg.Facts = handler.NoFacts
	status := filepath.Join(t.TempDir(), "status.dat")
	zone := breaker.ZoneConfig{Allowance: 2, Window: time.Hour, Quiet: 2 * time.Minute, Verify: 3 * time.Minute}
	e.cfg.Judgment = handler.Judgment{Zone: zone, StatusFile: status}
	t0 := e.clk.Now()
	noise := []string{
		svcStatus("web9", "disk", "current_state=2", "state_type=1", "event_handler=other", fmt.Sprintf("last_state_change=%d", t0.Unix()-50)),
		zoneSvc("down1", "W", "7", t0.Add(-50*time.Second)), hostStatus("down1", "current_state=1"),
		zoneSvc("web8", "acked", "8", t0.Add(-50*time.Second), "problem_has_been_acknowledged=1"),
		zoneSvc("web8", "dt", "9", t0.Add(-50*time.Second), "scheduled_downtime_depth=1"),
	}
	a, b, c := zoneSvc("web1", "A", "1", t0.Add(-3*time.Second)), zoneSvc("web1", "B", "2", t0.Add(-2*time.Second)),
		zoneSvc("web2", "C", "3", t0.Add(-time.Second))
	svc := func(host, service, fault string) handler.Result {
		t.Helper()
		e.cfg.HostName, e.cfg.ServiceDesc = host, service
		return e.run("CRITICAL", "HARD", 3, fault)
	}
	writeStatus(t, status, append(noise, a)...)
	expect(t, svc("web1", "A", "1"), 0, "ok in")
	writeStatus(t, status, append(noise, a, b)...)
	expect(t, svc("web1", "B", "2"), 0, "ok in")
	e.commands()
	writeStatus(t, status, append(noise, a, b, c)...)
	r := svc("web2", "C", "3")
	want := "auto-restart held back (mass failure): 3 services of this zone turned CRITICAL within 1h0m0s and are still failing (more than the 2 restarted at once): suspect host web1 (2 of them) or a dependency it shares; healing resumes by itself: one trial restart once no new failure arrived for 2m0s, more while trials heal (at most 2 unverified)"
	expect(t, r, 1, want)
	if got := l.Actions(t); got != 2 {
		t.Fatalf("%d actions, want 2", got)
	}
	if c := e.commands(); !strings.Contains(c, "ADD_SVC_COMMENT;web2;C;0;handle_worker;"+want) {
		t.Fatalf("command file %q", c)
	}
	// Asked again (a volatile service): held, not commented again.
	e.clk.Advance(time.Second)
	expect(t, svc("web2", "C", "3"), 1, "(mass failure)")
	if c := e.commands(); c != "" {
		t.Fatalf("commented again: %q", c)
	}
	// A and B healed: C is let through at its next ask.
	writeStatus(t, status, append(noise, c)...)
	e.clk.Advance(5 * time.Second)
	expect(t, svc("web2", "C", "3"), 0, "ok in")
	if got := l.Actions(t); got != 3 {
		t.Fatalf("%d actions, want 3", got)
	}

	// A storm whose restarts do not heal (a fresh node).
	e = newEnv(t, l)
	e.cfg.Facts = handler.NoFacts
	e.cfg.Judgment = handler.Judgment{Zone: zone, StatusFile: status}
	t1 := e.clk.Now()
	var storm []string
	for i := range 4 {
		storm = append(storm, zoneSvc("db", fmt.Sprint("S", i), fmt.Sprint(20+i), t1.Add(time.Duration(i-4)*time.Second)))
	}
	for i := range 4 {
		writeStatus(t, status, storm[:i+1]...)
		code := 0
		if i >= 2 {
			code = 1
		}
		expect(t, svc("db", fmt.Sprint("S", i), fmt.Sprint(20+i)), code, "")
	}
	if got := l.Actions(t); got != 5 {
		t.Fatalf("%d actions, want 5", got)
	}
	e.clk.Advance(3 * time.Minute)
	r = svc("db", "S2", "22")
	expect(t, r, 1, "auto-restart held back (mass failure, trials failing): 4 services")
	if !strings.Contains(r.Hold.Text, "the trial restart of db/S1 did not heal it within 3m0s: a human must look; next trial in 2m0s") {
		t.Fatalf("hold %q", r.Hold.Text)
	}
	if c := e.commands(); !strings.Contains(c, "trials failing") {
		t.Fatalf("no new comment for failing trials: %q", c)
	}
	st, err := handler.Status(context.Background(), nodestate.Store{Dir: e.state}, e.cfg.Judgment, e.clk.Now())
	if err != nil || !strings.Contains(st, "zone rule: holding a storm since ") ||
		!strings.Contains(st, "1 trial round(s) failed (last db/S1): a human must look; next trial in 2m0s") {
		t.Fatalf("status %q, %v", st, err)
	}
	// After the back-off, one trial.
	e.clk.Advance(2 * time.Minute)
	expect(t, svc("db", "S2", "22"), 0, "ok in")
	if m := e.lastLog(); m["note"] != "zone rule: trial restart (1 at once)" {
		t.Fatalf("log %v", m)
	}
	expect(t, svc("db", "S3", "23"), 1, "trials failing")
	if got := l.Actions(t); got != 6 {
		t.Fatalf("%d actions, want 6", got)
	}
}

// TestRunZoneUnreadable: a status file that cannot be read leaves the
// node's own count to decide, and says so.
func TestRunZoneUnreadable(t *testing.T) {
	l := rigtest.StartHandlerListener(t, bigBudget)
	e := newEnv(t, l)
	e.cfg.Facts = handler.NoFacts
	e.cfg.Judgment = handler.Judgment{Zone: breaker.ZoneConfig{Allowance: 1}, StatusFile: filepath.Join(t.TempDir(), "missing"),
		Breaker: breaker.Config{Threshold: 1}}
	expect(t, e.run("CRITICAL", "HARD", 3, "1"), 0, "ok in")
	if m := e.lastLog(); !strings.HasPrefix(fmt.Sprint(m["note"]), "zone rule unusable, the node's count decides") {
		t.Fatalf("log %v", m)
	}
	e.cfg.ServiceDesc = "Other"
	expect(t, e.run("CRITICAL", "HARD", 3, "2"), 1, "(mass failure): 2 services needed a restart")
}

// TestReevaluateStormLooks: a held storm of 7 (allowance 2) recovers in
// one reevaluate run: it looks again while its trials are in flight, the
// window widening as the engine shows them healed (1, 2, 2, ...), never
// more than 2 restarts the engine has not shown healed. With the engine
// not showing any trial healed, the run asks no more after its trial.
func TestReevaluateStormLooks(t *testing.T) {
	for _, heals := range []bool{true, false} {
		t.Run(fmt.Sprint("heals=", heals), func(t *testing.T) {
			l := rigtest.StartHandlerListener(t, bigBudget)
			e := newEnv(t, l)
			e.cfg.Facts = handler.NoFacts
			status := filepath.Join(t.TempDir(), "status.dat")
			zone := breaker.ZoneConfig{Allowance: 2, Window: time.Hour, Quiet: 2 * time.Minute, Verify: 3 * time.Minute}
			e.cfg.Judgment = handler.Judgment{Zone: zone, StatusFile: status}
			t0 := e.clk.Now()
			const n = 7
			name := func(i int) string { return fmt.Sprint("S", i) }
			failing := map[int]bool{}
			write := func() {
				var blocks []string
				for i := range n {
					if failing[i] {
						blocks = append(blocks, zoneSvc("db", name(i), fmt.Sprint(30+i), t0.Add(time.Duration(i-n)*time.Second)))
					}
				}
				writeStatus(t, status, append(blocks, hostStatus("db", hostUp))...)
			}
			for i := range n {
				failing[i] = true
			}
			write()
			for i := range n {
				e.cfg.HostName, e.cfg.ServiceDesc = "db", name(i)
				expect(t, e.run("CRITICAL", "HARD", 3, fmt.Sprint(30+i)), 1, "auto-restart held back (mass failure)")
			}
			if got := l.Actions(t); got != 0 {
				t.Fatalf("%d actions while held, want 0", got)
			}
			e.clk.Advance(3 * time.Minute) // quiet: the first trial may go
			healed := func() []int {
				var out []int
				for i := range n {
					rec, err := nodestate.Store{Dir: e.state}.Read("db", name(i))
					if err == nil && rec != nil && rec.Result == "healed" {
						out = append(out, i)
					}
				}
				return out
			}
			looks, most := 0, 0
			deps := e.deps()
			deps.Sleep = func(ctx context.Context, d time.Duration) error {
				// The engine between two looks: restarted services OK
				// (or still failing), the rule's in-flight restarts
				// counted.
				looks++
				inflight := 0
				for _, i := range healed() {
					if failing[i] {
						inflight++
					}
					if heals {
						failing[i] = false
					}
				}
				most = max(most, inflight)
				write()
				e.clk.Advance(d)
				return nil
			}
			var blocks []string
			for i := range n {
				blocks = append(blocks, zoneSvc("db", name(i), fmt.Sprint(30+i), t0.Add(time.Duration(i-n)*time.Second)))
			}
			sd := statusDat(t, e.clk.Now(), append(blocks, hostStatus("db", hostUp))...)
			r := handler.Reevaluate(context.Background(), handler.ReevalConfig{
				StateDir: e.state, Status: sd, StatusAge: 5 * time.Minute, Key: e.l.Key, Judgment: e.cfg.Judgment,
				CommandFile: e.fifo, Deadline: 50 * time.Second, PerRequest: 18 * time.Second,
			}, deps)
			got := len(healed())
			if heals {
				if got != n || l.Actions(t) != n || r.Code != 0 {
					t.Fatalf("%d healed, %d actions, want %d; %d looks: %s", got, l.Actions(t), n, looks, r.Line)
				}
				if most > zone.Allowance || most == 0 {
					t.Fatalf("%d restarts in flight at once, want 1-%d", most, zone.Allowance)
				}
				return
			}
			// No trial ever seen healed: one trial, then the looks ask
			// nothing more (the rule holds the rest) until the deadline.
			if got != 1 || l.Actions(t) != 1 || looks == 0 {
				t.Fatalf("%d healed, %d actions, %d looks; want 1 trial and some looks: %s", got, l.Actions(t), looks, r.Line)
			}
		})
	}
}

// TestReevaluatePastAgentBreaker: a held storm whose oldest service's
// agent holds it (that host's breaker) still recovers: the hold is the
// agent's ("agent-breaker"), not the zone rule's, and reevaluate's walk in
// rank order goes past it to the services of another agent, one trial at
// a time. The scale lab's recovery stalled there when both holds were
// named "breaker"; a record of that old form waits for its own time and
// stalls nothing either. The same agent first shows it restarting.
func TestReevaluatePastAgentBreaker(t *testing.T) {
	// Agent a's breaker: quiet 10 s of its own time, which its trial
	// below waits out.
	la := rigtest.StartHandlerListener(t, rigtest.HandlerOptions{Budget: bigBudget.Budget, Breaker: &rig.Breaker{MinCount: 1, Fraction: 0.2, Quiet: "10s"}})
	lb := rigtest.StartHandlerListener(t, rigtest.HandlerOptions{Budget: bigBudget.Budget, Agent: "worker2", Fleet: la.KeyFile})
	e := newEnv(t, la)
	e.cfg.Facts = handler.NoFacts
	status := filepath.Join(t.TempDir(), "status.dat")
	zone := breaker.ZoneConfig{Allowance: 2, Window: time.Hour, Quiet: 2 * time.Minute, Verify: 3 * time.Minute}
	e.cfg.Judgment = handler.Judgment{Zone: zone, StatusFile: status}
	onA := e.cfg.Conn
	onB := handler.Conn{Address: lb.Host, Port: lb.Port, Agent: lb.Agent, Target: "demo", Key: la.Key}
	t0 := e.clk.Now()

	// Agent a restarts one fault (its first service within its window).
	writeStatus(t, status, zoneSvc("a", "pre", "1", t0.Add(-time.Second)), hostStatus("a", hostUp))
	e.cfg.HostName, e.cfg.ServiceDesc = "a", "pre"
	expect(t, e.run("CRITICAL", "HARD", 3, "1"), 0, "ok in")
	if got := la.Actions(t); got != 1 {
		t.Fatalf("agent a ran %d restarts, want 1", got)
	}
	e.clk.Advance(5 * time.Second) // past the shared view of the zone

	// A storm of 4 (allowance 2): S0 on agent a (target "failing", its
	// breaker's second service), S3 on a too, S1 and S2 on agent b.
	type svc struct {
		host, name, fault string
		conn              handler.Conn
	}
	storm := []svc{{"a", "S0", "10", onA}, {"a", "S3", "13", onA}, {"b", "S1", "11", onB}, {"b", "S2", "12", onB}}
	storm[0].conn.Target = "failing"
	failing := map[string]bool{"S0": true, "S3": true, "S1": true, "S2": true}
	write := func() {
		blocks := []string{hostStatus("a", hostUp), hostStatus("b", hostUp)}
		for i, s := range storm {
			if failing[s.name] {
				blocks = append(blocks, zoneSvc(s.host, s.name, s.fault, t0.Add(time.Duration(i+1)*time.Second)))
			}
		}
		writeStatus(t, status, blocks...)
	}
	write()
	for _, s := range storm {
		e.cfg.HostName, e.cfg.ServiceDesc, e.cfg.Conn = s.host, s.name, s.conn
		expect(t, e.run("CRITICAL", "HARD", 3, s.fault), 1, "auto-restart held back (mass failure)")
	}
	e.clk.Advance(3 * time.Minute) // quiet: the first trial may go
	store := nodestate.Store{Dir: e.state}
	// An agent breaker's deferral as the handler recorded it before it had
	// its own rule name, ranked first, asked again only in 10 minutes.
	old := nodestate.Record{Host: "a", Service: "OLD", Fault: "9", Result: "breaker", Outcome: "breaker",
		Held: &nodestate.Held{Rule: "breaker", Text: "auto-healing deferred (breaker): the agent's mass-failure breaker is open",
			Since: e.clk.Now().Add(-time.Minute), RetryAt: e.clk.Now().Add(10 * time.Minute), Fault: "9",
			Ask: nodestate.Ask{Address: onA.Address, Port: onA.Port, Agent: onA.Agent, Target: "hang", Action: "restart"}}}
	if err := store.Write(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	deps := e.deps()
	looks := 0
	deps.Sleep = func(ctx context.Context, d time.Duration) error {
		if looks++; looks == 1 && lb.Actions(t) != 1 {
			t.Errorf("agent b ran %d restarts in the first look, want 1 (a window of 1)", lb.Actions(t))
		}
		// The engine between two looks: b's restarted services OK.
		for _, s := range storm[2:] {
			if rec, err := store.Read(s.host, s.name); err == nil && rec != nil && rec.Result == "healed" {
				failing[s.name] = false
			}
		}
		write()
		// A quarter of the wait: the looks stay inside a's quiet time
		// (the handler's clock; the agent's is real).
		e.clk.Advance(d / 4)
		return nil
	}
	blocks := []string{zoneSvc("a", "OLD", "9", t0)}
	for i, s := range storm {
		blocks = append(blocks, zoneSvc(s.host, s.name, s.fault, t0.Add(time.Duration(i+1)*time.Second)))
	}
	sd := statusDat(t, e.clk.Now(), append(blocks, hostStatus("a", hostUp), hostStatus("b", hostUp))...)
	r := handler.Reevaluate(context.Background(), handler.ReevalConfig{
		StateDir: e.state, Status: sd, StatusAge: 5 * time.Minute, Key: la.Key, Judgment: e.cfg.Judgment,
		CommandFile: e.fifo, Deadline: 50 * time.Second, PerRequest: 18 * time.Second,
	}, deps)
	rec, err := store.Read("a", "S0")
	if err != nil || rec == nil || rec.Held == nil || rec.Held.Rule != "agent-breaker" {
		t.Fatalf("S0's record %+v (%v), want held by the agent's breaker: %s", rec, err, r.Line)
	}
	if got := la.Actions(t); got != 1 {
		t.Fatalf("agent a ran %d restarts, want 1 (its breaker holds S0)", got)
	}
	if got := lb.Actions(t); got != 2 {
		t.Fatalf("agent b ran %d restarts, want 2 (S1 and S2 past S0 and S3): %s\n%s", got, r.Line, e.logs)
	}
	// S3, agent a's too and ranked before b's, was not asked while a's
	// breaker holds S0 (to the agent a new failure, keeping its breaker
	// open), nor ranked by the zone rule (it would have held b's).
	if rec, err := store.Read("a", "S3"); err != nil || rec == nil || rec.Held == nil || rec.Held.Rule != "breaker" || rec.Result != "held" {
		t.Fatalf("S3's record %+v (%v), want still held by the zone rule, not asked\n%s", rec, err, e.logs)
	}
	if got := la.Actions(t); got != 1 {
		t.Fatalf("agent a ran %d restarts, want 1", got)
	}
	want := fmt.Sprintf("zone rule: not asking 1 agent(s) whose own breaker holds their host, until it may close: %s@%s (", la.Agent, la.Addr())
	if st, err := handler.Status(context.Background(), store, e.cfg.Judgment, e.clk.Now()); err != nil || !strings.Contains(st, want) {
		t.Fatalf("status %q (%v), want a line %q", st, err, want)
	}

	// S0's trial: asked again until a's breaker, in its own time, lets
	// it through; each ask a little less than a quiet time after the one
	// before, so that the trial runs long after the time a gave last.
	// Until then, and a quiet time after it ran, S3 is not asked: a would
	// take it for a new failure and open again. Then it is.
	quiet := rec.Held.RetryAt.Sub(rec.Held.Since)
	if quiet < 5*time.Second {
		t.Fatalf("S0's hold %+v: the quiet time a gave is %s, want about 10s", rec.Held, quiet)
	}
	again := func(at time.Time) (s0, s3 *nodestate.Record) {
		t.Helper()
		e.clk.Advance(at.Sub(e.clk.Now()))
		blocks := []string{zoneSvc("a", "OLD", "9", t0), zoneSvc("a", "S3", "13", t0.Add(2*time.Second)), hostStatus("a", hostUp), hostStatus("b", hostUp)}
		if failing["S0"] {
			blocks = append(blocks, zoneSvc("a", "S0", "10", t0.Add(time.Second)))
		}
		r := handler.Reevaluate(context.Background(), handler.ReevalConfig{
			StateDir: e.state, Status: statusDat(t, at, blocks...), StatusAge: 5 * time.Minute, Key: la.Key, Judgment: e.cfg.Judgment,
			CommandFile: e.fifo, Deadline: 50 * time.Second, PerRequest: 18 * time.Second,
		}, deps)
		s0, err0 := store.Read("a", "S0")
		s3, err3 := store.Read("a", "S3")
		if err0 != nil || err3 != nil || s0 == nil || s3 == nil {
			t.Fatalf("S0 %+v (%v), S3 %+v (%v): %s", s0, err0, s3, err3, r.Line)
		}
		return s0, s3
	}
	zoneHeld := func(r *nodestate.Record) bool { return r.Held != nil && r.Held.Rule == "breaker" && r.Result == "held" }
	at := rec.Held.RetryAt
	var trial time.Time
	for range 60 { // a's quiet time, 10 s, polled once a second
		s0, s3 := again(at)
		if !zoneHeld(s3) {
			t.Fatalf("S3's record %+v while a's trial waits, want still held by the zone rule, not asked", s3)
		}
		if s0.Held == nil {
			// S0's target "failing" exits 7: the agent ran its trial.
			if s0.Result != "failed" || s0.Origin != "run" {
				t.Fatalf("S0's record %+v, want its trial run (and failed: exit 7)", s0)
			}
			trial = at
			break
		}
		time.Sleep(time.Second)
		at = at.Add(quiet - 2*time.Second)
	}
	if trial.IsZero() {
		t.Fatal("a's breaker never let S0's trial through")
	}
	if _, s3 := again(trial.Add(quiet / 2)); !zoneHeld(s3) {
		t.Fatalf("S3's record %+v half a quiet time after a's trial, want still held by the zone rule, not asked", s3)
	}
	if _, s3 := again(trial.Add(quiet + time.Second)); zoneHeld(s3) {
		t.Fatalf("S3's record %+v a quiet time after a's trial, want asked", s3)
	}
}

// TestZoneReleaseNotRun: a restart the zone rule let through that did not
// run (the agent not reached) is given back: not in flight, and never a
// trial that failed. The same rig first shows one that ran staying in
// flight.
func TestZoneReleaseNotRun(t *testing.T) {
	l := rigtest.StartHandlerListener(t, bigBudget)
	e := newEnv(t, l)
	e.cfg.Facts = handler.NoFacts
	status := filepath.Join(t.TempDir(), "status.dat")
	e.cfg.Judgment = handler.Judgment{Zone: breaker.ZoneConfig{Allowance: 2, Window: time.Hour, Quiet: 2 * time.Minute, Verify: 3 * time.Minute}, StatusFile: status}
	t0 := e.clk.Now()
	writeStatus(t, status, zoneSvc("web1", "A", "1", t0.Add(-3*time.Second)), zoneSvc("web1", "B", "2", t0.Add(-2*time.Second)))
	inflight := func() []breaker.Admission {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(e.state, "zone.json"))
		if err != nil {
			t.Fatal(err)
		}
		var z breaker.ZoneSnapshot
		if err := json.Unmarshal(b, &z); err != nil {
			t.Fatal(err)
		}
		return z.Admitted
	}
	e.cfg.HostName, e.cfg.ServiceDesc = "web1", "A"
	expect(t, e.run("CRITICAL", "HARD", 3, "1"), 0, "ok in")
	if a := inflight(); len(a) != 1 || a[0].Key != "web1!A" {
		t.Fatalf("after a restart that ran: in flight %+v, want web1!A", a)
	}
	e.cfg.HostName, e.cfg.ServiceDesc = "web1", "B"
	e.cfg.Conn.Port, e.cfg.Deadline = deadPort(t), 2*time.Second
	r := e.run("CRITICAL", "HARD", 3, "2")
	if r.Hold == nil || r.Hold.Rule != "unreachable" {
		t.Fatalf("unreachable agent: %+v", r)
	}
	if a := inflight(); len(a) != 1 || a[0].Key != "web1!A" {
		t.Fatalf("after a restart that did not run: in flight %+v, want only web1!A", a)
	}
}
