package handler_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/breaker"
	"github.com/selfheal/selfheal/internal/handler"
	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/rig/rigtest"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/nodestate"
)

// bigBudget lets one agent restart "demo" for many faults in a row: these
// tests count the handler's requests, not the agent's budget.
var bigBudget = rigtest.HandlerOptions{Budget: &rig.Budget{Max: 100, Window: "1h", MinGap: "0s"}}

// statusDat builds a status.dat written at created from blocks.
func statusDat(t *testing.T, created time.Time, blocks ...string) *nagios.StatusData {
	t.Helper()
	in := fmt.Sprintf("# NAGIOS STATUS FILE\ninfo {\n\tcreated=%d\n\tversion=4.4.14\n\t}\n\n", created.Unix()) + strings.Join(blocks, "\n")
	sd, err := nagios.ReadStatusData(strings.NewReader(in))
	if err != nil {
		t.Fatalf("status.dat: %v\n%s", err, in)
	}
	return sd
}

// svcStatus is a servicestatus block; fields are "key=value" lines.
func svcStatus(host, svc string, fields ...string) string {
	return "servicestatus {\n\thost_name=" + host + "\n\tservice_description=" + svc + "\n\thas_been_checked=1\n\t" +
		strings.Join(fields, "\n\t") + "\n\t}\n"
}

func hostStatus(host string, fields ...string) string {
	return "hoststatus {\n\thost_name=" + host + "\n\thas_been_checked=1\n\t" + strings.Join(fields, "\n\t") + "\n\t}\n"
}

func svcComment(host, svc, id, author, text string) string {
	return "servicecomment {\n\thost_name=" + host + "\n\tservice_description=" + svc + "\n\tentry_type=1\n\tcomment_id=" + id +
		"\n\tpersistent=0\n\tentry_time=1764022921\n\tauthor=" + author + "\n\tcomment_data=" + text + "\n\t}\n"
}

// critical is web1/Worker HARD CRITICAL for Nagios problem id fault.
func critical(fault string, extra ...string) string {
	return svcStatus("web1", "Worker", append([]string{"current_state=2", "state_type=1", "current_problem_id=" + fault}, extra...)...)
}

const (
	depOnlyPerf = "'critical_self'=0;;;0; 'critical_dependency'=2;;;0;"
	selfPerf    = "'critical_self'=1;;;0; 'critical_dependency'=0;;;0;"
	hostUp      = "current_state=0"
)

func heldText(rule string) string {
	switch rule {
	case "downtime":
		return "auto-restart held back (downtime): the service is in scheduled downtime; healed when it ends if still CRITICAL"
	case "host downtime":
		return "auto-restart held back (downtime): the host is in scheduled downtime; healed when it ends if still CRITICAL"
	case "ack":
		return "auto-restart held back (acknowledged): a human has taken this problem; remove the acknowledgement to let it heal"
	case "DOWN", "UNREACHABLE":
		return "auto-restart held back (host " + rule + "): the worker's host is " + rule + ", so the agent cannot be reached and a restart would not help; the fault's restart is kept for when the host is UP"
	case "dependency":
		return "auto-restart held back (dependency): every critical finding (2) is a dependency's, not the worker's own; a restart would not fix it"
	}
	panic(rule)
}

