package handler_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/selfheal/selfheal/internal/handler"
	"github.com/selfheal/selfheal/internal/lab/rig/rigtest"
	"github.com/selfheal/selfheal/internal/nagios"
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
		HostName: "web1", ServiceDesc: "Worker",
		Conn:   handler.Conn{Address: l.Host, Port: l.Port, Target: "demo", Key: l.Key},
		Action: protocol.VerbRestart, StateDir: state,
		Budget:      handler.Budget{Max: 3, Window: time.Hour, MinGap: 0},
		Deadline:    20 * time.Second,
		CommandFile: fifo, Recheck: 2 * time.Second,
	}
	return e
}

func (e *env) deps() handler.Deps {
	return handler.Deps{Now: e.clk.Now, Log: zerolog.New(e.logs)}
}

func (e *env) run(state, typ string, attempt int) handler.Result {
	e.t.Helper()
	ev, err := handler.ParseEvent(state, typ, attempt)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := e.cfg
	cfg.Event = ev
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

func (e *env) stateFile() handler.StateFile {
	e.t.Helper()
	b, err := os.ReadFile(handler.Store{Dir: e.state}.Path(e.cfg.HostName, e.cfg.ServiceDesc))
	if err != nil {
		e.t.Fatal(err)
	}
	var st handler.StateFile
	if err := json.Unmarshal(b, &st); err != nil {
		e.t.Fatal(err)
	}
	return st
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
	r := e.run("CRITICAL", "HARD", 3)
	expect(t, r, 0, "restart demo on "+l.Addr()+" ok in")
	if got := l.Actions(t); got != 1 {
		t.Fatalf("listener ran %d actions, want 1", got)
	}
	now := e.clk.Now().Unix()
	want := fmt.Sprintf("[%d] ADD_SVC_COMMENT;web1;Worker;0;handle_worker;auto-restart ok in 0s (restart demo via %s after CRITICAL HARD 3)\n"+
		"[%d] SCHEDULE_FORCED_SVC_CHECK;web1;Worker;%d\n", now, l.Addr(), now, now+2)
	if got := e.commands(); got != want {
		t.Fatalf("command file got\n%q\nwant\n%q", got, want)
	}
	st := e.stateFile()
	if len(st.Restarts) != 1 || st.Restarts[0].Outcome != handler.RecordOK || st.Restarts[0].Source != "event" || st.Episode == nil {
		t.Fatalf("state %+v", st)
	}
	var logLine map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(e.logs.Bytes()), &logLine); err != nil {
		t.Fatalf("log is not one JSON line: %v\n%s", err, e.logs)
	}
	if logLine["outcome"] != "ok" || logLine["decision"] != "restart" || logLine["host"] != "web1" {
		t.Fatalf("log line %v", logLine)
	}
	if strings.Contains(e.logs.String(), fmt.Sprintf("%x", l.Key.Secret)) {
		t.Fatal("the key's secret is in the log")
	}
}

func TestRunListenerDown(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	e.cfg.Conn.Port = rigtest.ClosedPort(t)
	e.cfg.Deadline = 4 * time.Second
	start := time.Now()
	r := e.run("CRITICAL", "HARD", 3)
	took := time.Since(start)
	expect(t, r, 2, "unreachable")
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
	st := e.stateFile()
	if len(st.Restarts) != 1 || st.Restarts[0].Outcome != handler.RecordFailed {
		t.Fatalf("a failed attempt must still count: %+v", st.Restarts)
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
	r := e.run("CRITICAL", "HARD", 3)
	expect(t, r, 2, "denied")
	if r.Attempts != 1 {
		t.Fatalf("a denial was retried: %d attempts", r.Attempts)
	}
	if l.Actions(t) != 0 {
		t.Fatal("the listener ran an action for a wrong key")
	}
}

func TestRunActionOutcomes(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	tests := []struct {
		target, line, outcome string
	}{
		{"slow", "restart slow on " + l.Addr() + ": timeout (action killed after", "timeout"},
		{"failing", "failed (action exit 7", "failed"},
		{"nosuch", "denied", "denied"},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			e := newEnv(t, l)
			e.cfg.Conn.Target = tt.target
			r := e.run("CRITICAL", "HARD", 3)
			expect(t, r, 2, tt.line)
			if r.Reply == nil || string(r.Reply.Outcome) != tt.outcome || r.Attempts != 1 {
				t.Fatalf("reply %+v after %d attempts", r.Reply, r.Attempts)
			}
			if c := e.commands(); !strings.Contains(c, ";1;handle_worker;auto-restart failed: ") {
				t.Fatalf("command file: %q", c)
			}
		})
	}
}

