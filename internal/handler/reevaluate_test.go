package handler_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/handler"
	"github.com/selfheal/selfheal/internal/lab/rig/rigtest"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/nodestate"
)

// holdHostDown has the event handler hold fault back for a DOWN host:
// the held record reevaluate works from.
func holdHostDown(t *testing.T, e *env, fault string) {
	t.Helper()
	down := nagios.HostDown
	e.cfg.Facts = handler.NoFacts
	e.cfg.Facts.HostState = &down
	expect(t, e.run("CRITICAL", "HARD", 3, fault), 1, "auto-restart held back (host DOWN)")
	if h := e.record().Held; h == nil || h.Rule != "host" || h.Fault != fault {
		t.Fatalf("held %+v", h)
	}
	e.commands()
}

func (e *env) reevaluate(sd *nagios.StatusData) handler.ReevalResult {
	e.t.Helper()
	return handler.Reevaluate(context.Background(), handler.ReevalConfig{
		StateDir: e.state, Status: sd, StatusAge: 5 * time.Minute, Key: e.l.Key,
		CommandFile: e.fifo, Deadline: 30 * time.Second, PerRequest: 20 * time.Second,
	}, e.deps())
}

func expectReeval(t *testing.T, r handler.ReevalResult, code int, line string) {
	t.Helper()
	if r.Code != code || r.Line != line {
		t.Fatalf("reevaluate: exit %d %q (items %+v)\nwant exit %d %q", r.Code, r.Line, r.Items, code, line)
	}
}

// TestReevaluateHeals: the engine shows the held fault still HARD
// CRITICAL, the host UP and no downtime: one restart at the agent, the
// record no longer held, the hold's comment replaced by the success.
func TestReevaluateHeals(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	holdHostDown(t, e, "50")
	if l.Actions(t) != 0 {
		t.Fatal("the hold made a request")
	}
	e.clk.Advance(time.Minute)
	now := e.clk.Now()
	sd := statusDat(t, now, critical("50"), hostStatus("web1", hostUp),
		svcComment("web1", "Worker", "41", "handle_worker", heldText("DOWN")),
		svcComment("web1", "Worker", "42", "alice", "on it"))
	r := e.reevaluate(sd)
	expectReeval(t, r, 0, "OK - no heal held back; 1 healed in this run |held=0 healed=1 failed=0 cleared=0")
	if l.Actions(t) != 1 {
		t.Fatalf("%d actions, want 1", l.Actions(t))
	}
	if len(r.Items) != 1 || r.Items[0].Outcome != "healed" || r.Items[0].Rule != "host" || r.Items[0].Host != "web1" || r.Items[0].Service != "Worker" ||
		!strings.Contains(r.Items[0].Text, "restart demo on "+l.Addr()+" ok in") {
		t.Fatalf("items %+v", r.Items)
	}
	rec := e.record()
	if rec.Held != nil || rec.Result != "healed" || rec.Source != "reevaluate" || rec.Fault != "50" {
		t.Fatalf("record %+v", rec)
	}
	c := e.commands()
	if !strings.HasPrefix(c, fmt.Sprintf("[%d] DEL_SVC_COMMENT;41\n[%d] ADD_SVC_COMMENT;web1;Worker;0;handle_worker;auto-restart ok in 0s (restart demo via %s after CRITICAL HARD 1 (reevaluate); budget 1/3 per 1h0m0s)\n[%d] SCHEDULE_FORCED_SVC_CHECK;web1;Worker;",
		now.Unix(), now.Unix(), l.Addr(), now.Unix())) || strings.Contains(c, ";42") {
		t.Fatalf("command file %q", c)
	}
	// Nothing held any more: the next run asks nothing.
	expectReeval(t, e.reevaluate(sd), 0, "OK - no heal held back; 0 healed in this run |held=0 healed=0 failed=0 cleared=0")
	if l.Actions(t) != 1 {
		t.Fatalf("%d actions, want 1", l.Actions(t))
	}
}

