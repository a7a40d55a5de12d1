package handler_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/selfheal/selfheal/internal/handler"
	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/rig/rigtest"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/nodestate"
	"github.com/selfheal/selfheal/internal/protocol"
)

// clock is a settable clock shared with the protocol client (the listener
// accepts its timestamps within its 10 m replay window).
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().Truncate(time.Second)} }
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	t     *testing.T
	l     *rigtest.HandlerListener
	clk   *clock
	cfg   handler.Config
	fifo  string
	rfd   int
	logs  *bytes.Buffer
	state string
}

func newEnv(t *testing.T, l *rigtest.HandlerListener) *env {
	t.Helper()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "nagios.cmd")
	if err := syscall.Mkfifo(fifo, 0o660); err != nil {
		t.Fatal(err)
	}
	rfd, err := syscall.Open(fifo, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(rfd) })
	state := filepath.Join(dir, "state")
	os.Mkdir(state, 0o700)
	e := &env{t: t, l: l, clk: newClock(), fifo: fifo, rfd: rfd, logs: &bytes.Buffer{}, state: state}
	e.cfg = handler.Config{
		HostName: "web1", ServiceDesc: "Worker", Fault: "-",
		Conn:   handler.Conn{Address: l.Host, Port: l.Port, Agent: l.Agent, Target: "demo", Key: l.Key},
		Action: protocol.VerbRestart, StateDir: state,
		Deadline:    20 * time.Second,
		CommandFile: fifo, Recheck: 2 * time.Second,
	}
	return e
}

func (e *env) deps() handler.Deps {
	return handler.Deps{Now: e.clk.Now, Log: zerolog.New(e.logs)}
}

// run handles one event for fault (as --fault takes it).
func (e *env) run(state, typ string, attempt int, fault string) handler.Result {
	e.t.Helper()
	ev, err := handler.ParseEvent(state, typ, attempt)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := e.cfg
	cfg.Event = ev
	if cfg.Fault, err = handler.FaultID(fault); err != nil {
		e.t.Fatal(err)
	}
	return handler.Run(context.Background(), cfg, e.deps())
}

// commands returns what was written to the FIFO since the last call.
func (e *env) commands() string {
	buf := make([]byte, 8192)
	n, err := syscall.Read(e.rfd, buf)
	if err == syscall.EAGAIN || n <= 0 {
		return ""
	}
	return string(buf[:n])
}

func (e *env) record() nodestate.Record {
	e.t.Helper()
	rec, err := nodestate.Store{Dir: e.state}.Read(e.cfg.HostName, e.cfg.ServiceDesc)
	if err != nil || rec == nil {
		e.t.Fatalf("advisory record: %+v, %v", rec, err)
	}
	return *rec
}

// lastLog is the last JSON log line.
func (e *env) lastLog() map[string]any {
	e.t.Helper()
	lines := bytes.Split(bytes.TrimSpace(e.logs.Bytes()), []byte("\n"))
	var m map[string]any
	if err := json.Unmarshal(lines[len(lines)-1], &m); err != nil {
		e.t.Fatalf("log line is not JSON: %v\n%s", err, e.logs)
	}
	return m
}

func expect(t *testing.T, r handler.Result, code int, line string) {
	t.Helper()
	if r.Code != code || !strings.Contains(r.Line, line) {
		t.Fatalf("got exit %d %q (err %v); want exit %d and a line containing %q", r.Code, r.Line, r.Err, code, line)
	}
	if strings.ContainsAny(r.Line, "\n|") {
		t.Fatalf("human line is not one Nagios-safe line: %q", r.Line)
	}
}

func TestRunRestartOK(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	r := e.run("CRITICAL", "HARD", 3, "7")
	expect(t, r, 0, "restart demo on "+l.Addr()+" ok in 0s (budget 1/3 per 1h0m0s)")
	if got := l.Actions(t); got != 1 {
		t.Fatalf("listener ran %d actions, want 1", got)
	}
	if r.Reply == nil || r.Reply.Origin != protocol.OriginRun || r.Verdict != "healed" || r.Attempts != 1 {
		t.Fatalf("reply %+v, verdict %q, %d attempts", r.Reply, r.Verdict, r.Attempts)
	}
	now := e.clk.Now().Unix()
	want := fmt.Sprintf("[%d] ADD_SVC_COMMENT;web1;Worker;0;handle_worker;auto-restart ok in 0s (restart demo via %s after CRITICAL HARD 3; budget 1/3 per 1h0m0s)\n"+
		"[%d] SCHEDULE_FORCED_SVC_CHECK;web1;Worker;%d\n", now, l.Addr(), now, now+2)
	if got := e.commands(); got != want {
		t.Fatalf("command file got\n%q\nwant\n%q", got, want)
	}
	rec := e.record()
	if rec.Result != "healed" || rec.Outcome != "ok" || rec.Origin != "run" || rec.Source != "event" || rec.Fault != "7" ||
		rec.Agent != l.Agent || rec.Budget == nil || rec.Budget.Used != 1 || rec.Budget.Max != 3 || rec.Budget.WindowS != 3600 {
		t.Fatalf("record %+v", rec)
	}
	logLine := e.lastLog()
	if strings.Count(strings.TrimSpace(e.logs.String()), "\n") != 0 {
		t.Fatalf("more than one log line:\n%s", e.logs)
	}
	if logLine["outcome"] != "ok" || logLine["origin"] != "run" || logLine["result"] != "healed" || logLine["decision"] != "restart" ||
		logLine["host"] != "web1" || logLine["fault"] != "7" || logLine["agent"] != l.Agent || logLine["budget_used"] != 1.0 {
		t.Fatalf("log line %v", logLine)
	}
	for _, secret := range [][]byte{l.Key.Secret, l.HostKey.Secret} {
		if strings.Contains(e.logs.String(), fmt.Sprintf("%x", secret)) {
			t.Fatal("a key's secret is in the log")
		}
	}
}