// TestRunHeld: each rule, from the macros and from status.dat. The same
// env first restarts without the condition (so a broken loop cannot
// pass); with it, no request is made, one comment says why, and the
// record keeps the fault held with what reevaluate needs. Asked again
// for the same fault (a volatile service), nothing is written again; a
// new fault comments again. The held fault's restart is not spent: with
// the condition gone, the same fault is restarted.
func TestRunHeld(t *testing.T) {
	l := rigtest.StartHandlerListener(t, bigBudget)
	down, unreach := nagios.HostDown, nagios.HostUnreachable
	pause := func(host, svc string) func(*env) {
		return func(e *env) {
			p := nodestate.Pause{Host: host, Service: svc, Reason: "kernel patch", By: "alice", At: e.clk.Now(), Until: e.clk.Now().Add(time.Hour)}
			if _, err := (nodestate.Store{Dir: e.state}).SetPause(context.Background(), e.clk.Now(), p, false); err != nil {
				e.t.Fatal(err)
			}
		}
	}
	// resume ends whichever pause is set.
	resume := func(e *env) {
		n := 0
		for _, p := range []nodestate.Pause{{}, {Host: "web1"}, {Host: "web1", Service: "Worker"}} {
			k, err := (nodestate.Store{Dir: e.state}).SetPause(context.Background(), e.clk.Now(), p, true)
			if err != nil {
				e.t.Fatal(err)
			}
			n += k
		}
		if n != 1 {
			e.t.Fatalf("resumed %d pauses, want 1", n)
		}
	}
	facts := func(edit func(*handler.Facts)) func(*env) { return func(e *env) { edit(&e.cfg.Facts) } }
	status := func(blocks ...string) func(*env) {
		return func(e *env) { e.cfg.Facts.Status = statusDat(e.t, e.clk.Now(), blocks...) }
	}
	tests := []struct {
		name, rule, text string
		set              func(*env)
	}{
		{"service downtime macro", "downtime", heldText("downtime"), facts(func(f *handler.Facts) { f.ServiceDowntime = 1 })},
		{"host downtime macro", "downtime", heldText("host downtime"), facts(func(f *handler.Facts) { f.HostDowntime = 1 })},
		{"ack macro", "ack", heldText("ack"), facts(func(f *handler.Facts) { f.Ack = 1 })},
		{"host DOWN macro", "host", heldText("DOWN"), facts(func(f *handler.Facts) { f.HostState = &down })},
		{"host UNREACHABLE macro", "host", heldText("UNREACHABLE"), facts(func(f *handler.Facts) { f.HostState = &unreach })},
		{"dependency perfdata macro", "dependency", heldText("dependency"), facts(func(f *handler.Facts) { f.Perfdata, f.PerfdataGiven = depOnlyPerf, true })},
		{"downtime in status.dat", "downtime", heldText("downtime"), status(critical("h", "scheduled_downtime_depth=1"), hostStatus("web1", hostUp))},
		{"host downtime in status.dat", "downtime", heldText("host downtime"), status(critical("h"), hostStatus("web1", hostUp, "scheduled_downtime_depth=1"))},
		{"ack in status.dat", "ack", heldText("ack"), status(critical("h", "problem_has_been_acknowledged=1"), hostStatus("web1", hostUp))},
		{"host DOWN in status.dat", "host", heldText("DOWN"), status(critical("h"), hostStatus("web1", "current_state=1"))},
		{"dependency in status.dat", "dependency", heldText("dependency"), status(critical("h", "performance_data="+depOnlyPerf), hostStatus("web1", hostUp))},
		{"node pause", "pause", "auto-healing paused (every service on this node) by alice until ", pause("", "")},
		{"host pause", "pause", "auto-healing paused (host web1) by alice until ", pause("web1", "")},
		{"service pause", "pause", "auto-healing paused (web1/Worker) by alice until ", pause("web1", "Worker")},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, l)
			e.cfg.Facts = handler.NoFacts
			before := l.Actions(t)
			// The agent keeps its fault records across the subtests.
			f1, f2, f3 := fmt.Sprint(100*i+1), fmt.Sprint(100*i+2), fmt.Sprint(100*i+3)
			// Without the condition: a restart.
			expect(t, e.run("CRITICAL", "HARD", 3, f1), 0, "restart demo on "+l.Addr()+" ok in")
			if got := l.Actions(t); got != before+1 {
				t.Fatalf("control: %d actions, want %d", got, before+1)
			}
			e.commands()

			clean := e.cfg
			tt.set(e)
			since := e.clk.Now()
			r := e.run("CRITICAL", "HARD", 3, f2)
			expect(t, r, handler.ExitWithheld, "web1/Worker CRITICAL HARD 3: "+tt.text)
			if l.Actions(t) != before+1 || r.Attempts != 0 || r.Reply != nil || r.Verdict != "held" || r.Hold == nil || r.Hold.Rule != tt.rule {
				t.Fatalf("held: %d actions, %d attempts, reply %+v, verdict %q, hold %+v", l.Actions(t)-before, r.Attempts, r.Reply, r.Verdict, r.Hold)
			}
			want := fmt.Sprintf("[%d] ADD_SVC_COMMENT;web1;Worker;0;handle_worker;%s\n", since.Unix(), r.Hold.Text)
			if c := e.commands(); c != want || !strings.HasPrefix(r.Hold.Text, tt.text) {
				t.Fatalf("command file:\n got %q\nwant %q", c, want)
			}
			rec := e.record()
			wantAsk := nodestate.Ask{Address: l.Host, Port: l.Port, Agent: l.Agent, Target: "demo", Action: "restart", RecheckMS: 2000}
			if h := rec.Held; h == nil || h.Rule != tt.rule || h.Text != r.Hold.Text || h.Fault != f2 || !h.Since.Equal(since) ||
				!h.RetryAt.IsZero() || h.Ask != wantAsk {
				t.Fatalf("held record %+v, want rule %s fault %s since %v ask %+v", rec.Held, tt.rule, f2, since, wantAsk)
			}
			if rec.Result != "held" || rec.Fault != f2 || rec.Summary != r.Hold.Text || rec.Outcome != "ok" || rec.Budget == nil {
				t.Fatalf("record %+v (the agent's last answer is kept)", rec)
			}
			if m := e.lastLog(); m["level"] != "warn" || m["held"] != tt.rule || m["exit"] != 1.0 {
				t.Fatalf("log %v", m)
			}

			// A volatile service: the same fault again, a minute on.
			e.clk.Advance(time.Minute)
			r = e.run("CRITICAL", "HARD", 3, f2)
			expect(t, r, handler.ExitWithheld, tt.text)
			if c := e.commands(); c != "" {
				t.Fatalf("the same fault's comment was written again: %q", c)
			}
			if m := e.lastLog(); m["note"] != "comment already written for this fault, not repeated" {
				t.Fatalf("log %v", m)
			}
			if h := e.record().Held; h == nil || !h.Since.Equal(since) {
				t.Fatalf("the hold's start moved: %+v, want since %v", h, since)
			}
			// A new fault, still held: one comment for it.
			r = e.run("CRITICAL", "HARD", 3, f3)
			expect(t, r, handler.ExitWithheld, tt.text)
			if c := e.commands(); strings.Count(c, "ADD_SVC_COMMENT;web1;Worker;0;handle_worker;"+r.Hold.Text) != 1 {
				t.Fatalf("a new fault, no comment: %q", c)
			}
			if l.Actions(t) != before+1 {
				t.Fatalf("%d actions while held", l.Actions(t)-before)
			}

			// The condition gone, the held fault's own restart runs.
			e.cfg = clean
			if tt.rule == "pause" {
				resume(e)
			}
			r = e.run("CRITICAL", "HARD", 3, f3)
			expect(t, r, 0, "ok in")
			if l.Actions(t) != before+2 || r.Reply == nil || r.Reply.Origin != "run" {
				t.Fatalf("after the hold: %d actions, reply %+v", l.Actions(t)-before, r.Reply)
			}
			if rec := e.record(); rec.Held != nil || rec.Result != "healed" {
				t.Fatalf("healed, the record still holds: %+v", rec)
			}
		})
	}
}

