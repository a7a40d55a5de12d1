package listener

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/breaker"
	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/protocol"
)

// clockClient signs with the harness's fleet key on the test's clock.
func clockClient(t *testing.T, h *harness, now func() time.Time) *protocol.Client {
	t.Helper()
	c, err := protocol.NewClient(protocol.ClientConfig{Addr: h.addr, Key: h.fleet, Agent: h.agent, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func restart(t *testing.T, c *protocol.Client, svc, fault string) protocol.Reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := c.Do(ctx, protocol.VerbRestart, svc, fault)
	if err != nil {
		t.Fatalf("restart %s %s: %v", svc, fault, err)
	}
	return rep
}

// TestBreakerHolds: 15 services, so more than 7 (half) at once opens the
// breaker. The same rig first restarts 7 services; the 8th is held (a
// signed breaker reply, nothing run, no budget used, audited); the ones
// admitted keep their answers; 2m after the last new failure one trial
// runs; 2m after it, with no new failure, the breaker is closed again.
func TestBreakerHolds(t *testing.T) {
	h := newHarness(t, opts{services: 8})
	if bc, n := h.cfg.HostBreaker(); bc == nil || n != 15 || bc.Threshold != 7 {
		t.Fatalf("breaker %+v for %d services", bc, n)
	}
	_, now, advance := fakeClockServer(t, h)
	c := clockClient(t, h, now)
	for i := range 7 {
		svc := fmt.Sprintf("svc%d", i)
		if rep := restart(t, c, svc, "f1"); rep.Outcome != protocol.OutcomeOK || rep.Origin != protocol.OriginRun || h.marks(svc) != 1 {
			t.Fatalf("%s, below the threshold: %+v", svc, rep)
		}
		advance(time.Second)
	}
	rep := restart(t, c, "svc7", "f1")
	want := "8 of 15 services needed a restart within 5m: the cause is likely shared; held back, the breaker closes 2m after the last new failure"
	if rep.Outcome != protocol.OutcomeBreaker || rep.Agent != "worker1" || rep.Origin != protocol.OriginNone || rep.ExitCode != -1 ||
		rep.Output != want || rep.Budget.Used != 0 || rep.Budget.Max != 10000 || rep.Budget.RetryAfter != 2*time.Minute {
		t.Fatalf("the 8th service: %+v", rep)
	}
	if h.marks("svc7") != 0 {
		t.Fatal("a held restart ran")
	}
	recs := h.restartRecords("svc7", 1)
	if r := recs[0].Raw; recs[0].Outcome != "breaker" || !strings.Contains(r, `"breaker":"open"`) || !strings.Contains(r, `"breaker_count":8`) ||
		!strings.Contains(r, `"breaker_keys":["svc0",`) || !strings.Contains(r, `"reason":"8 of 15 services`) {
		t.Fatalf("audit: %s", r)
	}
	// Admitted stays admitted (its record answers); another held one is
	// held; asking again is no new failure.
	advance(time.Minute)
	if rep := restart(t, c, "svc0", "f1"); rep.Outcome != protocol.OutcomeOK || rep.Origin != protocol.OriginRecorded {
		t.Fatalf("svc0 again: %+v", rep)
	}
	if rep := restart(t, c, "demo", "f1"); rep.Outcome != protocol.OutcomeBreaker || rep.Budget.RetryAfter != 2*time.Minute {
		t.Fatalf("demo while open: %+v", rep)
	}
	advance(90 * time.Second)
	if rep := restart(t, c, "demo", "f1"); rep.Outcome != protocol.OutcomeBreaker || rep.Budget.RetryAfter != 30*time.Second {
		t.Fatalf("demo asking again: %+v", rep)
	}
	// Quiet: the trial.
	advance(30 * time.Second)
	if rep := restart(t, c, "svc7", "f1"); rep.Outcome != protocol.OutcomeOK || rep.Origin != protocol.OriginRun || h.marks("svc7") != 1 {
		t.Fatalf("the trial: %+v", rep)
	}
	if !auditEventually(h, `"breaker":"trial"`) {
		t.Fatalf("trial not audited:\n%s", h.audit.String())
	}
	if rep := restart(t, c, "demo", "f1"); rep.Outcome != protocol.OutcomeBreaker || !strings.Contains(rep.Output, "held back while a trial restart") {
		t.Fatalf("demo during the trial: %+v", rep)
	}
	// Quiet after the trial: closed, the failures forgotten.
	advance(2 * time.Minute)
	if rep := restart(t, c, "demo", "f1"); rep.Outcome != protocol.OutcomeOK || rep.Origin != protocol.OriginRun || h.marks("demo") != 1 {
		t.Fatalf("demo once closed: %+v", rep)
	}
	b, _ := os.ReadFile(filepath.Join(h.dir, "state", "breaker.json"))
	if !strings.Contains(string(b), `"state":"closed"`) {
		t.Fatalf("breaker file: %s", b)
	}
}

// TestBreakerOffAndFailOpen: the same burst runs every restart with the
// breaker switched off, on a host below min_services, and (logged) when
// its state file is unreadable.
func TestBreakerOffAndFailOpen(t *testing.T) {
	for name, o := range map[string]opts{
		"off":          {services: 8, extra: noBreaker},
		"min_services": {services: 8, extra: "breaker:\n  min_services: 16\n"},
		"corrupt file": {services: 8},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, o)
			if name == "corrupt file" {
				os.WriteFile(filepath.Join(h.dir, "state", "breaker.json"), []byte("{not json"), 0o600)
			} else if bc, _ := h.cfg.HostBreaker(); bc != nil {
				t.Fatalf("breaker %+v", bc)
			}
			for i := range 8 {
				svc := fmt.Sprintf("svc%d", i)
				if rep, err := h.doFault(protocol.VerbRestart, svc, "f1"); err != nil || rep.Outcome != protocol.OutcomeOK || rep.Origin != protocol.OriginRun {
					t.Fatalf("%s: %+v %v", svc, rep, err)
				}
			}
			if name == "corrupt file" && !auditEventually(h, "breaker failed open (restart allowed): breaker state file corrupt") {
				t.Fatalf("fail open not audited:\n%s", h.audit.String())
			}
		})
	}
}