func TestRunListenerDown(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	e.cfg.Conn.Port = rigtest.ClosedPort(t)
	e.cfg.Deadline = 4 * time.Second
	start := time.Now()
	r := e.run("CRITICAL", "HARD", 3, "7")
	took := time.Since(start)
	expect(t, r, 2, "restart demo: listener 127.0.0.1:")
	expect(t, r, 2, "unreachable")
	if strings.Contains(r.Line, "may have run") {
		t.Fatalf("nothing reached the agent, yet the line says it may have run: %q", r.Line)
	}
	if r.Attempts < 3 {
		t.Fatalf("%d attempts: no retries", r.Attempts)
	}
	// Bounded: ends inside the deadline, with slack for a loaded machine.
	if took > e.cfg.Deadline+2*time.Second {
		t.Fatalf("took %s with a %s deadline", took, e.cfg.Deadline)
	}
	cmds := e.commands()
	if !strings.Contains(cmds, "ADD_SVC_COMMENT;web1;Worker;1;handle_worker;auto-restart failed: restart demo: listener 127.0.0.1:") ||
		!strings.Contains(cmds, "a human must look") || strings.Contains(cmds, "SCHEDULE_FORCED") {
		t.Fatalf("command file: %q", cmds)
	}
	if rec := e.record(); rec.Result != "unreachable" || rec.Outcome != "" {
		t.Fatalf("record %+v", rec)
	}
	if m := e.lastLog(); m["result"] != "unreachable" || m["level"] != "error" {
		t.Fatalf("log %v", m)
	}
}

func TestRunWrongKey(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	k, err := protocol.LoadKeyFile(rigtest.OtherKeyFile(t))
	if err != nil {
		t.Fatal(err)
	}
	e.cfg.Conn.Key = k
	r := e.run("CRITICAL", "HARD", 3, "7")
	// The unsigned denied to the extended form is asked once more in
	// the short form (an agent older than it denies it so), no more.
	expect(t, r, 2, "denied in the extended and the short form (wrong key")
	if r.Attempts != 2 || r.AgentOld {
		t.Fatalf("a denial was retried: %d attempts, old %v", r.Attempts, r.AgentOld)
	}
	if l.Actions(t) != 0 {
		t.Fatal("the listener ran an action for a wrong key")
	}
}

// TestRunAgentIdentity: a request signed for another agent is refused by
// this one; the agent's own host key signs for it, and only for it.
func TestRunAgentIdentity(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	t.Run("fleet key, other agent", func(t *testing.T) {
		e := newEnv(t, l)
		e.cfg.Conn.Agent = "web2"
		r := e.run("CRITICAL", "HARD", 3, "7")
		expect(t, r, 2, "denied in the extended and the short form")
		if r.Attempts != 2 || l.Actions(t) != 0 {
			t.Fatalf("%d attempts, %d actions", r.Attempts, l.Actions(t))
		}
	})
	t.Run("host key, its agent", func(t *testing.T) {
		e := newEnv(t, l)
		e.cfg.Conn.Key = l.HostKey
		expect(t, e.run("CRITICAL", "HARD", 3, "7"), 0, "ok in")
		if l.Actions(t) != 1 {
			t.Fatalf("%d actions", l.Actions(t))
		}
	})
	t.Run("host key, other agent", func(t *testing.T) {
		e := newEnv(t, l)
		e.cfg.Conn.Key, e.cfg.Conn.Agent = l.HostKey, "web2"
		r := e.run("CRITICAL", "HARD", 3, "8")
		expect(t, r, 3, "configuration error: this host key is for agent")
		if c := e.commands(); !strings.Contains(c, ";1;handle_worker;auto-healing impossible: handle_worker configuration error") {
			t.Fatalf("command file: %q", c)
		}
		if r.Attempts != 0 || l.Actions(t) != 1 {
			t.Fatalf("%d attempts, %d actions", r.Attempts, l.Actions(t))
		}
	})
}

