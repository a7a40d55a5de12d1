package listener

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/protocol"
)

func readPID(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if pid, err2 := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && err2 == nil && pid > 1 {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPingAndActions(t *testing.T) {
	h := newHarness(t, opts{})
	rep, err := h.do(protocol.VerbPing, "")
	if err != nil || rep.Outcome != protocol.OutcomeOK || !strings.Contains(rep.Output, "worker_listener") {
		t.Fatalf("ping: %+v %v", rep, err)
	}
	if h.marks("demo") != 0 {
		t.Fatal("ping ran an action")
	}
	rep, err = h.do(protocol.VerbRestart, "demo")
	if err != nil || rep.Outcome != protocol.OutcomeOK || rep.ExitCode != 0 || rep.Output != "did restart" || rep.Duration <= 0 {
		t.Fatalf("restart: %+v %v", rep, err)
	}
	// A failing action: its exit code and sanitised output come back.
	rep, err = h.do(protocol.VerbRestart, "fail")
	if err != nil || rep.Outcome != protocol.OutcomeFailed || rep.ExitCode != 4 {
		t.Fatalf("fail: %+v %v", rep, err)
	}
	if !strings.Contains(rep.Output, "no such worker") || strings.ContainsAny(rep.Output, "\x1b\x00\r") {
		t.Fatalf("fail output not sanitised: %q", rep.Output)
	}
	// A verb the service has no action for is denied, and nothing runs.
	if rep, err := h.do(protocol.VerbStatus, "demo"); err != nil || rep.Outcome != protocol.OutcomeDenied {
		t.Fatalf("status without action: %+v %v", rep, err)
	}
	if h.marks("demo") != 1 {
		t.Fatalf("marks = %d", h.marks("demo"))
	}
}

// An action that hangs, with a child that ignores SIGTERM: the agent
// reports a timeout, and no process of the group is left.
func TestActionTimeoutKillsGroup(t *testing.T) {
	h := newHarness(t, opts{})
	rep, err := h.do(protocol.VerbRestart, "hang")
	if err != nil || rep.Outcome != protocol.OutcomeTimeout || !strings.Contains(rep.Output, "timed out") {
		t.Fatalf("hang: %+v %v", rep, err)
	}
	child := readPID(t, filepath.Join(h.dir, "childpid-hang"))
	if !processGone(child) {
		t.Fatalf("child %d that ignores SIGTERM is still running", child)
	}
	if err := syscall.Kill(-child, 0); err == nil && !processGone(child) {
		t.Fatal("process group still alive")
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
	for i := range n {
		if errs[i] != nil || reps[i].Outcome != protocol.OutcomeOK {
			t.Fatalf("caller %d: %+v %v", i, reps[i], errs[i])
		}
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

// A flood of connections from one source (bounded in count and time),
// slowloris and garbage mixed, while a legitimate restart from another
// source still succeeds.
func TestFloodDoesNotStarveOthers(t *testing.T) {
	h := newHarness(t, opts{allow: `["127.0.0.0/8"]`, limits: "{rate: 5, burst: 20, max_conns: 64, max_conns_per_source: 8, read_timeout: 2s}"})
	flood := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 2 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var attempts, refused sync.Map
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300 && ctx.Err() == nil; i++ {
				c, err := flood.DialContext(ctx, "tcp", h.addr)
				if err != nil {
					continue
				}
				attempts.Store(fmt.Sprint(w, i), true)
				if i%2 == 0 { // slowloris: one byte, then silence
					c.Write([]byte("S"))
					c.SetReadDeadline(time.Now().Add(3 * time.Second))
				} else {
					c.Write([]byte("garbage\n"))
					c.SetReadDeadline(time.Now().Add(3 * time.Second))
				}
				buf := make([]byte, 64)
				n, _ := c.Read(buf)
				if strings.HasPrefix(string(buf[:n]), "SH1 rate-limited") {
					refused.Store(fmt.Sprint(w, i), true)
				}
				c.Close()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // the flood is on
	rep, err := h.do(protocol.VerbRestart, "demo")
	cancel()
	wg.Wait()
	if err != nil || rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("legitimate restart during the flood: %+v %v", rep, err)
	}
	if h.marks("demo") != 1 {
		t.Fatal("legitimate restart did not run")
	}
	n := 0
	refused.Range(func(any, any) bool { n++; return true })
	if n == 0 {
		a := 0
		attempts.Range(func(any, any) bool { a++; return true })
		t.Fatalf("the flood was never rate-limited (%d connections)\n%s", a, h.audit.String())
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

// Connection limits: beyond max_conns the agent answers busy at once.
func TestMaxConnsBusy(t *testing.T) {
	h := newHarness(t, opts{limits: "{rate: 1000, burst: 1000, max_conns: 2, max_conns_per_source: 100, read_timeout: 5s}"})
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.srv.active.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	rep, err := h.do(protocol.VerbRestart, "demo")
	if err != nil || rep.Outcome != protocol.OutcomeBusy {
		t.Fatalf("third connection: %+v %v", rep, err)
	}
	for _, c := range held {
		c.Close()
	}
	if h.marks("demo") != 0 {
		t.Fatal("action ran while busy")
	}
}

// A drain that runs out of shutdown_grace kills the running action (its
// caller hears "timeout") and still returns, bounded.
func TestDrainGraceKillsActions(t *testing.T) {
	h := newHarness(t, opts{grace: "500ms"})
	res := make(chan protocol.Reply, 1)
	go func() {
		rep, err := h.do(protocol.VerbRestart, "slow")
		if err != nil {
			t.Error(err)
		}
		res <- rep
	}()
	deadline := time.Now().Add(20 * time.Second)
	for h.srv.Executor().Runs() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("action never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.stop()
	select {
	case err := <-h.done:
		if err == nil || !strings.Contains(err.Error(), "grace") {
			t.Fatalf("Serve returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("drain did not end")
	}
	h.stop = nil
	if rep := <-res; rep.Outcome != protocol.OutcomeTimeout {
		t.Fatalf("caller got %+v", rep)
	}
	if h.marks("slow") != 0 {
		t.Fatal("the killed action completed")
	}
}