// TestRunBudget: restarts that heal (OK in between) are bounded by Max;
// the next one is refused, Nagios is told, and a human must look.
func TestRunBudget(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	// Small numbers: the fake clock also stamps requests, and the listener
	// accepts them within its 10 m replay window.
	e.cfg.Budget = handler.Budget{Max: 2, Window: 5 * time.Minute, MinGap: time.Minute}
	for i := 0; i < 2; i++ {
		expect(t, e.run("CRITICAL", "HARD", 3), 0, "ok in")
		expect(t, e.run("OK", "HARD", 3), 0, "recovered")
		e.clk.Advance(90 * time.Second)
	}
	e.commands()
	r := e.run("CRITICAL", "HARD", 3)
	expect(t, r, 1, "restart budget exhausted: 2 restarts in the last 5m0s (max 2)")
	if l.Actions(t) != 2 {
		t.Fatalf("listener ran %d actions, want 2", l.Actions(t))
	}
	if c := e.commands(); !strings.Contains(c, ";1;handle_worker;auto-healing suspended: restart budget exhausted") || !strings.Contains(c, "a human must look") {
		t.Fatalf("command file: %q", c)
	}
	if !strings.Contains(e.logs.String(), `"level":"warn"`) {
		t.Fatal("no warning logged for the spent budget")
	}
	// The window moves on: 5 minutes after the first restart one is free.
	e.clk.Advance(2 * time.Minute)
	expect(t, e.run("CRITICAL", "HARD", 3), 0, "ok in")
}

func TestRunMinGap(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	e.cfg.Budget = handler.Budget{Max: 3, Window: time.Hour, MinGap: 2 * time.Minute}
	expect(t, e.run("CRITICAL", "HARD", 3), 0, "ok in")
	expect(t, e.run("OK", "HARD", 3), 0, "recovered")
	e.clk.Advance(time.Minute)
	e.commands()
	expect(t, e.run("CRITICAL", "HARD", 3), 1, "last restart only 1m0s ago (min gap 2m0s)")
	if c := e.commands(); !strings.Contains(c, "auto-restart held back") {
		t.Fatalf("command file: %q", c)
	}
	e.clk.Advance(61 * time.Second)
	expect(t, e.run("CRITICAL", "HARD", 3), 0, "ok in")
	if l.Actions(t) != 2 {
		t.Fatalf("listener ran %d actions, want 2", l.Actions(t))
	}
}

// TestRunNagiosSoftAttempt: Nagios' sequence with --soft-attempt 2. The
// restart at SOFT 2 is not repeated at HARD 3; an OK closes the episode.
func TestRunNagiosSoftAttempt(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	e.cfg.SoftAttempt = 2
	steps := []struct {
		state, typ string
		attempt    int
		line       string
		actions    int
	}{
		{"CRITICAL", "SOFT", 1, "waiting for attempt 2", 0},
		{"CRITICAL", "SOFT", 2, "ok in", 1},
		{"CRITICAL", "HARD", 3, "already restarted in this episode", 1},
		{"OK", "HARD", 3, "recovered", 1},
		{"CRITICAL", "SOFT", 1, "waiting", 1},
		{"CRITICAL", "SOFT", 2, "ok in", 2},
		{"OK", "SOFT", 3, "recovered", 2},
		{"WARNING", "HARD", 3, "never triggers", 2},
		{"UNKNOWN", "HARD", 3, "never triggers", 2},
	}
	for i, s := range steps {
		r := e.run(s.state, s.typ, s.attempt)
		expect(t, r, 0, s.line)
		if got := l.Actions(t); got != s.actions {
			t.Fatalf("step %d (%s %s %d): %d actions, want %d", i, s.state, s.typ, s.attempt, got, s.actions)
		}
	}
}

