// Package e2e runs the whole self-healing loop under a real Nagios Core 4
// and a real Icinga 2: demo_worker breaks, check_worker sees it, the engine
// goes HARD CRITICAL and runs handle_worker, worker_listener restarts the
// worker, and the engine records OK. Every scenario asserts what the engine
// itself recorded (its log, status.dat and comments), not only our logs.
// Scenarios run in parallel, each in its own directories and on its own
// loopback ports (package lab/rig). A missing nagios4 or icinga2
// skips locally and fails under CI=true (testutil.LookTool).
package e2e

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/engine"
	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/testutil"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/proc"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.Cleanup()
	os.Exit(code)
}

var engines = []engine.Kind{engine.Nagios4, engine.Icinga2}

// Case 1: the worker crashes; the loop restarts it and the engine records OK.
func TestCrashIsHealed(t *testing.T) {
	for _, kind := range engines {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			l := newLoop(t, rig.LoopOptions{Kind: kind})
			ctx := scenarioCtx(t)
			pid0 := l.WorkerPID()
			mark := l.Mark()
			if err := l.Fault(ctx, "crash"); err != nil {
				t.Fatal(err)
			}
			h, err := l.WaitHealed(ctx, mark)
			if err != nil {
				fail(t, l, "%v", err)
			}
			// One fault, one restart: the handler ran once at HARD, and the
			// agent ran one restart.
			if n := rig.Count(h.Entries[mark:], hardHandler); n != 1 {
				t.Errorf("handler ran %d times at HARD CRITICAL, want 1", n)
			}
			if c := restarts(t, l); c.Run != 1 {
				t.Errorf("the agent's audit log: %s; want exactly 1 run", c)
			}
			if _, err := l.Inst.WaitComment(ctx, hostName, svcName, "auto-restart ok"); err != nil {
				fail(t, l, "%v", err)
			}
			if pid1 := l.WorkerPID(); pid1 == pid0 || !proc.Alive(pid1) {
				t.Errorf("worker pid %d -> %d (alive %v): want a new, running process", pid0, pid1, proc.Alive(pid1))
			}
		})
	}
}

// Case 2: the worker hangs: work stops and the heartbeat goes stale. Run
// twice: once with a /status that still answers (only --max-age sees the
// stale heartbeat), once with a /status that stalls too (check_worker's own
// timeout sees it). Either way the hung process is replaced by a new one.
func TestHangIsHealedWithNewProcess(t *testing.T) {
	for _, tc := range []struct {
		name      string
		staleHang bool
		want      string
	}{
		{"stale-heartbeat", true, "heartbeat"},
		{"status-stalls", false, "no answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testHang(t, tc.staleHang, tc.want)
		})
	}
}

func testHang(t *testing.T, staleHang bool, want string) {
	l := newLoop(t, rig.LoopOptions{Kind: engine.Nagios4, StaleHang: staleHang})
	ctx := scenarioCtx(t)
	pid0 := l.WorkerPID()
	mark := l.Mark()
	if err := l.Fault(ctx, "hang"); err != nil {
		t.Fatal(err)
	}
	h, err := l.WaitHealed(ctx, mark)
	if err != nil {
		fail(t, l, "%v", err)
	}
	// check_worker saw the hang for what it is, not a refused connection.
	out := h.Critical.Fields[len(h.Critical.Fields)-1]
	if !strings.Contains(out, want) {
		t.Errorf("HARD CRITICAL output %q, want it to say %q", out, want)
	}
	if _, err := l.Inst.WaitComment(ctx, hostName, svcName, "auto-restart ok"); err != nil {
		fail(t, l, "%v", err)
	}
	pid1 := l.WorkerPID()
	if pid1 == pid0 || !proc.Alive(pid1) {
		t.Errorf("worker pid %d -> %d (alive %v): want a new, running process", pid0, pid1, proc.Alive(pid1))
	}
	if proc.Alive(pid0) {
		t.Errorf("the hung worker (pid %d) is still running", pid0)
	}
}

// Case 3: the worker keeps failing. Restarts stop at the agent's budget (2
// here): the agent answers "spent", the engine gets a comment saying so, and
// the service stays CRITICAL.
func TestFlappingStopsAtBudget(t *testing.T) {
	for _, kind := range engines {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			const budget = 2
			l := newLoop(t, rig.LoopOptions{Kind: kind, MaxRestarts: budget})
			ctx := scenarioCtx(t)
			for i := 1; i <= budget; i++ {
				pid := l.WorkerPID()
				mark := l.Mark()
				if err := l.Fault(ctx, "crash"); err != nil {
					t.Fatal(err)
				}
				if _, err := l.WaitHealed(ctx, mark); err != nil {
					fail(t, l, "restart %d: %v", i, err)
				}
				if p := l.WorkerPID(); p == pid || !proc.Alive(p) {
					fail(t, l, "restart %d: worker pid %d -> %d", i, pid, p)
				}
			}
			crashed := l.WorkerPID()
			mark := l.Mark()
			if err := l.Fault(ctx, "crash"); err != nil {
				t.Fatal(err)
			}
			c, err := l.Inst.WaitComment(ctx, hostName, svcName, "budget spent")
			if err != nil {
				fail(t, l, "%v", err)
			}
			if !strings.Contains(c.Text, "suspended") {
				t.Errorf("budget comment %q does not say healing is suspended", c.Text)
			}
			// Nothing restarted it, and the engine still says CRITICAL.
			if _, err := l.Inst.WaitService(ctx, hostName, svcName, engine.StateIs(nagios.Critical, true)); err != nil {
				fail(t, l, "%v", err)
			}
			if p := l.WorkerPID(); p != crashed || proc.Alive(p) {
				t.Errorf("worker pid %d (alive %v) after the budget was spent; want the crashed %d, not running", p, proc.Alive(p), crashed)
			}
			entries := l.Log()
			if n := rig.Count(entries, hardHandler); n != budget+1 {
				t.Errorf("handler ran %d times at HARD CRITICAL, want %d", n, budget+1)
			}
			if n := rig.Count(entries[mark:], engine.Alert(hostName, svcName, "OK", "")); n != 0 {
				t.Errorf("%d recoveries recorded after the budget was spent, want 0", n)
			}
			// The agent's account: budget runs, then it said "spent".
			if c := restarts(t, l); c.Run != budget || c.Spent == 0 {
				t.Errorf("the agent's audit log: %s; want %d runs, then spent", c, budget)
			}
		})
	}
}

