package handler_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/rig/rigtest"
	"github.com/selfheal/selfheal/internal/lab/testutil"
	"github.com/selfheal/selfheal/internal/protocol"
)

// The agents of a rolling upgrade. oldAgentCommit is the last commit
// before the extended request form: the first parent of the merge that
// brought it (9e2f9a5). Its agent has the reply MAC of today (the agent
// once) and denies a 10-field frame. firstMACCommit is SH2 as first
// released, before 0b1fabd: its agent also signs replies with the agent
// a second time, which today's client accepts as that first MAC, flagged.
const (
	oldAgentCommit = "099bea987b326104b3960b6668ff45d0425ec124"
	firstMACCommit = "3cf27a983ffccd28cb0cb4e65a2de891af2ed855"
)

// oldAgent builds worker_listener as it was at commit, from `git archive`
// into a temp dir (the build cache makes it about a second).
func oldAgent(t *testing.T, commit string) string {
	t.Helper()
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("no git checkout to build the old agent from: %v", err)
	}
	root := strings.TrimSpace(string(top))
	if err := exec.Command("git", "-C", root, "cat-file", "-e", commit+"^{commit}").Run(); err != nil {
		t.Skipf("commit %s is not in this checkout: %v", commit, err)
	}
	dir := t.TempDir()
	src, bin := filepath.Join(dir, "src"), filepath.Join(dir, "worker_listener")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	archive := exec.Command("git", "-C", root, "archive", commit)
	untar := exec.Command("tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	untar.Stdin = pipe
	if err := untar.Start(); err != nil {
		t.Fatal(err)
	}
	if err := archive.Run(); err != nil {
		untar.Wait()
		t.Fatalf("git archive: %v", err)
	}
	if err := untar.Wait(); err != nil {
		t.Fatalf("tar: %v", err)
	}
	t0 := time.Now()
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/worker_listener")
	build.Dir, build.Env = src, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the old agent: %v\n%s", err, out)
	}
	t.Logf("old agent (%s) built in %s", commit[:7], time.Since(t0).Round(time.Millisecond))
	return bin
}

// TestRunOldAgent: a rolling upgrade with the monitoring nodes first. A
// real agent from before the extended form denies the handler's extended
// request (unsigned, "malformed frame" in its audit log); the handler asks
// again in the short form within the same deadline, gets the true answer,
// and says the agent is old, in its line, log and comment.
func TestRunOldAgent(t *testing.T) {
	l := rigtest.StartHandlerListener(t, rigtest.HandlerOptions{Bin: oldAgent(t, oldAgentCommit), Budget: &rig.Budget{Max: 3, Window: "1h", MinGap: "2m"}})
	e := newEnv(t, l)
	e.cfg.FaultSince = e.clk.Now().Add(-5 * time.Second)
	r := e.run("CRITICAL", "HARD", 3, "1")
	expect(t, r, 0, "restart demo on "+l.Addr()+" ok in ")
	expect(t, r, 0, "; the agent is older than the extended request form (it denied it and answered the short one")
	if r.Attempts != 2 || !r.AgentOld || r.Reply.Extended || l.Actions(t) != 1 {
		t.Fatalf("%d attempts, old %v, reply %+v, %d actions", r.Attempts, r.AgentOld, r.Reply, l.Actions(t))
	}
	if log := e.lastLog(); log["agent_old"] != true || log["result"] != "healed" {
		t.Fatalf("log: %v", log)
	}
	if c := e.commands(); !strings.Contains(c, ";0;handle_worker;auto-restart ok in ") {
		t.Fatalf("command file: %q", c)
	}
	audit, _ := os.ReadFile(l.AuditLog)
	if !strings.Contains(string(audit), "malformed frame") {
		t.Fatalf("the old agent's audit log does not show the extended frame refused:\n%s", audit)
	}
	// What this order costs until the agent is upgraded: the old agent
	// answers any fault inside min_gap from its last restart, a new crash
	// included. The handler cannot tell, and its line says both.
	e.cfg.FaultSince = e.clk.Now()
	r = e.run("CRITICAL", "HARD", 3, "2")
	expect(t, r, 0, "already restarted for this fault by another request (or within the agent's min gap), not run again: ok")
	expect(t, r, 0, "the agent is older than the extended request form")
	if l.Actions(t) != 1 {
		t.Fatalf("%d actions", l.Actions(t))
	}
}