// TestRunIcingaSequence: Icinga calls OK HARD 1 at start-up and resets the
// attempt to 1 at HARD.
func TestRunIcingaSequence(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	steps := []struct {
		state, typ string
		attempt    int
		actions    int
	}{
		{"OK", "HARD", 1, 0},
		{"CRITICAL", "SOFT", 1, 0},
		{"CRITICAL", "SOFT", 2, 0},
		{"CRITICAL", "HARD", 1, 1},
		{"OK", "HARD", 1, 1},
		{"CRITICAL", "SOFT", 1, 1},
		{"CRITICAL", "HARD", 1, 2},
	}
	for i, s := range steps {
		r := e.run(s.state, s.typ, s.attempt)
		if r.Code != 0 {
			t.Fatalf("step %d: exit %d %s", i, r.Code, r.Line)
		}
		if got := l.Actions(t); got != s.actions {
			t.Fatalf("step %d (%s %s %d): %d actions, want %d", i, s.state, s.typ, s.attempt, got, s.actions)
		}
	}
}

// TestRunMissedRecovery: if the OK call was lost, the next fault's SOFT 1
// still starts a new episode, so its HARD state is healed.
func TestRunMissedRecovery(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	expect(t, e.run("CRITICAL", "HARD", 3), 0, "ok in")
	expect(t, e.run("CRITICAL", "SOFT", 1), 0, "waiting for the HARD state")
	if e.stateFile().Episode != nil {
		t.Fatal("SOFT 1 did not end the old episode")
	}
	expect(t, e.run("CRITICAL", "HARD", 3), 0, "ok in")

	// The same with --soft-attempt 1, where SOFT 1 itself restarts.
	e.cfg.SoftAttempt = 1
	expect(t, e.run("CRITICAL", "SOFT", 1), 0, "ok in")
	expect(t, e.run("CRITICAL", "HARD", 3), 0, "already restarted")
	if l.Actions(t) != 3 {
		t.Fatalf("%d actions, want 3", l.Actions(t))
	}
}

// TestRunConcurrentHandlers: handlers racing on one service restart it once.
func TestRunConcurrentHandlers(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	e.cfg.CommandFile = ""
	var wg sync.WaitGroup
	codes := make([]handler.Result, 6)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := e.cfg
			cfg.Event = handler.Event{State: nagios.Critical, Type: handler.Hard, Attempt: 3}
			codes[i] = handler.Run(context.Background(), cfg, handler.Deps{Now: e.clk.Now, Log: zerolog.Nop()})
		}()
	}
	wg.Wait()
	restarts := 0
	for _, r := range codes {
		if r.Code != 0 {
			t.Errorf("exit %d: %s", r.Code, r.Line)
		}
		if r.Decision.Action == handler.Restart {
			restarts++
		}
	}
	if restarts != 1 || l.Actions(t) != 1 {
		t.Fatalf("%d handlers restarted, listener ran %d actions; want 1 and 1", restarts, l.Actions(t))
	}
}

func TestRunFailsClosed(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	t.Run("corrupt", func(t *testing.T) {
		e := newEnv(t, l)
		p := handler.Store{Dir: e.state}.Path("web1", "Worker")
		os.WriteFile(p, []byte("{not json"), 0o600)
		r := e.run("CRITICAL", "HARD", 3)
		expect(t, r, 1, "failing closed")
		expect(t, r, 1, "delete it to re-arm")
		if c := e.commands(); !strings.Contains(c, ";1;handle_worker;auto-healing suspended: ") {
			t.Fatalf("command file: %q", c)
		}
	})
	t.Run("missing dir", func(t *testing.T) {
		e := newEnv(t, l)
		e.cfg.StateDir = filepath.Join(e.state, "nope")
		expect(t, e.run("CRITICAL", "HARD", 3), 1, "failing closed: handler state unusable: state directory")
		// Nothing to heal: not a failure, but it is said.
		expect(t, e.run("OK", "HARD", 3), 0, "handler state is unusable")
	})
	if l.Actions(t) != 0 {
		t.Fatal("restarted without a usable budget state")
	}
}

