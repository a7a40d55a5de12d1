package listener

import (
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/proc"
	"github.com/selfheal/selfheal/internal/protocol"
)

// An action that hangs, with a child that ignores SIGTERM: the agent
// reports a timeout, and no process of the action's group is left.
func TestActionTimeoutKillsGroup(t *testing.T) {
	h := newHarness(t, opts{})
	type reply struct {
		rep protocol.Reply
		err error
	}
	res := make(chan reply, 1)
	go func() {
		rep, err := h.do(protocol.VerbRestart, "hang")
		res <- reply{rep, err}
	}()
	// The action's process group, read from its child while both run.
	child := readPID(t, filepath.Join(h.dir, "childpid-hang"))
	st, err := proc.ReadStat(child)
	if err != nil {
		t.Fatalf("the action's child %d: %v", child, err)
	}
	if self, err := proc.ReadStat(os.Getpid()); err != nil || st.PGRP <= 1 || st.PGRP == self.PGRP {
		t.Fatalf("the action's child is in process group %d, the agent in %d (%v): want a group of the action's own", st.PGRP, self.PGRP, err)
	}
	if live := liveMembers(st.PGRP); len(live) < 2 {
		t.Fatalf("process group %d has live members %v while the action runs, want the action and its child", st.PGRP, live)
	}
	r := <-res
	if r.err != nil || r.rep.Outcome != protocol.OutcomeTimeout || !strings.Contains(r.rep.Output, "timed out") {
		t.Fatalf("hang: %+v %v", r.rep, r.err)
	}
	if !processGone(child) {
		t.Fatalf("child %d that ignores SIGTERM is still running", child)
	}
	if live := liveMembers(st.PGRP); len(live) > 0 {
		t.Fatalf("process group %d still has live members %v", st.PGRP, live)
	}
}

// An action that prints 1 GiB: the agent keeps only the tail.
func TestHugeOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB through a pipe")
	}
	h := newHarness(t, opts{})
	rep, err := h.do(protocol.VerbRestart, "big")
	if err != nil || rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("big: %+v %v", rep, err)
	}
	if len(rep.Output) > protocol.MaxOutput || !strings.HasSuffix(rep.Output, "tail-marker") || !strings.Contains(rep.Output, "bytes of output dropped") {
		t.Fatalf("output %d bytes: %.80q ... %.40q", len(rep.Output), rep.Output, rep.Output[max(0, len(rep.Output)-40):])
	}
}

// 100 concurrent restarts of one service run exactly once, and every
// caller gets the result.
func TestConcurrentRestartsCoalesce(t *testing.T) {
	h := newHarness(t, opts{})
	const n = 100
	var wg sync.WaitGroup
	reps := make([]protocol.Reply, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reps[i], errs[i] = h.do(protocol.VerbRestart, "slow")
		}()
	}
	// All 100 must be inside the agent, one running and 99 joined, before
	// the action is allowed to finish.
	deadline := time.Now().Add(60 * time.Second)
	for h.srv.Executor().Joined() < n-1 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d joined", h.srv.Executor().Joined())
		}
		time.Sleep(10 * time.Millisecond)
	}
	os.WriteFile(filepath.Join(h.dir, "release"), nil, 0o600)
	wg.Wait()
	origins := map[protocol.Origin]int{}
	for i := range n {
		if errs[i] != nil || reps[i].Outcome != protocol.OutcomeOK {
			t.Fatalf("caller %d: %+v %v", i, reps[i], errs[i])
		}
		origins[reps[i].Origin]++
	}
	if origins[protocol.OriginRun] != 1 || origins[protocol.OriginJoined] != n-1 {
		t.Fatalf("origins %v, want 1 run and %d joined", origins, n-1)
	}
	if got := h.marks("slow"); got != 1 {
		t.Fatalf("action ran %d times, want 1", got)
	}
	if got := h.srv.Executor().Runs(); got != 1 {
		t.Fatalf("executor started %d runs", got)
	}
}