// TestRunShortFormNewAgent: the fallback cannot make a false "healed".
// Between the handler and a real new agent, a proxy denies every extended
// frame as an old agent would, so the handler falls back to the short
// form, which carries no fault age. The new agent reads that as "start
// not known": a fault inside min_gap is deferred, never ok, even the
// split brain's second id that the extended form has answered from the
// record (the safe side).
func TestRunShortFormNewAgent(t *testing.T) {
	l := rigtest.StartHandlerListener(t, rigtest.HandlerOptions{Budget: &rig.Budget{Max: 3, Window: "1h", MinGap: "2m"}})
	e := newEnv(t, l)
	old := make([]string, 32)
	for i := range old {
		old[i] = "old"
	}
	p := startProxy(t, l.Addr(), old...)
	direct := e.cfg.Conn
	e.cfg.Conn.Port = p.port()
	e.cfg.FaultSince = e.clk.Now().Add(-5 * time.Second)
	r := e.run("CRITICAL", "HARD", 3, "1")
	expect(t, r, 0, " ok in ")
	if r.Attempts != 2 || !r.AgentOld || p.count() != 2 || l.Actions(t) != 1 {
		t.Fatalf("%d attempts, old %v, %d connections, %d actions", r.Attempts, r.AgentOld, p.count(), l.Actions(t))
	}
	e.commands()
	// Fault 2 began before that restart: through the proxy (short form)
	// the agent cannot know, and defers it.
	r = e.run("CRITICAL", "HARD", 3, "2")
	expect(t, r, 1, "back-off at the agent: restarts of this service are spaced out; next restart allowed in ")
	expect(t, r, 1, "the request does not say when fault 2 began, so whether it covered this is unknown; min_gap 2m")
	if r.Hold == nil || r.Hold.Rule != "backoff" || r.Reply.Outcome != protocol.OutcomeBackoff || l.Actions(t) != 1 ||
		strings.Contains(r.Line, "ok,") || strings.Contains(r.Line, "ok in") {
		t.Fatalf("hold %+v, reply %+v, %d actions: %s", r.Hold, r.Reply, l.Actions(t), r.Line)
	}
	if c := e.commands(); !strings.Contains(c, "auto-healing deferred (backoff)") || strings.Contains(c, "auto-restart ok") {
		t.Fatalf("command file: %q", c)
	}
	// The same question in the extended form, straight to the agent: the
	// fault's age shows it the same failure, answered from the record.
	e.cfg.Conn = direct
	r = e.run("CRITICAL", "HARD", 3, "3")
	expect(t, r, 0, "ok, not run again, answered from the agent's record")
	if r.AgentOld || r.Attempts != 1 || l.Actions(t) != 1 {
		t.Fatalf("old %v, %d attempts, %d actions", r.AgentOld, r.Attempts, l.Actions(t))
	}
}

// TestRunSignedDenied: an action the agent refuses by its exec-time trust
// rule (its script handed to another user after the agent started) is a
// signed denied with the agent's reason: the line, the log and the
// comment carry its words, not "wrong key".
func TestRunSignedDenied(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the script must belong to another user (os.Chown)")
	}
	dir := t.TempDir()
	script, mark := filepath.Join(dir, "restart.sh"), filepath.Join(dir, "mark")
	f := rigtest.Prepare(t, rig.Kit{Dir: dir, Issue: testutil.Binary(t, "handle_worker"),
		Scripts: map[string]string{"restart.sh": "#!/bin/sh\necho restarted >> \"$MARK\"\necho restarted\n"},
		Config: rig.ListenerConfig{Listen: "127.0.0.1:1", Allow: rig.Loopback, AuditLog: filepath.Join(dir, "audit.log"),
			Budget: &rigtest.DefaultTestBudget, ReplayWindow: "10m", ShutdownGrace: "2s", Limits: rig.Limits{Rate: 1000, Burst: 1000},
			Services: []rig.Service{{Name: "demo", Actions: map[string]rig.Action{"restart": {
				Argv: []string{script}, Timeout: "10s", Env: map[string]string{"MARK": mark}}}}}}})
	ag := rigtest.Serve(t, rig.Serve{Bin: testutil.Binary(t, "worker_listener"), Config: f.Config, Log: filepath.Join(dir, "listener.log"),
		Activate: true, Ping: &f.Key, Timeout: 30 * time.Second})
	host, port, err := net.SplitHostPort(ag.Addr)
	if err != nil {
		t.Fatal(err)
	}
	l := &rigtest.HandlerListener{Host: host, Agent: f.Agent, KeyFile: f.FleetFile, Key: f.Fleet, Dir: dir, AuditLog: filepath.Join(dir, "audit.log")}
	if l.Port, err = strconv.Atoi(port); err != nil {
		t.Fatal(err)
	}
	marks := func() int { b, _ := os.ReadFile(mark); return strings.Count(string(b), "\n") }
	e := newEnv(t, l)
	expect(t, e.run("CRITICAL", "HARD", 3, "1"), 0, " ok in ")
	e.commands()
	if marks() != 1 {
		t.Fatalf("%d marks before the hand-over", marks())
	}
	if err := os.Lchown(script, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	r := e.run("CRITICAL", "HARD", 3, "2")
	why := "argv[0] " + script + ": owned by uid 65534"
	expect(t, r, 2, "restart demo on "+l.Addr()+": denied by the agent, nothing ran: refused: a file this action runs fails the agent's trust rule")
	expect(t, r, 2, why)
	if strings.Contains(r.Line, "wrong key") || r.Reply == nil || !r.Reply.Signed() || r.AgentOld || r.Attempts != 1 || marks() != 1 {
		t.Fatalf("reply %+v, old %v, %d attempts, %d marks: %s", r.Reply, r.AgentOld, r.Attempts, marks(), r.Line)
	}
	log := e.lastLog()
	if !strings.Contains(fmt.Sprint(log["agent_note"]), why) || !strings.Contains(fmt.Sprint(log["agent_output"]), "fails the agent's trust rule") ||
		log["result"] != "denied" {
		t.Fatalf("log: %v", log)
	}
	if c := e.commands(); !strings.Contains(c, ";1;handle_worker;auto-restart failed: restart demo on "+l.Addr()+": denied by the agent") ||
		!strings.Contains(c, why) || strings.Contains(c, "wrong key") {
		t.Fatalf("command file: %q", c)
	}
	// The dry run asks the agent (query), which would refuse it so too.
	e.cfg.DryRun = true
	r = e.run("CRITICAL", "HARD", 3, "3")
	expect(t, r, 0, "the agent would refuse it: restart demo on "+l.Addr()+": denied by the agent, nothing ran: refused: a file this action runs fails")
	expect(t, r, 0, why)
	if len(r.Commands) != 1 || !strings.Contains(string(r.Commands[0]), "auto-restart failed: ") || marks() != 1 || e.commands() != "" {
		t.Fatalf("dry-run commands %q, %d marks", r.Commands, marks())
	}
}