// inetd serves each connection on cfg's state_dir with a Server of its
// own, closed after the one request: worker_listener inetd's life.
func inetd(t *testing.T, h *harness) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				srv, err := NewServer(h.cfg, Deps{Audit: h.audit, Inetd: true})
				if err != nil {
					t.Error(err)
					conn.Close()
					return
				}
				srv.ServeConn(conn)
				srv.Close()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// TestBreakerInetd: in inetd mode every request is its own server, and
// the breaker's state is in state_dir: four restarts run at once, the
// fifth service (of 9, so more than 4) is held.
func TestBreakerInetd(t *testing.T) {
	h := newHarness(t, opts{services: 2, extra: "breaker:\n  min_count: 1\n"})
	h.shutdown() // it holds state_dir's lock; inetd processes share it
	h.addr = inetd(t, h)
	var wg sync.WaitGroup
	for _, svc := range []string{"svc0", "svc1", "demo", "fail"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if rep, err := h.doFault(protocol.VerbRestart, svc, "f1"); err != nil || rep.Origin != protocol.OriginRun {
				t.Errorf("%s: %+v %v", svc, rep, err)
			}
		}()
	}
	wg.Wait()
	if rep, err := h.doFault(protocol.VerbRestart, "good-daemon", "f1"); err != nil || rep.Outcome != protocol.OutcomeBreaker ||
		!strings.HasPrefix(rep.Output, "5 of 9 services needed a restart within 5m") {
		t.Fatalf("the fifth: %+v %v", rep, err)
	}
	if _, err := os.Stat(filepath.Join(h.dir, "childpid-good-daemon")); !os.IsNotExist(err) {
		t.Fatal("the held restart ran")
	}
}