// TestReevaluateOutcomes: what the engine shows decides, and only a still
// CRITICAL, HARD, same fault with nothing holding it back is asked for.
func TestReevaluateOutcomes(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	tests := []struct {
		name    string
		blocks  []string
		nilSD   bool
		code    int
		line    string
		outcome string
		text    string
		held    bool // the record still holds the fault
	}{
		{"downtime now", []string{critical("50", "scheduled_downtime_depth=1"), hostStatus("web1", hostUp)},
			false, 1, "WARNING - 1 heal(s) held back: web1/Worker (downtime); 0 healed in this run |held=1 healed=0 failed=0 cleared=0",
			"held", "auto-restart held back (downtime)", true},
		{"host still DOWN", []string{critical("50"), hostStatus("web1", "current_state=1")},
			false, 1, "WARNING - 1 heal(s) held back: web1/Worker (host); 0 healed in this run |held=1 healed=0 failed=0 cleared=0",
			"held", "auto-restart held back (host DOWN)", true},
		{"acknowledged now", []string{critical("50", "problem_has_been_acknowledged=1"), hostStatus("web1", hostUp)},
			false, 1, "WARNING - 1 heal(s) held back: web1/Worker (ack); 0 healed in this run |held=1 healed=0 failed=0 cleared=0",
			"held", "(acknowledged)", true},
		{"OK", []string{svcStatus("web1", "Worker", "current_state=0", "state_type=1", "current_problem_id=0"), hostStatus("web1", hostUp)},
			false, 0, "OK - no heal held back; 0 healed in this run |held=0 healed=0 failed=0 cleared=1",
			"cleared", "no longer CRITICAL (OK)", false},
		{"WARNING", []string{svcStatus("web1", "Worker", "current_state=1", "state_type=1", "current_problem_id=50")},
			false, 0, "OK - no heal held back; 0 healed in this run |held=0 healed=0 failed=0 cleared=1",
			"cleared", "no longer CRITICAL (WARNING)", false},
		{"another fault", []string{critical("51"), hostStatus("web1", hostUp)},
			false, 0, "OK - no heal held back; 0 healed in this run |held=0 healed=0 failed=0 cleared=1",
			"cleared", "a new fault (51) replaced fault 50: its own event handles it", false},
		{"gone from the engine", []string{svcStatus("web1", "Other", "current_state=2", "state_type=1")},
			false, 0, "OK - no heal held back; 0 healed in this run |held=0 healed=0 failed=0 cleared=1",
			"cleared", "the service is gone from the engine", false},
		{"SOFT", []string{svcStatus("web1", "Worker", "current_state=2", "state_type=0", "current_problem_id=50"), hostStatus("web1", hostUp)},
			false, 1, "WARNING - 1 heal(s) held back: web1/Worker (host); 0 healed in this run |held=1 healed=0 failed=0 cleared=0",
			"waiting", "SOFT CRITICAL", true},
		{"no status file", nil,
			true, 1, "WARNING - 1 heal(s) held back: web1/Worker (host); 0 healed in this run |held=1 healed=0 failed=0 cleared=0",
			"waiting", "no status file: the engine's view is unknown", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, l) // no case makes a request: one agent serves them all
			holdHostDown(t, e, "50")
			e.clk.Advance(time.Second) // a status.dat written after the hold
			before := l.Actions(t)
			var sd *nagios.StatusData
			if !tt.nilSD {
				sd = statusDat(t, e.clk.Now(), tt.blocks...)
			}
			r := e.reevaluate(sd)
			expectReeval(t, r, tt.code, tt.line)
			if len(r.Items) != 1 || r.Items[0].Outcome != tt.outcome || !strings.Contains(r.Items[0].Text, tt.text) {
				t.Fatalf("items %+v, want %s %q", r.Items, tt.outcome, tt.text)
			}
			if l.Actions(t) != before {
				t.Fatalf("%d requests ran an action", l.Actions(t)-before)
			}
			rec := e.record()
			if (rec.Held != nil) != tt.held || rec.Fault != "50" {
				t.Fatalf("record %+v (still held: want %v)", rec, tt.held)
			}
		})
	}
}