// TestRunAgentBeforeReplyMAC: an agent of SH2 as first released signs its
// replies with the agent twice. The fallback reaches it, it acts once, and
// its reply verifies under that first MAC (the same host key's HMAC), so
// a rolling upgrade heals through it, and the line says to upgrade it.
func TestRunAgentBeforeReplyMAC(t *testing.T) {
	bin := oldAgent(t, firstMACCommit)
	dir := t.TempDir()
	count := filepath.Join(dir, "count")
	f := rigtest.Prepare(t, rig.Kit{Dir: dir, Issue: testutil.Binary(t, "handle_worker"),
		Config: rig.ListenerConfig{Listen: "127.0.0.1:1", Allow: rig.Loopback, AuditLog: filepath.Join(dir, "audit.log"),
			Budget: &rigtest.DefaultTestBudget, ReplayWindow: "10m", ShutdownGrace: "2s", Limits: rig.Limits{Rate: 1000, Burst: 1000},
			Services: []rig.Service{{Name: "demo", Actions: map[string]rig.Action{"restart": {
				Argv: []string{"/bin/sh", "-c", "echo restarted >> " + count + "; echo restarted"}, Timeout: "10s"}}}}}})
	// No ping at start: its signed answer would not verify either.
	ag := rigtest.Serve(t, rig.Serve{Bin: bin, Config: f.Config, Log: filepath.Join(dir, "listener.log"), Activate: true, Timeout: 30 * time.Second})
	host, port, err := net.SplitHostPort(ag.Addr)
	if err != nil {
		t.Fatal(err)
	}
	l := &rigtest.HandlerListener{Host: host, Agent: f.Agent, KeyFile: f.FleetFile, Key: f.Fleet, Dir: dir, AuditLog: filepath.Join(dir, "audit.log")}
	if l.Port, err = strconv.Atoi(port); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, l)
	e.cfg.Deadline = 5 * time.Second
	r := e.run("CRITICAL", "HARD", 3, "1")
	expect(t, r, 0, "ok in")
	if r.Reply == nil || !r.Reply.LegacyMAC || !strings.Contains(r.Line, "upgrade it") || r.Attempts != 2 {
		t.Fatalf("reply %+v, %d attempts: %s", r.Reply, r.Attempts, r.Line)
	}
	// It did run, once: every retry of the fault got the agent's record.
	if b, _ := os.ReadFile(count); strings.Count(string(b), "\n") != 1 {
		t.Fatalf("the old agent ran the restart %d times", strings.Count(string(b), "\n"))
	}
	if c := e.commands(); !strings.Contains(c, ";0;handle_worker;auto-restart ok in") {
		t.Fatalf("command file: %q", c)
	}
}