// TestRunHeldDryRun: a dry run says it would hold, and writes nothing.
func TestRunHeldDryRun(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	e.cfg.Facts = handler.NoFacts
	e.cfg.Facts.ServiceDowntime = 1
	e.cfg.DryRun = true
	r := e.run("CRITICAL", "HARD", 3, "7")
	expect(t, r, handler.ExitWithheld, "web1/Worker CRITICAL HARD 3: dry-run: would hold the restart back: "+heldText("downtime"))
	if l.Actions(t) != 0 || e.commands() != "" || len(r.Commands) != 1 {
		t.Fatalf("dry run: %d actions, commands %q", l.Actions(t), r.Commands)
	}
	if left, _ := os.ReadDir(e.state); len(left) != 0 {
		t.Fatalf("dry run wrote %v", left)
	}
}

// TestRunCommentsReplaced: with status.dat listing the handler's comments
// by id, a new comment comes with DEL_SVC_COMMENT for the handler's
// earlier ones on that service, and an OK deletes every one but the last
// success. Other authors' comments, and other services', are never
// deleted; nor is a comment whose id is not a number.
func TestRunCommentsReplaced(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	e.cfg.Facts = handler.NoFacts
	others := []string{
		svcComment("web1", "Worker", "13", "alice", "auto-restart failed: looking at it (alice)"),
		svcComment("web1", "Other", "14", "handle_worker", "auto-restart failed: restart demo on x: failed; a human must look"),
		svcComment("web2", "Worker", "15", "handle_worker", "auto-restart held back (downtime): the service is in scheduled downtime"),
		svcComment("web1", "Worker", "1x", "handle_worker", "auto-restart failed: an id that is no number"),
	}
	withStatus := func(svc string, comments ...string) {
		e.cfg.Facts.Status = statusDat(t, e.clk.Now(), append(append([]string{svc, hostStatus("web1", hostUp)}, comments...), others...)...)
	}
	now := e.clk.Now().Unix()

	withStatus(critical("5", "scheduled_downtime_depth=1"),
		svcComment("web1", "Worker", "11", "handle_worker", "auto-restart ok in 0s (restart demo via 127.0.0.1:1 after CRITICAL HARD 3)"),
		svcComment("web1", "Worker", "12", "handle_worker", "auto-restart failed: restart demo on 127.0.0.1:1: failed (action exit 7 after 0s); a human must look"))
	r := e.run("CRITICAL", "HARD", 3, "5")
	expect(t, r, 1, heldText("downtime"))
	want := fmt.Sprintf("[%d] DEL_SVC_COMMENT;11\n[%d] DEL_SVC_COMMENT;12\n[%d] ADD_SVC_COMMENT;web1;Worker;0;handle_worker;%s\n", now, now, now, heldText("downtime"))
	if c := e.commands(); c != want {
		t.Fatalf("held, command file:\n got %q\nwant %q", c, want)
	}

	// The downtime ends and the worker is still CRITICAL: restarted; the
	// hold's comment is replaced by the success.
	withStatus(critical("5"), svcComment("web1", "Worker", "21", "handle_worker", heldText("downtime")))
	r = e.run("CRITICAL", "HARD", 3, "5")
	expect(t, r, 0, "ok in")
	c := e.commands()
	if !strings.HasPrefix(c, fmt.Sprintf("[%d] DEL_SVC_COMMENT;21\n[%d] ADD_SVC_COMMENT;web1;Worker;0;handle_worker;auto-restart ok in ", now, now)) ||
		strings.Count(c, "DEL_SVC_COMMENT") != 1 || !strings.Contains(c, "SCHEDULE_FORCED_SVC_CHECK;web1;Worker;") {
		t.Fatalf("healed, command file: %q", c)
	}

	// A failure, then the OK: the failure's comment goes, the success
	// stays, alice's stays.
	withStatus(svcStatus("web1", "Worker", "current_state=0", "state_type=1", "current_problem_id=0"),
		svcComment("web1", "Worker", "31", "handle_worker", "auto-restart ok in 0s (restart demo via 127.0.0.1:1 after CRITICAL HARD 3)"),
		svcComment("web1", "Worker", "32", "handle_worker", "auto-restart failed: restart demo on 127.0.0.1:1: failed (action exit 7 after 0s); a human must look"),
		svcComment("web1", "Worker", "33", "handle_worker", heldText("ack")))
	r = e.run("OK", "HARD", 3, "0")
	expect(t, r, 0, "recovered")
	if c, want := e.commands(), fmt.Sprintf("[%d] DEL_SVC_COMMENT;32\n[%d] DEL_SVC_COMMENT;33\n", now, now); c != want {
		t.Fatalf("OK, command file:\n got %q\nwant %q", c, want)
	}
	if rec := e.record(); rec.Held != nil || rec.Comment != "" {
		t.Fatalf("after the OK: %+v", rec)
	}
	// Nothing of ours left: an OK writes nothing.
	withStatus(svcStatus("web1", "Worker", "current_state=0", "state_type=1"))
	expect(t, e.run("OK", "HARD", 3, "0"), 0, "recovered")
	if c := e.commands(); c != "" {
		t.Fatalf("OK with nothing to delete: %q", c)
	}
	if l.Actions(t) != 1 {
		t.Fatalf("%d actions, want 1", l.Actions(t))
	}
}