func TestRunDryRun(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	e.cfg.DryRun = true
	r := e.run("CRITICAL", "HARD", 3)
	expect(t, r, 0, "dry-run: would send restart demo to "+l.Addr()+" (HARD CRITICAL; budget 0/3 used in 1h0m0s)")
	if len(r.Commands) != 2 || !strings.HasPrefix(string(r.Commands[1]), "SCHEDULE_FORCED_SVC_CHECK;web1;Worker;") {
		t.Fatalf("commands %q", r.Commands)
	}
	if l.Actions(t) != 0 || e.commands() != "" {
		t.Fatal("dry-run sent or wrote something")
	}
	if _, err := os.Stat(handler.Store{Dir: e.state}.Path("web1", "Worker")); err == nil {
		t.Fatal("dry-run wrote the state")
	}
}

// TestRunDeadlineWithSIGKILLLikeCancel: a cancelled context (Nagios'
// timeout, SIGTERM) ends the request at once and leaves a valid state.
func TestRunCancelled(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	e.cfg.Conn.Target = "slow"
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	cfg := e.cfg
	cfg.Event = handler.Event{State: nagios.Critical, Type: handler.Hard, Attempt: 3}
	r := handler.Run(ctx, cfg, e.deps())
	if r.Code != 2 {
		t.Fatalf("exit %d: %s", r.Code, r.Line)
	}
	st := e.stateFile()
	if len(st.Restarts) != 1 || st.Restarts[0].Outcome == handler.RecordOK {
		t.Fatalf("state %+v", st.Restarts)
	}
}

func TestSend(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	sc := handler.SendConfig{Conn: e.cfg.Conn, Deadline: 20 * time.Second, StateDir: e.state,
		HostName: "web1", ServiceDesc: "Worker", Budget: handler.Budget{Max: 1, Window: time.Hour}}

	sc.Verb = protocol.VerbStatus
	r := handler.Send(context.Background(), sc, e.deps())
	if r.Code != 0 || !strings.Contains(r.Line, "status demo on "+l.Addr()+" ok in") || !strings.Contains(r.Line, "\ndemo is running\npid 42") {
		t.Fatalf("status: exit %d %q", r.Code, r.Line)
	}
	sc.Verb = protocol.VerbPing
	if r := handler.Send(context.Background(), sc, e.deps()); r.Code != 0 {
		t.Fatalf("ping: %d %q", r.Code, r.Line)
	}
	if _, err := os.Stat(handler.Store{Dir: e.state}.Path("web1", "Worker")); err == nil {
		t.Fatal("status/ping were recorded as restarts")
	}

	sc.Verb = protocol.VerbRestart
	r = handler.Send(context.Background(), sc, e.deps())
	if r.Code != 0 || !strings.Contains(r.Line, "restart demo on "+l.Addr()+" ok in") || !strings.Contains(r.Line, "automatic restarts are suspended") {
		t.Fatalf("restart: exit %d %q", r.Code, r.Line)
	}
	st := e.stateFile()
	if len(st.Restarts) != 1 || st.Restarts[0].Source != "manual" || st.Restarts[0].Outcome != handler.RecordOK || st.Episode != nil {
		t.Fatalf("state %+v", st)
	}
	// The manual restart spent the budget of 1: the handler holds back.
	e.cfg.Budget = sc.Budget
	expect(t, e.run("CRITICAL", "HARD", 3), 1, "budget exhausted")
	// But a human is never refused.
	if r := handler.Send(context.Background(), sc, e.deps()); r.Code != 0 {
		t.Fatalf("second manual restart refused: %q", r.Line)
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