func TestRunActionOutcomes(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	tests := []struct {
		target, line, outcome string
	}{
		{"slow", "restart slow on " + l.Addr() + ": timeout (action killed after", "timeout"},
		{"failing", "failed (action exit 7 after", "failed"},
		{"nosuch", "denied", "denied"},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			e := newEnv(t, l)
			e.cfg.Conn.Target = tt.target
			r := e.run("CRITICAL", "HARD", 3, "7")
			expect(t, r, 2, tt.line)
			// An unsigned denied is asked once more in the short form.
			if attempts := map[bool]int{true: 2, false: 1}[tt.outcome == "denied"]; r.Reply == nil || string(r.Reply.Outcome) != tt.outcome || r.Attempts != attempts {
				t.Fatalf("reply %+v after %d attempts", r.Reply, r.Attempts)
			}
			if tt.outcome != "denied" && !strings.Contains(r.Line, "; budget 1/3 per 1h0m0s)") {
				t.Fatalf("no budget in %q", r.Line)
			}
			if tt.outcome == "failed" && !strings.HasSuffix(r.Line, ": boom") {
				t.Fatalf("no action output in %q", r.Line)
			}
			if c := e.commands(); !strings.Contains(c, ";1;handle_worker;auto-restart failed: ") {
				t.Fatalf("command file: %q", c)
			}
		})
	}
}

// TestRunBudgetSpent: the agent's budget (max 1 here) holds across faults;
// the next fault is refused with a signed "spent", Nagios is told, and a
// human must look. The first fault's own record still answers first.
func TestRunBudgetSpent(t *testing.T) {
	l := rigtest.StartHandlerListener(t, rigtest.HandlerOptions{Budget: &rig.Budget{Max: 1, Window: "1h", MinGap: "0s"}})
	e := newEnv(t, l)
	expect(t, e.run("CRITICAL", "HARD", 3, "1"), 0, "ok in 0s (budget 1/1 per 1h0m0s)")
	expect(t, e.run("OK", "HARD", 3, "0"), 0, "recovered")
	e.commands()
	r := e.run("CRITICAL", "HARD", 3, "2")
	expect(t, r, 1, "restart demo on "+l.Addr()+": restart budget spent at the agent: 1/1 in 1h0m0s; next restart allowed in ")
	expect(t, r, 1, "; a human must look")
	if r.Verdict != "spent" || r.Reply == nil || r.Reply.Outcome != protocol.OutcomeSpent || r.Reply.Budget.RetryAfter <= 50*time.Minute {
		t.Fatalf("verdict %q reply %+v", r.Verdict, r.Reply)
	}
	if l.Actions(t) != 1 {
		t.Fatalf("listener ran %d actions, want 1", l.Actions(t))
	}
	if c := e.commands(); !strings.Contains(c, ";1;handle_worker;auto-healing suspended: restart demo on "+l.Addr()+": restart budget spent at the agent: 1/1 in 1h0m0s; next restart allowed in ") ||
		!strings.Contains(c, "a human must look") {
		t.Fatalf("command file: %q", c)
	}
	if m := e.lastLog(); m["level"] != "warn" || m["result"] != "spent" || m["budget_used"] != 1.0 || m["budget_max"] != 1.0 {
		t.Fatalf("log %v", m)
	}
	if rec := e.record(); rec.Result != "spent" || rec.Budget == nil || rec.Budget.RetryAfterS < 3000 {
		t.Fatalf("record %+v", rec)
	}
	// The first fault, asked again: its record, not the budget.
	expect(t, e.run("CRITICAL", "HARD", 3, "1"), 0, "not run again, answered from the agent's record")
	if l.Actions(t) != 1 {
		t.Fatalf("listener ran %d actions, want 1", l.Actions(t))
	}
}

// TestRunBudgetFreesUp: once the agent's window has moved on, the next
// fault is restarted again.
func TestRunBudgetFreesUp(t *testing.T) {
	l := rigtest.StartHandlerListener(t, rigtest.HandlerOptions{Budget: &rig.Budget{Max: 1, Window: "2s", MinGap: "0s"}})
	e := newEnv(t, l)
	expect(t, e.run("CRITICAL", "HARD", 3, "1"), 0, "ok in")
	r := e.run("CRITICAL", "HARD", 3, "2")
	expect(t, r, 1, "restart budget spent at the agent: 1/1 in 2s")
	if r.Reply.Budget.RetryAfter > 2*time.Second {
		t.Fatalf("retry after %s with a 2s window", r.Reply.Budget.RetryAfter)
	}
	time.Sleep(r.Reply.Budget.RetryAfter + 1100*time.Millisecond)
	expect(t, e.run("CRITICAL", "HARD", 3, "3"), 0, "ok in")
	if l.Actions(t) != 2 {
		t.Fatalf("listener ran %d actions, want 2", l.Actions(t))
	}
}