// Different actions on one service run one after the other, never at once.
func TestDifferentActionsSerialised(t *testing.T) {
	h := newHarness(t, opts{})
	var wg sync.WaitGroup
	res := map[protocol.Verb]protocol.Reply{}
	var mu sync.Mutex
	for _, v := range []protocol.Verb{protocol.VerbStop, protocol.VerbStart} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := h.do(v, "slow")
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			res[v] = r
			mu.Unlock()
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for h.srv.Executor().Inflight() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("both actions never queued")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Both are queued but only one has started: the other waits its turn.
	time.Sleep(200 * time.Millisecond)
	if got := h.srv.Executor().Runs(); got != 1 {
		t.Fatalf("%d actions started at once on one service", got)
	}
	os.WriteFile(filepath.Join(h.dir, "release"), nil, 0o600)
	wg.Wait()
	if res[protocol.VerbStop].Outcome != protocol.OutcomeOK || res[protocol.VerbStart].Outcome != protocol.OutcomeOK {
		t.Fatalf("results %+v", res)
	}
	if h.marks("slow") != 2 || h.srv.Executor().Runs() != 2 {
		t.Fatalf("marks %d runs %d", h.marks("slow"), h.srv.Executor().Runs())
	}
}

// An action that daemonises a worker properly returns at once and the
// worker survives the agent's shutdown; one that leaves the worker on
// the agent's pipe still returns (after the pipe wait).
func TestDaemonisingActions(t *testing.T) {
	h := newHarness(t, opts{})
	rep, err := h.do(protocol.VerbRestart, "good-daemon")
	if err != nil || rep.Outcome != protocol.OutcomeOK || rep.Duration > pipeWait {
		t.Fatalf("good daemon: %+v %v", rep, err)
	}
	good := readPID(t, filepath.Join(h.dir, "childpid-good-daemon"))
	rep, err = h.do(protocol.VerbRestart, "bad-daemon")
	if err != nil || rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("bad daemon: %+v %v", rep, err)
	}
	bad := readPID(t, filepath.Join(h.dir, "childpid-bad-daemon"))
	h.shutdown()
	if processGone(good) {
		t.Fatal("a properly started worker died with the agent")
	}
	if processGone(bad) {
		t.Fatal("worker died even though nothing killed it")
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"ok\n":                 "ok",
		"a\x1b[31mb":           "a?[31mb",
		"nul\x00cr\rtab\tend":  "nul?cr?tab\tend",
		"bad \xff utf8":        "bad ? utf8",
		"ünïcode ✓":            "ünïcode ✓",
		"line\u2028sep\u0085x": "line?sep?x",
		"rlo\u202eevil\u2066x": "rlo?evil?x",
	} {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
	tb := &tailBuffer{max: 8}
	tb.Write([]byte("0123456789"))
	tb.Write([]byte("ab"))
	if got := tb.String(); got != "[4 bytes of output dropped]\n456789ab" {
		t.Fatalf("tail %q", got)
	}
}

// As root, an action with user: runs as that user (uid, gid and groups).
func TestActionRunsAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch users")
	}
	dir := t.TempDir()
	key := filepath.Join(dir, "k.key")
	writeKeys(t, "worker1", key, "", "")
	c, err := Parse([]byte("agent: worker1\nkeys: [" + key + "]\nallow: [127.0.0.1]\nstate_dir: " + dir + "/s\nservices:\n  demo:\n    actions:\n      status: {argv: [/usr/bin/id, -u], user: nobody}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := NewExecutor(c.StateDir, nil).Run(t.Context(), Job{Service: "demo", Verb: protocol.VerbStatus, Fault: "-",
		Action: c.Services["demo"].Actions["status"], Budget: DefaultBudget(), LockWait: time.Second})
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	if r.Outcome != protocol.OutcomeOK || r.Output != u.Uid {
		t.Fatalf("id -u as nobody: %+v", r)
	}
}