// TestReevaluateCommentOnce: reevaluate runs every minute; a fault it
// holds for a new reason is commented once, not at every run.
func TestReevaluateCommentOnce(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	holdHostDown(t, e, "50")
	e.clk.Advance(time.Second)
	sd := statusDat(t, e.clk.Now(), critical("50", "scheduled_downtime_depth=1"), hostStatus("web1", hostUp))
	expectReeval(t, e.reevaluate(sd), 1, "WARNING - 1 heal(s) held back: web1/Worker (downtime); 0 healed in this run |held=1 healed=0 failed=0 cleared=0")
	if c := e.commands(); strings.Count(c, "ADD_SVC_COMMENT;web1;Worker;0;handle_worker;"+heldText("downtime")) != 1 {
		t.Fatalf("the new reason, command file %q", c)
	}
	for range 3 {
		e.clk.Advance(time.Minute)
		sd.Created = e.clk.Now()
		expectReeval(t, e.reevaluate(sd), 1, "WARNING - 1 heal(s) held back: web1/Worker (downtime); 0 healed in this run |held=1 healed=0 failed=0 cleared=0")
		if c := e.commands(); c != "" {
			t.Fatalf("commented again: %q", c)
		}
	}
	if l.Actions(t) != 0 {
		t.Fatalf("%d actions", l.Actions(t))
	}
}