// TestBackoffDoublesAndResets: with min_gap 1m (max_gap 10m and
// reset_after 20m by default) restarts of one service space out 1, 2, 4,
// 8, then 10 minutes (the cap); within min_gap another fault gets the
// last answer; inside the spacing a signed backoff, nothing run; 20
// minutes without a restart and the chain starts over.
func TestBackoffDoublesAndResets(t *testing.T) {
	h := newHarness(t, opts{budget: &rig.Budget{Max: 100, Window: "1h", MinGap: "1m"}})
	if bo := h.cfg.Services["demo"].RestartBackoff(); bo != (Backoff{MaxGap: 10 * time.Minute, ResetAfter: 20 * time.Minute}) {
		t.Fatalf("default back-off %+v", bo)
	}
	_, now, advance := fakeClockServer(t, h)
	c := clockClient(t, h, now)
	runs := 0
	run := func(fault string, nextIn time.Duration) {
		t.Helper()
		rep := restart(t, c, "demo", fault)
		runs++
		if rep.Outcome != protocol.OutcomeOK || rep.Origin != protocol.OriginRun || h.marks("demo") != runs || rep.Budget.RetryAfter != nextIn {
			t.Fatalf("%s: %+v, want a run with the next in %s", fault, rep, nextIn)
		}
	}
	held := func(fault string, left time.Duration, output string) {
		t.Helper()
		rep := restart(t, c, "demo", fault)
		if rep.Outcome != protocol.OutcomeBackoff || rep.Origin != protocol.OriginNone || rep.ExitCode != -1 || rep.Budget.RetryAfter != left ||
			rep.Budget.Used != runs || rep.Budget.Max != 100 || rep.Output != output || h.marks("demo") != runs {
			t.Fatalf("%s: %+v, want backoff for %s, %q", fault, rep, left, output)
		}
	}
	run("f1", time.Minute)
	advance(time.Minute)
	run("f2", 2*time.Minute)
	advance(59 * time.Second)
	// A new fault within min_gap waits for it (the request does not say
	// when the fault began: it may be new).
	if rep := restart(t, c, "demo", "f3"); rep.Outcome != protocol.OutcomeBackoff || rep.Budget.RetryAfter != 61*time.Second {
		t.Fatalf("f3 within min_gap: %+v", rep)
	}
	advance(31 * time.Second)
	held("f3", 30*time.Second, "back-off: after 2 restarts in a row (less than 20m apart) the next waits 2m; allowed in 30s")
	advance(30 * time.Second)
	run("f3", 4*time.Minute)
	advance(3 * time.Minute)
	held("f4", time.Minute, "back-off: after 3 restarts in a row (less than 20m apart) the next waits 4m; allowed in 1m")
	advance(time.Minute)
	run("f4", 8*time.Minute)
	advance(8 * time.Minute)
	run("f5", 10*time.Minute)
	advance(9*time.Minute + 48*time.Second)
	held("f6", 12*time.Second, "back-off: after 5 restarts in a row (less than 20m apart) the next waits 10m; allowed in 12s")
	// Quiet for reset_after: the chain is forgotten.
	advance(10*time.Minute + 12*time.Second)
	run("f6", time.Minute)
	advance(time.Minute)
	run("f7", 2*time.Minute)
	recs := h.restartRecords("demo", 11)
	if c := rig.CountRestarts(recs); c.Run != 7 {
		t.Fatalf("audit counts %s", c)
	}
	if !strings.Contains(h.audit.String(), `"outcome":"backoff"`) || !strings.Contains(h.audit.String(), `"reason":"back-off: after 5 restarts`) {
		t.Fatalf("backoff not audited:\n%s", h.audit.String())
	}
}

// TestClockMovedBackNeverBlocks: a restart recorded 2h in the future (the
// clock was stepped back) is read as now. A new fault is not taken for a
// sharer of that old run, and the answer that found it says the clock
// moved; once min_gap has passed from the step, the fault runs.
func TestClockMovedBackNeverBlocks(t *testing.T) {
	for _, minGap := range []string{"0s", "2m"} {
		t.Run("min_gap "+minGap, func(t *testing.T) {
			h := newHarness(t, opts{budget: &rig.Budget{Max: 10, Window: "1h", MinGap: minGap}})
			h.shutdown()
			at := time.Now().Add(2 * time.Hour).UTC()
			st := serviceState{
				Faults:   []faultRecord{{Fault: "old", Verb: protocol.VerbRestart, At: at, outcomeRecord: outcomeRecord{State: stateDone, Outcome: protocol.OutcomeOK, Output: "old run"}}},
				Restarts: []time.Time{at},
				Last:     map[protocol.Verb]*runRecord{protocol.VerbRestart: {Fault: "old", Start: at, End: at.Add(time.Second), outcomeRecord: outcomeRecord{State: stateDone, Outcome: protocol.OutcomeOK, Output: "old run"}}},
			}
			b, _ := json.Marshal(st)
			dir := filepath.Join(h.dir, "state", "services")
			os.MkdirAll(dir, 0o700)
			if err := os.WriteFile(filepath.Join(dir, "demo.json"), b, 0o600); err != nil {
				t.Fatal(err)
			}
			if minGap == "0s" {
				// The real clock: the records are read after the request
				// arrived, so a run whose end was read as that read's time
				// would look like one still running when it came.
				h.start()
				rep, err := h.doFault(protocol.VerbRestart, "demo", "new")
				if err != nil || rep.Origin != protocol.OriginRun || h.marks("demo") != 1 {
					t.Fatalf("new fault after the step: %+v", rep)
				}
				// Dated 2h ahead of the test's clock when it wrote the
				// record; the agent reads it later (seconds, on a loaded
				// machine), so "1h59m57s" is as right as "2h".
				if !auditEventually(h, "in the future: the clock moved back; counted as now") {
					t.Fatalf("audit:\n%s", h.audit.String())
				}
				m := regexp.MustCompile(`the last restart is dated (\S+) in the future`).FindStringSubmatch(h.audit.String())
				var d time.Duration
				if m != nil {
					d, _ = time.ParseDuration(m[1])
				}
				if d > 2*time.Hour || d < 2*time.Hour-time.Minute {
					t.Fatalf("the clock note says %v, want 2h (less the seconds until the agent read it):\n%s", m, h.audit.String())
				}
				return
			}
			_, now, advance := fakeClockServer(t, h)
			c := clockClient(t, h, now)
			// The extended reply's note carries it too (the handler's line).
			rep, err := c.Send(context.Background(), protocol.Call{Verb: protocol.VerbRestart, Service: "demo", Fault: "new"})
			if err != nil || rep.Outcome != protocol.OutcomeBackoff || h.marks("demo") != 0 ||
				!strings.Contains(rep.Output, "the last restart is dated 2h in the future: the clock moved back; counted as now") ||
				!strings.Contains(rep.Note, "the clock moved back") {
				t.Fatalf("new fault within min_gap of the step: %+v", rep)
			}
			advance(2 * time.Minute)
			if rep := restart(t, c, "demo", "new"); rep.Origin != protocol.OriginRun || h.marks("demo") != 1 {
				t.Fatalf("min_gap after the step: %+v", rep)
			}
		})
	}
}