// TestRunHeldThenOK: an OK clears a held fault from the record, so that
// reevaluate has nothing to ask for, even without a status file.
func TestRunHeldThenOK(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	e.cfg.Facts = handler.NoFacts
	e.cfg.Facts.Ack = 1
	expect(t, e.run("CRITICAL", "HARD", 3, "5"), 1, heldText("ack"))
	if e.record().Held == nil {
		t.Fatal("not held")
	}
	expect(t, e.run("OK", "HARD", 3, "0"), 0, "recovered")
	if rec := e.record(); rec.Held != nil || rec.Comment != "" {
		t.Fatalf("after the OK: %+v", rec)
	}
	if recs, err := (nodestate.Store{Dir: e.state}).HeldRecords(); err != nil || len(recs) != 0 {
		t.Fatalf("held records %+v, %v", recs, err)
	}
}

// TestRunNodeBreaker: Threshold 2: two services restart, the third
// distinct one within the window is held (no request), with one comment
// naming the count and the suspected host; once Quiet passes without a
// new failure, one trial restart is let through, and Quiet after it the
// breaker is closed again.
func TestRunNodeBreaker(t *testing.T) {
	l := rigtest.StartHandlerListener(t, bigBudget)
	e := newEnv(t, l)
	e.cfg.Facts = handler.NoFacts
	cfg := breaker.Config{Window: 5 * time.Minute, Threshold: 2, Quiet: 2 * time.Minute}
	e.cfg.Judgment = handler.Judgment{Breaker: cfg}
	svc := func(host, service, fault string) handler.Result {
		t.Helper()
		e.cfg.HostName, e.cfg.ServiceDesc = host, service
		return e.run("CRITICAL", "HARD", 3, fault)
	}
	text := func(n int, cause string) string {
		return fmt.Sprintf("auto-restart held back (mass failure): %d services needed a restart within 5m0s on this monitoring node (more than 2): suspect %s; the breaker lets one trial restart through 2m0s after the last new failure", n, cause)
	}
	actions := func(want int) {
		t.Helper()
		if got := l.Actions(t); got != want {
			t.Fatalf("%d actions, want %d", got, want)
		}
	}
	t0 := e.clk.Now()
	expect(t, svc("web1", "A", "1"), 0, "ok in")
	expect(t, svc("web1", "B", "2"), 0, "ok in")
	actions(2)
	e.commands()
	r := svc("web2", "C", "3")
	expect(t, r, 1, "web2/C CRITICAL HARD 3: "+text(3, "host web1 (2 of them) or a dependency it shares"))
	actions(2)
	if r.Attempts != 0 || r.Hold.Rule != "breaker" || !r.Hold.RetryAt.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("held %+v after %d attempts", r.Hold, r.Attempts)
	}
	if c := e.commands(); c != fmt.Sprintf("[%d] ADD_SVC_COMMENT;web2;C;0;handle_worker;%s\n", t0.Unix(), r.Hold.Text) {
		t.Fatalf("command file %q", c)
	}
	rec, err := nodestate.Store{Dir: e.state}.Read("web2", "C")
	if err != nil || rec == nil || rec.Held == nil || rec.Held.Rule != "breaker" || !rec.Held.RetryAt.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("record %+v, %v", rec, err)
	}
	expect(t, svc("web2", "D", "4"), 1, text(4, "a dependency shared by 2 hosts"))
	actions(2)
	e.commands()

	// Not quiet yet: C asked again is still held, and not commented again.
	e.clk.Advance(time.Minute)
	r = svc("web2", "C", "3")
	expect(t, r, 1, "(mass failure): 4 services")
	if c := e.commands(); c != "" || !r.Hold.RetryAt.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("command file %q, hold %+v", c, r.Hold)
	}
	actions(2)

	// Quiet: one trial.
	e.clk.Advance(time.Minute + time.Second)
	expect(t, svc("web2", "C", "3"), 0, "ok in")
	actions(3)
	if m := e.lastLog(); m["note"] != "breaker trial restart" {
		t.Fatalf("log %v", m)
	}
	// Quiet again after the trial: closed, a new fault restarts at once.
	e.clk.Advance(2*time.Minute + time.Second)
	expect(t, svc("web3", "E", "5"), 0, "ok in")
	actions(4)

	// --ignore breaker: never held.
	e2 := newEnv(t, l)
	e2.cfg.Facts = handler.NoFacts
	e2.cfg.Judgment = handler.Judgment{Breaker: breaker.Config{Threshold: 1}, Ignore: map[nodestate.Rule]bool{nodestate.RuleBreaker: true}}
	for i, s := range []string{"X", "Y", "Z"} {
		e2.cfg.ServiceDesc = s
		expect(t, e2.run("CRITICAL", "HARD", 3, fmt.Sprint(10+i)), 0, "ok in")
	}
	actions(7)
}