// TestReevaluateRetryAt: a fault the agent deferred (its back-off, its
// breaker, its budget) is not asked for again before the agent said; then
// it is.
func TestReevaluateRetryAt(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	now := e.clk.Now()
	rec := nodestate.Record{Host: "web1", Service: "Worker", At: now, Source: "event", Verb: "restart", Agent: l.Agent, Fault: "60",
		Result: "backoff", Outcome: "backoff", Summary: "back-off at the agent",
		Held: &nodestate.Held{Rule: "backoff", Text: "auto-healing deferred (backoff): back-off at the agent", Since: now.Add(-time.Second), RetryAt: now.Add(5 * time.Minute),
			Fault: "60", Ask: nodestate.Ask{Address: l.Host, Port: l.Port, Agent: l.Agent, Target: "demo", Action: "restart", RecheckMS: 2000}}}
	if err := (nodestate.Store{Dir: e.state}).Write(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	sd := statusDat(t, now, critical("60"), hostStatus("web1", hostUp))
	r := e.reevaluate(sd)
	expectReeval(t, r, 1, "WARNING - 1 heal(s) held back: web1/Worker (backoff); 0 healed in this run |held=1 healed=0 failed=0 cleared=0")
	if r.Items[0].Outcome != "waiting" || r.Items[0].Text != "the agent allows a restart in 5m0s" || l.Actions(t) != 0 {
		t.Fatalf("items %+v, %d actions", r.Items, l.Actions(t))
	}
	e.clk.Advance(5 * time.Minute)
	sd.Created = e.clk.Now()
	expectReeval(t, e.reevaluate(sd), 0, "OK - no heal held back; 1 healed in this run |held=0 healed=1 failed=0 cleared=0")
	if l.Actions(t) != 1 || e.record().Held != nil {
		t.Fatalf("%d actions, record %+v", l.Actions(t), e.record())
	}
}

// TestReevaluateStale: a status file the engine stopped writing is not
// acted on: UNKNOWN, no request, the record kept.
func TestReevaluateStale(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	holdHostDown(t, e, "50")
	// A hold from 11 minutes ago: the stale file is still newer than it.
	rec := e.record()
	rec.Held.Since = rec.Held.Since.Add(-11 * time.Minute)
	if err := (nodestate.Store{Dir: e.state}).Write(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	written := e.clk.Now().Add(-10 * time.Minute)
	sd := statusDat(t, written, critical("50"), hostStatus("web1", hostUp))
	expectReeval(t, e.reevaluate(sd), 3, "UNKNOWN - status file is 10m0s old (written "+written.UTC().Format(time.RFC3339)+"): is the engine running?")
	if l.Actions(t) != 0 || e.record().Held == nil {
		t.Fatalf("%d actions, record %+v", l.Actions(t), e.record())
	}
	// Just inside the limit it is used.
	sd.Created = e.clk.Now().Add(-5 * time.Minute)
	expectReeval(t, e.reevaluate(sd), 0, "OK - no heal held back; 1 healed in this run |held=0 healed=1 failed=0 cleared=0")
}

// TestReevaluateFailed: a heal asked for again that fails is CRITICAL,
// and names the service.
func TestReevaluateFailed(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	e.cfg.Conn.Target = "failing"
	holdHostDown(t, e, "50")
	e.clk.Advance(time.Second)
	sd := statusDat(t, e.clk.Now(), critical("50"), hostStatus("web1", hostUp))
	r := e.reevaluate(sd)
	expectReeval(t, r, 2, "CRITICAL - 1 held heal(s) failed when asked again: web1/Worker; 0 still held back |held=0 healed=0 failed=1 cleared=0")
	if r.Items[0].Outcome != "failed" || !strings.Contains(r.Items[0].Text, "restart failing on "+l.Addr()+": failed (action exit 7") {
		t.Fatalf("items %+v", r.Items)
	}
}

// TestReevaluateOrder: several held records, oldest hold first; the run
// summary counts each outcome.
func TestReevaluateOrder(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	for i, svc := range []string{"C", "A", "B"} {
		e.cfg.ServiceDesc = svc
		holdHostDown(t, e, fmt.Sprint(70+i))
		e.clk.Advance(time.Second)
	}
	sd := statusDat(t, e.clk.Now(),
		svcStatus("web1", "C", "current_state=2", "state_type=1", "current_problem_id=70"),
		svcStatus("web1", "A", "current_state=0", "state_type=1", "current_problem_id=0"),
		svcStatus("web1", "B", "current_state=2", "state_type=1", "current_problem_id=72", "scheduled_downtime_depth=1"),
		hostStatus("web1", hostUp))
	r := e.reevaluate(sd)
	expectReeval(t, r, 1, "WARNING - 1 heal(s) held back: web1/B (downtime); 1 healed in this run |held=1 healed=1 failed=0 cleared=1")
	var got []string
	for _, it := range r.Items {
		got = append(got, it.Service+":"+it.Outcome)
	}
	if strings.Join(got, " ") != "C:healed A:cleared B:held" {
		t.Fatalf("items in order %q", got)
	}
	if l.Actions(t) != 1 {
		t.Fatalf("%d actions", l.Actions(t))
	}
}

// TestReevaluateEvidenceAfterHold: only a view of the engine newer than
// the hold decides anything about it (issue 18): a status.dat written
// before the HARD CRITICAL still shows the service OK, and clearing the
// hold on it would lose the fault's restart for good. Whole seconds, as
// status.dat has them: the hold's own second is not newer.
func TestReevaluateEvidenceAfterHold(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	const none = -9999 // no last_check in the block
	for _, tc := range []struct {
		name             string
		created, checked int64 // seconds after the hold's second (checked: none)
		critical         bool  // the service still HARD CRITICAL (fault 50), the host UP
		outcome, text    string
	}{
		{"written the second before, OK", -1, none, false, "waiting", "is not newer than the hold"},
		{"written a minute before, OK", -60, -61, false, "waiting", "is not newer than the hold"},
		{"written in the hold's second, OK", 0, none, false, "waiting", "is not newer than the hold"},
		{"written after, OK from a check before", 1, -1, false, "waiting", "not newer than the hold (since"},
		{"written after, OK from a check in the hold's second", 1, 0, false, "waiting", "not newer than the hold (since"},
		{"written after, OK from a check after", 2, 1, false, "cleared", "no longer CRITICAL (OK)"},
		{"written after, OK, no check time", 1, none, false, "cleared", "no longer CRITICAL (OK)"},
		{"written before, still CRITICAL", -1, -2, true, "waiting", "is not newer than the hold"},
		{"written after, still CRITICAL from a check before", 1, -1, true, "healed", "ok in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, l)
			holdHostDown(t, e, "50")
			since := e.record().Held.Since.Unix()
			f := []string{"current_state=0", "state_type=1", "current_problem_id=0"}
			if tc.critical {
				f = []string{"current_state=2", "state_type=1", "current_problem_id=50"}
			}
			if tc.checked != none {
				f = append(f, fmt.Sprintf("last_check=%d", since+tc.checked))
			}
			svc := svcStatus("web1", "Worker", f...)
			e.clk.Advance(2 * time.Second) // reevaluate runs after the status.dat is written
			before := l.Actions(t)
			r := e.reevaluate(statusDat(t, time.Unix(since+tc.created, 0), svc, hostStatus("web1", hostUp)))
			if len(r.Items) != 1 || r.Items[0].Outcome != tc.outcome || !strings.Contains(r.Items[0].Text, tc.text) {
				t.Fatalf("items %+v, want %s %q", r.Items, tc.outcome, tc.text)
			}
			held := e.record().Held != nil
			if want := tc.outcome == "waiting"; held != want {
				t.Fatalf("still held %v, want %v", held, want)
			}
			if acted, want := l.Actions(t)-before, map[bool]int{true: 1}[tc.outcome == "healed"]; acted != want {
				t.Fatalf("%d restarts, want %d", acted, want)
			}
		})
	}
}

// forward makes the agent reachable at 127.0.0.1:port (where nothing
// listened before): a TCP proxy to l, closed with the test.
func forward(t *testing.T, port int, l *rigtest.HandlerListener) {
	t.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", l.Addr())
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(up, c); up.(*net.TCPConn).CloseWrite() }()
			go func() { defer wg.Done(); io.Copy(c, up); c.Close(); up.Close() }()
		}
	}()
}