// TestRunMinGapAtAgent: a second fault id within the agent's min gap that
// began with the first (a split brain names one real fault twice) gets
// the first restart's answer: ok, not run again, not counted, and the
// line says so in the agent's words. A third whose start is not given may
// be a new crash: deferred (held for reevaluate), never "ok".
func TestRunMinGapAtAgent(t *testing.T) {
	l := rigtest.StartHandlerListener(t, rigtest.HandlerOptions{Budget: &rig.Budget{Max: 3, Window: "1h", MinGap: "2m"}})
	e := newEnv(t, l)
	e.cfg.FaultSince = e.clk.Now().Add(-5 * time.Second)
	expect(t, e.run("CRITICAL", "HARD", 3, "1"), 0, "ok in 0s (budget 1/3 per 1h0m0s)")
	e.commands()
	r := e.run("CRITICAL", "HARD", 3, "2")
	expect(t, r, 0, "ok, not run again, answered from the agent's record (0s old): fault 2 began")
	if r.Reply.Origin != protocol.OriginRecorded || l.Actions(t) != 1 || !strings.Contains(r.Line, "the same fault under another id") {
		t.Fatalf("origin %s, %d actions: %s", r.Reply.Origin, l.Actions(t), r.Line)
	}
	c := e.commands()
	if !strings.Contains(c, ";0;handle_worker;auto-restart ok: not run again, answered from the agent's record") ||
		!strings.Contains(c, "SCHEDULE_FORCED_SVC_CHECK;web1;Worker;") {
		t.Fatalf("command file: %q", c)
	}
	if log := e.lastLog(); log["record_age_s"] != float64(0) || !strings.Contains(fmt.Sprint(log["agent_note"]), "the same fault under another id") {
		t.Fatalf("log: %v", log)
	}
	e.cfg.FaultSince = time.Time{}
	r = e.run("CRITICAL", "HARD", 3, "3")
	expect(t, r, 1, "back-off at the agent: restarts of this service are spaced out; next restart allowed in 2m0s (a restart ran 0s ago (fault 1, ok); the request does not say when fault 3 began")
	if r.Hold == nil || r.Hold.Rule != "backoff" || l.Actions(t) != 1 || strings.Contains(r.Line, "ok,") {
		t.Fatalf("hold %+v, %d actions", r.Hold, l.Actions(t))
	}
	if rec := e.record(); rec.Held == nil || rec.Held.Fault != "3" || rec.Held.RetryAt.Sub(e.clk.Now()) < 110*time.Second {
		t.Fatalf("record %+v", rec)
	}
	if c := e.commands(); !strings.Contains(c, "auto-healing deferred (backoff)") || strings.Contains(c, "auto-restart ok") {
		t.Fatalf("command file: %q", c)
	}
	// The dry run asks the agent, which would hold a fourth fault too; the
	// split brain's id would be answered from the record. Nothing runs.
	e.cfg.DryRun = true
	r = e.run("CRITICAL", "HARD", 3, "4")
	expect(t, r, 0, "the agent would hold it: restart demo on "+l.Addr()+": back-off at the agent")
	if len(r.Commands) != 1 || !strings.Contains(string(r.Commands[0]), "auto-healing deferred (backoff)") {
		t.Fatalf("dry-run commands %q", r.Commands)
	}
	e.cfg.FaultSince = e.clk.Now().Add(-5 * time.Second)
	expect(t, e.run("CRITICAL", "HARD", 3, "2"), 0, "the agent would not run it again: restart demo on "+l.Addr()+": ok, not run again")
	if l.Actions(t) != 1 || e.commands() != "" {
		t.Fatal("a dry run ran or wrote something")
	}
}

// TestRunNagiosSoftAttempt: Nagios' sequence with --soft-attempt 2. The
// HARD 3 of the fault restarted at SOFT 2 asks again with the same fault
// ($SERVICEPROBLEMID$), and the agent answers from its record.
func TestRunNagiosSoftAttempt(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	e.cfg.SoftAttempt = 2
	steps := []struct {
		state, typ string
		attempt    int
		fault      string
		line       string
		actions    int
	}{
		{"CRITICAL", "SOFT", 1, "101", "waiting for attempt 2", 0},
		{"CRITICAL", "SOFT", 2, "101", "ok in", 1},
		{"CRITICAL", "HARD", 3, "101", "not run again, answered from the agent's record", 1},
		{"OK", "HARD", 3, "0", "recovered", 1},
		{"CRITICAL", "SOFT", 1, "102", "waiting", 1},
		{"CRITICAL", "SOFT", 2, "102", "ok in", 2},
		{"OK", "SOFT", 3, "0", "recovered", 2},
		{"WARNING", "HARD", 3, "103", "never triggers", 2},
		{"UNKNOWN", "HARD", 3, "103", "never triggers", 2},
	}
	for i, s := range steps {
		r := e.run(s.state, s.typ, s.attempt, s.fault)
		expect(t, r, 0, s.line)
		if got := l.Actions(t); got != s.actions {
			t.Fatalf("step %d (%s %s %d): %d actions, want %d", i, s.state, s.typ, s.attempt, got, s.actions)
		}
	}
}