// TestBackoffPure: the spacing from the chain, on hand-set times.
func TestBackoffPure(t *testing.T) {
	b := Budget{Max: 100, Window: time.Hour, MinGap: 2 * time.Minute}
	bo := Backoff{MaxGap: 10 * time.Minute, ResetAfter: 20 * time.Minute}
	t0 := time.Unix(1_764_024_000, 0)
	m := time.Minute
	for _, tc := range []struct {
		name  string
		chain []time.Duration
		now   time.Duration
		bo    Backoff
		k     int
		gap   time.Duration
	}{
		{"none", nil, 0, bo, 0, 0},
		{"one", []time.Duration{0}, m, bo, 1, 2 * m},
		{"two", []time.Duration{0, 3 * m}, 4 * m, bo, 2, 4 * m},
		{"three", []time.Duration{0, 3 * m, 8 * m}, 9 * m, bo, 3, 8 * m},
		{"capped", []time.Duration{0, 3 * m, 8 * m, 17 * m, 30 * m}, 31 * m, bo, 5, 10 * m},
		{"a gap of reset_after splits the chain", []time.Duration{0, 20 * m, 23 * m}, 24 * m, bo, 2, 4 * m},
		{"reset after reset_after", []time.Duration{0, 3 * m}, 23 * m, bo, 0, 0},
		{"off: zero", []time.Duration{0, 3 * m}, 4 * m, Backoff{}, 0, 0},
		{"off: max_gap = min_gap", []time.Duration{0, 3 * m}, 4 * m, Backoff{MaxGap: 2 * m, ResetAfter: 20 * m}, 0, 0},
	} {
		s := newState()
		for _, d := range tc.chain {
			s.Chain = append(s.Chain, t0.Add(d))
		}
		k, gap, _ := s.backoff(b, tc.bo, t0.Add(tc.now))
		if k != tc.k || gap != tc.gap {
			t.Errorf("%s: k %d gap %s, want %d %s", tc.name, k, gap, tc.k, tc.gap)
		}
	}
	// The chain is bounded, survives the journal, and is guessed from
	// the restarts of a file written before it.
	s := newState()
	for i := range maxChain + 5 {
		s.begin(restartJob(fmt.Sprint(i), t0, b), t0.Add(time.Duration(i)*time.Second))
	}
	if len(s.Chain) != maxChain || !s.Chain[0].Equal(t0.Add(5*time.Second)) {
		t.Fatalf("chain %d long from %s", len(s.Chain), s.Chain[0])
	}
	var old serviceState
	if err := old.apply(&journalLine{Op: opState, Restarts: []time.Time{t0, t0.Add(m)}}); err != nil || len(old.Chain) != 2 {
		t.Fatalf("chain from an old file: %v %v", old.Chain, err)
	}
}