// TestReevaluateRetriesUnreachable (issue 20): a heal that reached no
// agent is kept as a hold; reevaluate asks again after a back-off that
// doubles per failed try, and heals the same fault once the agent answers.
func TestReevaluateRetriesUnreachable(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	port := rigtest.ClosedPort(t)
	e.cfg.Conn.Port, e.cfg.Deadline = port, 2*time.Second
	expect(t, e.run("CRITICAL", "HARD", 3, "80"), 2, "unreachable")
	rec := e.record()
	if h := rec.Held; h == nil || h.Rule != "unreachable" || h.Fault != "80" || h.RetryAt.Sub(rec.At) != 30*time.Second || h.Ask.Port != port {
		t.Fatalf("record %+v, held %+v; want an unreachable hold retried in 30s", rec, rec.Held)
	}
	if c := e.commands(); !strings.Contains(c, "auto-restart failed: restart demo: listener 127.0.0.1:") ||
		!strings.Contains(c, "a human must look (asked again by reevaluate from ") {
		t.Fatalf("command file %q", c)
	}
	view := func() *nagios.StatusData {
		e.clk.Advance(time.Second)
		return statusDat(t, e.clk.Now(), critical("80"), hostStatus("web1", hostUp))
	}
	rv := func(sd *nagios.StatusData) handler.ReevalResult {
		return handler.Reevaluate(context.Background(), handler.ReevalConfig{
			StateDir: e.state, Status: sd, StatusAge: 5 * time.Minute, Key: e.l.Key,
			CommandFile: e.fifo, Deadline: 10 * time.Second, PerRequest: 2 * time.Second,
		}, e.deps())
	}
	r := rv(view())
	if len(r.Items) != 1 || r.Items[0].Outcome != "waiting" || !strings.Contains(r.Items[0].Text, "the agent was unreachable; asked again in 2") {
		t.Fatalf("before the back-off: %+v", r.Items)
	}
	// Still down after the back-off: failed (CRITICAL), held, the wait doubled.
	e.clk.Advance(30 * time.Second)
	r = rv(view())
	if r.Code != 2 || len(r.Items) != 1 || r.Items[0].Outcome != "failed" || !strings.Contains(r.Items[0].Text, "unreachable") {
		t.Fatalf("still down: exit %d %+v", r.Code, r.Items)
	}
	rec = e.record()
	if h := rec.Held; h == nil || h.Rule != "unreachable" || h.RetryAt.Sub(rec.At) != time.Minute {
		t.Fatalf("held %+v; want the wait doubled to 1m", rec.Held)
	}
	if l.Actions(t) != 0 {
		t.Fatal("an action ran with the agent unreachable")
	}
	// The agent answers again at the same address: the same fault heals.
	forward(t, port, l)
	e.clk.Advance(time.Minute)
	r = rv(view())
	if r.Code != 0 || len(r.Items) != 1 || r.Items[0].Outcome != "healed" || l.Actions(t) != 1 {
		t.Fatalf("agent back: exit %d %q %+v, %d actions", r.Code, r.Line, r.Items, l.Actions(t))
	}
	if rec := e.record(); rec.Held != nil || rec.Result != "healed" || rec.Fault != "80" {
		t.Fatalf("record %+v", rec)
	}
}