// TestRunIcingaSequence: Icinga calls OK HARD 1 at start-up and resets the
// attempt to 1 at HARD; its fault id is $service.last_state_change$.
func TestRunIcingaSequence(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	steps := []struct {
		state, typ string
		attempt    int
		fault      string
		actions    int
	}{
		{"OK", "HARD", 1, "1764020000.000001", 0},
		{"CRITICAL", "SOFT", 1, "1764024000.123456", 0},
		{"CRITICAL", "SOFT", 2, "1764024000.123456", 0},
		{"CRITICAL", "HARD", 1, "1764024000.123456", 1},
		{"OK", "HARD", 1, "1764024300.5", 1},
		{"CRITICAL", "SOFT", 1, "1764025000.25", 1},
		{"CRITICAL", "HARD", 1, "1764025000.25", 2},
		// The other HA endpoint runs the same handler for the same fault.
		{"CRITICAL", "HARD", 1, "1764025000.25", 2},
	}
	for i, s := range steps {
		r := e.run(s.state, s.typ, s.attempt, s.fault)
		if r.Code != 0 {
			t.Fatalf("step %d: exit %d %s", i, r.Code, r.Line)
		}
		if got := l.Actions(t); got != s.actions {
			t.Fatalf("step %d (%s %s %d): %d actions, want %d", i, s.state, s.typ, s.attempt, got, s.actions)
		}
	}
}

// TestRunOncePerFault: one restart per fault however often it is asked,
// and a new fault (even without the OK call in between) is restarted.
func TestRunOncePerFault(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	expect(t, e.run("CRITICAL", "HARD", 3, "1"), 0, "ok in")
	expect(t, e.run("CRITICAL", "HARD", 3, "1"), 0, "not run again, answered from the agent's record")
	expect(t, e.run("CRITICAL", "SOFT", 1, "2"), 0, "waiting for the HARD state")
	expect(t, e.run("CRITICAL", "HARD", 3, "2"), 0, "ok in")

	// The same with --soft-attempt 1, where SOFT 1 itself restarts.
	e.cfg.SoftAttempt = 1
	expect(t, e.run("CRITICAL", "SOFT", 1, "3"), 0, "ok in")
	r := e.run("CRITICAL", "HARD", 3, "3")
	expect(t, r, 0, "not run again, answered from the agent's record")
	if r.Reply.Origin != protocol.OriginRecorded || e.record().Origin != "recorded" {
		t.Fatalf("origin %s, record %+v", r.Reply.Origin, e.record())
	}
	if l.Actions(t) != 3 {
		t.Fatalf("%d actions, want 3", l.Actions(t))
	}
}

// TestRunConcurrentHandlers: handlers racing on one fault (Icinga's two HA
// endpoints, a gearman duplicate) restart it once; all say it is healed.
func TestRunConcurrentHandlers(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	e.cfg.CommandFile = ""
	var wg sync.WaitGroup
	results := make([]handler.Result, 6)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := e.cfg
			cfg.Event = handler.Event{State: nagios.Critical, Type: handler.Hard, Attempt: 3}
			cfg.Fault = "42"
			results[i] = handler.Run(context.Background(), cfg, handler.Deps{Now: e.clk.Now, Log: zerolog.Nop()})
		}()
	}
	wg.Wait()
	ran := 0
	for _, r := range results {
		if r.Code != 0 || r.Reply == nil {
			t.Fatalf("exit %d: %s", r.Code, r.Line)
		}
		if r.Reply.Origin == protocol.OriginRun {
			ran++
		}
	}
	if ran != 1 || l.Actions(t) != 1 {
		t.Fatalf("%d replies say they ran it, listener ran %d actions; want 1 and 1", ran, l.Actions(t))
	}
}

// TestRunRecordIsAdvisory: the state directory never decides. A corrupt
// record or a missing directory does not stop a restart; the failure to
// record is logged.
func TestRunRecordIsAdvisory(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	t.Run("corrupt", func(t *testing.T) {
		e := newEnv(t, l)
		p := nodestate.Store{Dir: e.state}.Path("web1", "Worker")
		os.WriteFile(p, []byte("{not json"), 0o600)
		expect(t, e.run("CRITICAL", "HARD", 3, "1"), 0, "ok in")
		if rec := e.record(); rec.Result != "healed" {
			t.Fatalf("record %+v", rec)
		}
	})
	t.Run("missing dir", func(t *testing.T) {
		e := newEnv(t, l)
		e.cfg.StateDir = filepath.Join(e.state, "nope")
		r := e.run("CRITICAL", "HARD", 3, "2")
		expect(t, r, 0, "ok in")
		if m := e.lastLog(); !strings.Contains(fmt.Sprint(m["record_error"]), "state directory") || m["level"] != "info" {
			t.Fatalf("log %v", m)
		}
		if c := e.commands(); !strings.Contains(c, "auto-restart ok in") {
			t.Fatalf("command file: %q", c)
		}
	})
	if l.Actions(t) != 2 {
		t.Fatalf("%d actions, want 2", l.Actions(t))
	}
}