// TestJoinedFaultIsRecorded: a restart for fault B that arrives while
// fault A's restart runs shares it (joined), and B is remembered: B's
// retry after a lost reply gets the answer again instead of a second
// restart, with min_gap 0 so that only the fault record can say so.
func TestJoinedFaultIsRecorded(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "k.key")
	writeKeys(t, "worker1", key, "", "")
	mark := filepath.Join(dir, "mark")
	c, err := Parse([]byte("agent: worker1\nkeys: [" + key + "]\nallow: [127.0.0.1]\nstate_dir: " + dir + "/s\n" +
		"budget: {max: 10, window: 1h, min_gap: 0s}\nservices:\n  demo:\n    actions:\n" +
		"      restart: {argv: [/bin/sh, -c, 'echo ran >> " + mark + "; sleep 0.5']}\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := NewExecutor(c.StateDir, nil)
	job := func(fault string) Job {
		return Job{Service: "demo", Verb: protocol.VerbRestart, Fault: fault, Arrived: time.Now(),
			Action: c.Services["demo"].Actions["restart"], Budget: c.Services["demo"].RestartBudget(), LockWait: 5 * time.Second}
	}
	runs := func() int {
		b, _ := os.ReadFile(mark)
		return strings.Count(string(b), "ran")
	}
	a := make(chan Result, 1)
	go func() { a <- e.Run(t.Context(), job("a")) }()
	deadline := time.Now().Add(5 * time.Second)
	for runs() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	b1 := e.Run(t.Context(), job("b"))
	if ra := <-a; ra.Origin != protocol.OriginRun || ra.Outcome != protocol.OutcomeOK {
		t.Fatalf("fault a: %+v", ra)
	}
	if b1.Origin != protocol.OriginJoined || b1.Outcome != protocol.OutcomeOK {
		t.Fatalf("fault b during a's restart: %+v, want ok joined", b1)
	}
	b2 := e.Run(t.Context(), job("b"))
	if b2.Origin != protocol.OriginRecorded || b2.Outcome != protocol.OutcomeOK {
		t.Fatalf("fault b's retry: %+v, want ok recorded", b2)
	}
	// The same rig restarts for a new fault: the records are not simply
	// refusing everything.
	if c3 := e.Run(t.Context(), job("c")); c3.Origin != protocol.OriginRun {
		t.Fatalf("fault c: %+v, want a run", c3)
	}
	if n := runs(); n != 2 {
		t.Fatalf("%d runs for faults a, b, b, c; want 2", n)
	}
}

// TestTrustAtExec: the executor judges an action's files before each run,
// the script an interpreter runs included. Handed to another user after
// the config was loaded, the script is refused (denied, the finding in the
// detail) and nothing runs, no fault record is spent; the same job ran
// before the hand-over.
func TestTrustAtExec(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the script must belong to another user")
	}
	dir := t.TempDir()
	script, mark := filepath.Join(dir, "restart.sh"), filepath.Join(dir, "mark")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho ran >> \"$MARK\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e := NewExecutor(filepath.Join(dir, "state"), nil)
	job := func(fault string) Job {
		a := Action{Argv: []string{"/bin/sh", script}, Timeout: 10 * time.Second, KillGrace: time.Second, Dir: "/", env: []string{"MARK=" + mark}}
		return Job{Service: "demo", Verb: protocol.VerbRestart, Fault: fault, Arrived: time.Now(), Action: a,
			Budget: Budget{Max: 10, Window: time.Hour}, LockWait: 5 * time.Second}
	}
	if res := e.Run(t.Context(), job("1")); res.Outcome != protocol.OutcomeOK || e.Runs() != 1 {
		t.Fatalf("before the hand-over: %+v", res)
	}
	if err := os.Chown(script, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	res := e.Run(t.Context(), job("2"))
	if res.Outcome != protocol.OutcomeDenied || res.Origin != protocol.OriginNone || e.Runs() != 1 ||
		!strings.Contains(res.Detail, "argv[1] "+script+": owned by uid 65534") {
		t.Fatalf("a script another user owns: %+v (%d runs)", res, e.Runs())
	}
	if b, _ := os.ReadFile(mark); string(b) != "ran\n" {
		t.Fatalf("marks: %q", b)
	}
	// Root takes it back: fault 2 was never recorded, so it runs now.
	if err := os.Chown(script, 0, 0); err != nil {
		t.Fatal(err)
	}
	if res := e.Run(t.Context(), job("2")); res.Outcome != protocol.OutcomeOK || res.Origin != protocol.OriginRun || e.Runs() != 2 {
		t.Fatalf("fault 2 once root owns the script again: %+v", res)
	}
}