// TestReevaluateRetriesNoReply: a restart sent whose reply never came
// (the deadline cut it off) may have run, so it is not asked as new: it is
// held and asked again for the same fault, and the agent, which runs one
// restart per fault, answers from its record. The scale lab lost a
// service this way: a request begun at the end of a pass.
func TestReevaluateRetriesNoReply(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	e.cfg.Conn.Target, e.cfg.Deadline = "hang", 300*time.Millisecond
	expect(t, e.run("CRITICAL", "HARD", 3, "90"), 2, "request sent, no reply within the deadline: the restart may have run")
	rec := e.record()
	if h := rec.Held; h == nil || h.Rule != "no-reply" || h.Fault != "90" || h.RetryAt.Sub(rec.At) != 30*time.Second {
		t.Fatalf("record %+v, held %+v; want a no-reply hold asked again in 30s", rec, rec.Held)
	}
	if c := e.commands(); !strings.Contains(c, "auto-restart unconfirmed: ") || !strings.Contains(c, "(asked again by reevaluate from ") {
		t.Fatalf("command file %q", c)
	}
	// The agent's action ran once and ends (its 5 s timeout): its record
	// of the fault is then final.
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(l.AuditLog)
		if l.Actions(t) == 1 && strings.Contains(string(b), `"fault":"90"`) && strings.Contains(string(b), `"outcome":"timeout"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent's action for fault 90 did not end: %d actions, audit %s", l.Actions(t), b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.clk.Advance(30 * time.Second)
	r := handler.Reevaluate(context.Background(), handler.ReevalConfig{
		StateDir: e.state, Status: statusDat(t, e.clk.Now(), critical("90"), hostStatus("web1", hostUp)), StatusAge: 5 * time.Minute,
		Key: e.l.Key, CommandFile: e.fifo, Deadline: 10 * time.Second, PerRequest: 5 * time.Second,
	}, e.deps())
	if len(r.Items) != 1 || r.Items[0].Outcome != "failed" || !strings.Contains(r.Items[0].Text, "timeout") {
		t.Fatalf("asked again: %q %+v", r.Line, r.Items)
	}
	if got := l.Actions(t); got != 1 {
		t.Fatalf("%d actions for fault 90, want 1 (answered from the agent's record)", got)
	}
	if rec := e.record(); rec.Held != nil || rec.Fault != "90" {
		t.Fatalf("record %+v: the agent's final answer ends the hold", rec)
	}
}