func TestRunDryRun(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	e.cfg.DryRun = true
	r := e.run("CRITICAL", "HARD", 3, "7")
	expect(t, r, 0, "dry-run: would send restart demo to "+l.Addr()+" (agent "+l.Agent+", fault 7, began: not given; HARD CRITICAL); the agent says: a restart would run now (restart 1 of 3 in 1h); no earlier answer recorded here; would write 2 command(s)")
	if len(r.Commands) != 2 || !strings.HasPrefix(string(r.Commands[1]), "SCHEDULE_FORCED_SVC_CHECK;web1;Worker;") {
		t.Fatalf("commands %q", r.Commands)
	}
	if l.Actions(t) != 0 || e.commands() != "" {
		t.Fatal("dry-run sent or wrote something")
	}
	if _, err := os.Stat(nodestate.Store{Dir: e.state}.Path("web1", "Worker")); err == nil {
		t.Fatal("dry-run wrote the state")
	}
	if left, _ := os.ReadDir(e.state); len(left) != 0 {
		t.Fatalf("dry-run wrote in the state directory: %v", left)
	}
	// After a real restart, a dry run shows the agent's last answer.
	e.cfg.DryRun = false
	expect(t, e.run("CRITICAL", "HARD", 3, "7"), 0, "ok in")
	e.cfg.DryRun = true
	e.clk.Advance(30 * time.Second)
	expect(t, e.run("CRITICAL", "HARD", 3, "8"), 0, "; the agent's last answer here, 30s ago: healed (ok, run), budget 1/3 per 1h0m0s; would write 2")
	if l.Actions(t) != 1 {
		t.Fatalf("%d actions", l.Actions(t))
	}
}

// TestRunCancelled: a cancelled context (Nagios' timeout, SIGTERM) ends the
// request at once. It was sent, so the line says it may have run.
func TestRunCancelled(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	e.cfg.Conn.Target = "slow"
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	cfg := e.cfg
	cfg.Event = handler.Event{State: nagios.Critical, Type: handler.Hard, Attempt: 3}
	cfg.Fault = "9"
	start := time.Now()
	r := handler.Run(ctx, cfg, e.deps())
	expect(t, r, 2, "restart slow on "+l.Addr()+": request sent, no reply within the deadline: the restart may have run; check the agent's audit log for fault 9")
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %s after a 300ms cancel", took)
	}
	if rec := e.record(); rec.Result != "no-reply" || rec.Fault != "9" {
		t.Fatalf("record %+v", rec)
	}
	if c := e.commands(); !strings.Contains(c, ";1;handle_worker;auto-restart unconfirmed: ") {
		t.Fatalf("command file: %q", c)
	}
}

// TestRunSkew: a clock outside the agent's replay window is refused with a
// signed reply that gives the agent's time; the handler says "check NTP".
// delayedDoer is a real client on a clock that runs 20 min behind until its
// request is answered: to the handler the request was signed 20 min before
// the reply came, as a stalled handler or network would make it, while
// the clocks agree.
type delayedDoer struct {
	c   *protocol.Client
	off *atomic.Int64
}

func (d delayedDoer) Send(ctx context.Context, q protocol.Call) (protocol.Reply, error) {
	r, err := d.c.Send(ctx, q)
	d.off.Store(0)
	return r, err
}

func (d delayedDoer) Do(ctx context.Context, v protocol.Verb, service, fault string) (protocol.Reply, error) {
	r, err := d.c.Do(ctx, v, service, fault)
	d.off.Store(0)
	return r, err
}

// TestRunDelayed (issue 18): a request that reached the agent after its
// replay window, with the clocks agreeing, is reported as delayed, not as
// a clock to fix with NTP.
func TestRunDelayed(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	var off atomic.Int64
	off.Store(int64(-20 * time.Minute))
	deps := handler.Deps{Now: func() time.Time { return time.Now().Add(time.Duration(off.Load())) }, Log: zerolog.New(e.logs),
		Dial: func(c protocol.ClientConfig) (handler.Doer, error) {
			cl, err := protocol.NewClient(c)
			return delayedDoer{c: cl, off: &off}, err
		}}
	cfg := e.cfg
	cfg.Fault = "7"
	cfg.Event, _ = handler.ParseEvent("CRITICAL", "HARD", 3)
	r := handler.Run(context.Background(), cfg, deps)
	expect(t, r, 2, "skew: the request reached the agent too late: 20m0s after it was signed, longer than its replay window; the clocks agree (off by 0 s)")
	if strings.Contains(r.Line, "check NTP") || !strings.Contains(r.Line, "(the agent: timestamp 1200s in the past (window ") || l.Actions(t) != 0 {
		t.Fatalf("line %q, %d actions", r.Line, l.Actions(t))
	}
}