// Case 4: the listener is down. The handler gives up within its 18 s
// deadline (inside Nagios' 30 s event_handler_timeout), Nagios keeps
// running and checking, and a comment records the failure.
func TestListenerDownIsRecorded(t *testing.T) {
	t.Parallel()
	l := newLoop(t, rig.LoopOptions{Kind: engine.Nagios4, NoListener: true})
	ctx := scenarioCtx(t)
	pid0 := l.WorkerPID()
	if err := l.Fault(ctx, "fail"); err != nil {
		t.Fatal(err)
	}
	h, err := l.Inst.WaitLog(ctx, hardHandler)
	if err != nil {
		fail(t, l, "%v", err)
	}
	c, err := l.Inst.WaitComment(ctx, hostName, svcName, "auto-restart failed")
	if err != nil {
		fail(t, l, "%v", err)
	}
	if !strings.Contains(c.Text, "unreachable") {
		t.Errorf("comment %q does not say the listener was unreachable", c.Text)
	}
	// Both timestamps are whole seconds: allow 2 s of rounding.
	if took := c.EntryTime.Sub(h.Time); took > sampleDeadline+2*time.Second {
		t.Errorf("handler gave up %s after it started, beyond its %s deadline", took, sampleDeadline)
	}
	// Nagios is alive and still checking after the handler gave up.
	after := c.EntryTime.Add(time.Second)
	if _, err := l.Inst.WaitService(ctx, hostName, svcName, func(s engine.Service) bool {
		return s.LastCheck.After(after)
	}); err != nil {
		fail(t, l, "Nagios stopped checking after the handler failed: %v", err)
	}
	for _, e := range l.Log() {
		if strings.Contains(e.Raw, "timed out") && strings.Contains(strings.ToLower(e.Raw), "handler") {
			t.Errorf("Nagios had to kill the handler: %s", e.Raw)
		}
	}
	// The handler's own account: it failed (exit 2) within its deadline.
	b, err := os.ReadFile(l.HandlerLog)
	if err != nil {
		t.Fatal(err)
	}
	var failed bool
	for _, line := range strings.Split(string(b), "\n") {
		var rec struct {
			Exit     int     `json:"exit"`
			Decision string  `json:"decision"`
			Elapsed  float64 `json:"elapsed_ms"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Decision != "restart" {
			continue
		}
		failed = true
		if rec.Exit != 2 {
			t.Errorf("handler exit %d with the listener down, want 2: %s", rec.Exit, line)
		}
		if rec.Elapsed > float64(sampleDeadline.Milliseconds()) {
			t.Errorf("handler took %.0f ms, beyond its %s deadline", rec.Elapsed, sampleDeadline)
		}
	}
	if !failed {
		fail(t, l, "the handler's log has no restart attempt")
	}
	if !proc.Alive(pid0) || l.WorkerPID() != pid0 {
		t.Errorf("worker pid %d changed or died with no listener to restart it", pid0)
	}
}

// Case 5: the handler holds the wrong key (another fleet's, under the same
// id). Nothing is restarted, the listener's audit log records the denial,
// Nagios gets a comment.
func TestWrongKeyIsDenied(t *testing.T) {
	t.Parallel()
	l := newLoop(t, rig.LoopOptions{Kind: engine.Nagios4, WrongKey: true})
	ctx := scenarioCtx(t)
	pid0 := l.WorkerPID()
	if err := l.Fault(ctx, "fail"); err != nil {
		t.Fatal(err)
	}
	c, err := l.Inst.WaitComment(ctx, hostName, svcName, "auto-restart failed")
	if err != nil {
		fail(t, l, "%v", err)
	}
	if !strings.Contains(c.Text, "denied") {
		t.Errorf("comment %q does not say the request was denied", c.Text)
	}
	audit, err := l.Audit()
	if err != nil {
		t.Fatal(err)
	}
	var denials, pings int
	for _, r := range audit {
		// Only the handler's requests count, by their verb: a denial
		// without one is a peer that connected and said nothing.
		if r.Outcome == "denied" && r.Verb == "restart" {
			denials++
		}
		// The rig's one start-up ping, signed with the right key, is the
		// one request that may succeed.
		if r.Outcome == "ok" && r.Verb == "ping" && pings == 0 {
			pings++
		} else if r.Outcome == "ok" {
			t.Errorf("audit log records a request that succeeded: %s", r.Raw)
		}
		if r.Origin == "run" {
			t.Errorf("audit log records a run: %s", r.Raw)
		}
	}
	if denials == 0 {
		fail(t, l, "the listener's audit log has no denial")
	}
	if !proc.Alive(pid0) || l.WorkerPID() != pid0 {
		t.Errorf("worker pid %d was restarted with a wrong key", pid0)
	}
	if _, err := l.Inst.WaitService(ctx, hostName, svcName, engine.StateIs(nagios.Critical, true)); err != nil {
		fail(t, l, "%v", err)
	}
}