// TestRunBreakerCountsOnlyLetThrough: a restart another rule holds back is
// not counted by the node's breaker.
func TestRunBreakerCountsOnlyLetThrough(t *testing.T) {
	l := rigtest.StartHandlerListener(t, bigBudget)
	e := newEnv(t, l)
	e.cfg.Judgment = handler.Judgment{Breaker: breaker.Config{Window: 5 * time.Minute, Threshold: 2, Quiet: 2 * time.Minute}}
	run := func(service, fault string, downtime int) handler.Result {
		e.cfg.Facts = handler.NoFacts
		e.cfg.Facts.ServiceDowntime = downtime
		e.cfg.ServiceDesc = service
		return e.run("CRITICAL", "HARD", 3, fault)
	}
	expect(t, run("A", "1", 0), 0, "ok in")
	for i, s := range []string{"B", "C", "D"} {
		expect(t, run(s, fmt.Sprint(2+i), 1), 1, "(downtime)")
	}
	expect(t, run("E", "5", 0), 0, "ok in")
	expect(t, run("F", "6", 0), 1, "(mass failure): 3 services")
	if l.Actions(t) != 2 {
		t.Fatalf("%d actions, want 2", l.Actions(t))
	}
}

// TestRunOKWithoutRecordUsesGivenStatus: with no record (a state directory
// wiped) but status.dat in hand, an OK still deletes the handler's
// comments other than the success.
func TestRunOKWithoutRecordUsesGivenStatus(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	e.cfg.Facts = handler.NoFacts
	e.cfg.Facts.Status = statusDat(t, e.clk.Now(), svcStatus("web1", "Worker", "current_state=0", "state_type=1"),
		svcComment("web1", "Worker", "41", "handle_worker", "auto-restart failed: x; a human must look"),
		svcComment("web1", "Worker", "42", "handle_worker", "auto-restart ok in 0s (restart demo via x after CRITICAL HARD 3)"))
	expect(t, e.run("OK", "HARD", 3, "0"), 0, "recovered")
	if c, want := e.commands(), fmt.Sprintf("[%d] DEL_SVC_COMMENT;41\n", e.clk.Now().Unix()); c != want {
		t.Fatalf("command file: %q, want %q", c, want)
	}
}