func TestRunSkew(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	e.clk.Advance(20 * time.Minute)
	r := e.run("CRITICAL", "HARD", 3, "7")
	expect(t, r, 2, "restart demo on "+l.Addr()+": skew: clock off by ")
	expect(t, r, 2, "check NTP")
	m := regexp.MustCompile(`clock off by (\d+) s from the agent \(its time \S+, ours \S+\)`).FindStringSubmatch(r.Line)
	if m == nil {
		t.Fatalf("line %q", r.Line)
	}
	if n, _ := strconv.Atoi(m[1]); n < 1180 || n > 1201 {
		t.Fatalf("offset %d s for a clock 20 minutes ahead", n)
	}
	if r.Attempts != 1 || l.Actions(t) != 0 {
		t.Fatalf("%d attempts, %d actions", r.Attempts, l.Actions(t))
	}
	if c := e.commands(); !strings.Contains(c, ";1;handle_worker;auto-restart failed: ") || !strings.Contains(c, "check NTP") {
		t.Fatalf("command file: %q", c)
	}
}

// proxy sits between the handler and the agent. Per connection, in order,
// it follows its script; after the script it forwards.
//
//	drop          forwards the request, reads the agent's whole reply (so
//	              the agent has acted), and closes without passing it on
//	reset         the same, then resets the connection
//	old           denies a 10-field (extended) frame unsigned, as an agent
//	              older than the extended form does, and forwards any other
//	busy          answers the unsigned busy refusal itself
//	rate-limited  answers the unsigned rate-limited refusal itself
type proxy struct {
	ln       net.Listener
	upstream string
	mu       sync.Mutex
	script   []string
	conns    int
}

func startProxy(t *testing.T, upstream string, script ...string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, upstream: upstream, script: script}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			mode := "forward"
			if p.conns < len(p.script) {
				mode = p.script[p.conns]
			}
			p.conns++
			p.mu.Unlock()
			go p.handle(c.(*net.TCPConn), mode)
		}
	}()
	return p
}

func (p *proxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *proxy) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns
}

func (p *proxy) handle(c *net.TCPConn, mode string) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	switch mode {
	case "old":
		// An agent older than the extended form: the unsigned denied to a
		// 10-field frame, the agent's own answer to any other.
		br := bufio.NewReader(c)
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		if len(strings.Fields(line)) == 10 {
			c.Write([]byte("SH2 - denied - -1 0 0 - - -\n"))
			return
		}
		u, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
		if err != nil {
			return
		}
		defer u.Close()
		u.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := u.Write([]byte(line)); err == nil {
			io.Copy(c, u)
		}
		return
	case "busy", "rate-limited":
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			return
		}
		c.Write([]byte("SH2 - " + mode + " - -1 0 0 - - -\n"))
		return
	}
	u, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		return
	}
	defer u.Close()
	u.SetDeadline(time.Now().Add(30 * time.Second))
	go io.Copy(u, c)
	if mode == "forward" {
		io.Copy(c, u)
		return
	}
	io.Copy(io.Discard, u) // until the agent has answered and closed
	if mode == "reset" {
		c.SetLinger(0)
	}
}

// TestRunLostReplies: the request reaches the agent and its reply is lost
// (dropped, or the connection reset), twice. The handler retries the same
// fault with new nonces: the action runs exactly once, and the handler
// ends with the true outcome, ok from the agent's record, exit 0.
func TestRunLostReplies(t *testing.T) {
	for _, mode := range []string{"drop", "reset"} {
		t.Run(mode, func(t *testing.T) {
			l := rigtest.StartHandlerListener(t)
			e := newEnv(t, l)
			p := startProxy(t, l.Addr(), mode, mode)
			e.cfg.Conn.Port = p.port()
			r := e.run("CRITICAL", "HARD", 3, "77")
			expect(t, r, 0, "not run again, answered from the agent's record")
			expect(t, r, 0, "after 3 attempts")
			if r.Reply == nil || r.Reply.Outcome != protocol.OutcomeOK || r.Reply.Origin != protocol.OriginRecorded || r.Attempts != 3 || p.count() != 3 {
				t.Fatalf("reply %+v after %d attempts (%d connections)", r.Reply, r.Attempts, p.count())
			}
			if got := l.Actions(t); got != 1 {
				t.Fatalf("one fault, %d runs of the action", got)
			}
			if rec := e.record(); rec.Origin != "recorded" || rec.Result != "already" || rec.Attempts != 3 {
				t.Fatalf("record %+v", rec)
			}
			if c := e.commands(); !strings.Contains(c, ";0;handle_worker;auto-restart ok: not run again, answered from the agent's record") {
				t.Fatalf("command file: %q", c)
			}
		})
	}
}