// TestJudgmentConfig: the defaults, the overrides and the refusals of the
// back-off and breaker keys.
func TestJudgmentConfig(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "k.key")
	writeKeys(t, "worker1", key, filepath.Join(dir, "f.key"), filepath.Join(dir, "o.key"))
	bin := filepath.Join(dir, "a.sh")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	svcs := "services:\n"
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		svcs += "  " + n + ":\n    actions:\n      restart: {argv: [" + bin + "]}\n"
	}
	svcs += "  statusonly:\n    actions:\n      status: {argv: [" + bin + "]}\n"
	base := "agent: worker1\nkeys: [" + key + "]\nallow: [127.0.0.1]\nstate_dir: " + dir + "/s\n"
	parse := func(extra string) (*Config, error) { return Parse([]byte(base + extra + svcs)) }

	c, err := parse("")
	if err != nil {
		t.Fatal(err)
	}
	if bo := c.Services["a"].RestartBackoff(); bo != (Backoff{MaxGap: DefaultMaxGap, ResetAfter: DefaultResetAfter}) {
		t.Fatalf("default back-off %+v", bo)
	}
	// 5 services can be restarted (not the status-only one): half is 2,
	// min_count 5 decides.
	if bc, n := c.HostBreaker(); n != 5 || bc == nil || *bc != (breaker.Config{Window: 5 * time.Minute, Threshold: 5, Quiet: 2 * time.Minute}) {
		t.Fatalf("default breaker %+v for %d", bc, n)
	}
	c, err = parse("budget: {max_gap: 30m}\nbreaker: {window: 10m, fraction: 0.8, quiet: 1m, min_count: 1}\n")
	if err != nil {
		t.Fatal(err)
	}
	if bo := c.Services["a"].RestartBackoff(); bo != (Backoff{MaxGap: 30 * time.Minute, ResetAfter: 30 * time.Minute}) {
		t.Fatalf("max_gap 30m: %+v", bo)
	}
	if bc, _ := c.HostBreaker(); bc == nil || *bc != (breaker.Config{Window: 10 * time.Minute, Threshold: 4, Quiet: time.Minute}) {
		t.Fatalf("breaker %+v", bc)
	}
	// A service's own fields over the top level's, field by field; an
	// older config with a long min_gap still loads (max_gap follows it).
	c, err = parse("budget: {min_gap: 15m, reset_after: 1h}\n")
	if err != nil {
		t.Fatal(err)
	}
	if bo := c.Services["a"].RestartBackoff(); bo != (Backoff{MaxGap: 15 * time.Minute, ResetAfter: time.Hour}) {
		t.Fatalf("min_gap 15m: %+v", bo)
	}
	c, err = Parse([]byte(base + "budget: {max_gap: 5m}\n" + strings.Replace(svcs, "  a:\n", "  a:\n    budget: {min_gap: 0s, reset_after: 6m}\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if bo := c.Services["a"].RestartBackoff(); bo != (Backoff{MaxGap: 5 * time.Minute, ResetAfter: 6 * time.Minute}) {
		t.Fatalf("per service: %+v", bo)
	}
	if bo := c.Services["b"].RestartBackoff(); bo != (Backoff{MaxGap: 5 * time.Minute, ResetAfter: DefaultResetAfter}) {
		t.Fatalf("b: %+v", bo)
	}
	c, err = parse("breaker: {enabled: false}\n")
	if bc, _ := c.HostBreaker(); err != nil || bc != nil {
		t.Fatalf("enabled false: %+v %v", bc, err)
	}
	for extra, want := range map[string]string{
		"budget: {max_gap: 1m}\n":                                "budget: max_gap 1m0s: must be between min_gap (2m0s)",
		"budget: {reset_after: 5m}\n":                            "budget: reset_after 5m0s: must be between max_gap (10m0s",
		"breaker: {fraction: 1.5}\n":                             "breaker: fraction 1.5",
		"breaker: {fraction: -0.1}\n":                            "breaker: fraction -0.1",
		"breaker: {window: 48h}\n":                               "breaker: window 48h0m0s",
		"breaker: {quiet: -1s}\n":                                "breaker: quiet -1s",
		"breaker: {min_services: -1}\n":                          "breaker: min_services -1",
		"breaker: {min_count: -1}\n":                             "breaker: min_count -1",
		"breaker: {threshold: 3}\n":                              "field threshold not found",
		"budget: {min_gap: 1m, max_gap: 2m, reset_after: 90s}\n": "reset_after 1m30s",
	} {
		if _, err := parse(extra); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", extra, err, want)
		}
	}
	if _, err := Parse([]byte(base + strings.Replace(svcs, "  a:\n", "  a:\n    budget: {max_gap: 1m}\n", 1))); err == nil ||
		!strings.Contains(err.Error(), "service a budget: max_gap 1m0s") {
		t.Errorf("per service max_gap below min_gap: %v", err)
	}
}