// TestRunRefusalsRetried: busy and rate-limited come before anything runs;
// they are retried within the deadline, never counted, and the restart
// then runs once.
func TestRunRefusalsRetried(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	for i, mode := range []string{"busy", "rate-limited"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, l)
			p := startProxy(t, l.Addr(), mode, mode, mode)
			e.cfg.Conn.Port = p.port()
			r := e.run("CRITICAL", "HARD", 3, strconv.Itoa(100+i))
			expect(t, r, 0, "ok in 0s (budget "+strconv.Itoa(i+1)+"/3 per 1h0m0s) after 4 attempts")
			if r.Reply.Origin != protocol.OriginRun || r.Attempts != 4 || l.Actions(t) != i+1 {
				t.Fatalf("origin %s, %d attempts, %d actions", r.Reply.Origin, r.Attempts, l.Actions(t))
			}
		})
	}
	// Refused until the deadline: exit 2, and the line says nothing ran.
	e := newEnv(t, l)
	p := startProxy(t, l.Addr(), slices("busy", 1000)...)
	e.cfg.Conn.Port = p.port()
	e.cfg.Deadline = 2 * time.Second
	r := e.run("CRITICAL", "HARD", 3, "200")
	expect(t, r, 2, "busy on every try (nothing ran for these requests: the agent's connection slots were full")
	if r.Attempts < 3 || l.Actions(t) != 2 {
		t.Fatalf("%d attempts, %d actions", r.Attempts, l.Actions(t))
	}
}

func slices(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestSend(t *testing.T) {
	l := rigtest.StartHandlerListener(t, rigtest.HandlerOptions{Budget: &rig.Budget{Max: 2, Window: "1h", MinGap: "0s"}})
	e := newEnv(t, l)
	sc := handler.SendConfig{Conn: e.cfg.Conn, Deadline: 20 * time.Second, StateDir: e.state,
		HostName: "web1", ServiceDesc: "Worker"}

	sc.Verb = protocol.VerbStatus
	r := handler.Send(context.Background(), sc, e.deps())
	if r.Code != 0 || !strings.Contains(r.Line, "status demo on "+l.Addr()+" ok in") || !strings.Contains(r.Line, "\ndemo is running\npid 42") {
		t.Fatalf("status: exit %d %q", r.Code, r.Line)
	}
	sc.Verb = protocol.VerbPing
	if r := handler.Send(context.Background(), sc, e.deps()); r.Code != 0 {
		t.Fatalf("ping: %d %q", r.Code, r.Line)
	}
	if _, err := os.Stat(nodestate.Store{Dir: e.state}.Path("web1", "Worker")); err == nil {
		t.Fatal("status/ping were recorded")
	}

	// Each manual restart has a fault of its own, and the agent's budget
	// counts it.
	sc.Verb = protocol.VerbRestart
	r = handler.Send(context.Background(), sc, e.deps())
	if r.Code != 0 || !strings.Contains(r.Line, "restart demo on "+l.Addr()+" ok in 0s (budget 1/2 per 1h0m0s); fault manual-") ||
		!strings.Contains(r.Line, "recorded in "+e.state) {
		t.Fatalf("restart: exit %d %q", r.Code, r.Line)
	}
	rec := e.record()
	if rec.Source != "manual" || rec.Result != "healed" || !strings.HasPrefix(rec.Fault, "manual-") {
		t.Fatalf("record %+v", rec)
	}
	r = handler.Send(context.Background(), sc, e.deps())
	if r.Code != 0 || !strings.Contains(r.Line, "(budget 2/2 per 1h0m0s)") || !strings.Contains(r.Line, "automatic restarts are suspended until it frees up in ") {
		t.Fatalf("second restart: exit %d %q", r.Code, r.Line)
	}
	if e.record().Fault == rec.Fault {
		t.Fatal("two manual restarts with one fault id")
	}
	// The manual restarts spent the budget: the event handler is refused.
	expect(t, e.run("CRITICAL", "HARD", 3, "5"), 1, "restart budget spent at the agent: 2/2 in 1h0m0s")
	// And so is a third manual restart: one budget for every caller.
	r = handler.Send(context.Background(), sc, e.deps())
	if r.Code != 1 || !strings.Contains(r.Line, "restart budget spent at the agent") {
		t.Fatalf("third restart: exit %d %q", r.Code, r.Line)
	}
	if l.Actions(t) != 2 {
		t.Fatalf("%d actions, want 2", l.Actions(t))
	}
	sc.Conn.Port = rigtest.ClosedPort(t)
	sc.Deadline = 2 * time.Second
	if r := handler.Send(context.Background(), sc, e.deps()); r.Code != 2 || !strings.Contains(r.Line, "unreachable") {
		t.Fatalf("unreachable: %d %q", r.Code, r.Line)
	}
}
