package listener

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/rig/rigtest"
	"github.com/selfheal/selfheal/internal/proc"
	"github.com/selfheal/selfheal/internal/protocol"
)

// Scripts the test services run. Each appends to $MARK, so "no action
// ran" is "the mark file does not exist".
var scripts = map[string]string{
	"mark.sh": "#!/bin/sh\necho \"ran $ACTION\" >> \"$MARK\"\necho \"did $ACTION\"\n",
	// Waits (bounded) for $RELEASE before marking: lets a test pile up
	// concurrent requests behind one run.
	"slow.sh": "#!/bin/sh\ni=0\nwhile [ ! -e \"$RELEASE\" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done\necho \"ran $ACTION\" >> \"$MARK\"\n",
	// A child that ignores SIGTERM and never ends; the lead hangs too.
	"hang.sh": "#!/bin/sh\nsh -c 'trap \"\" TERM; echo $$ > \"$CHILDPID\"; while :; do sleep 1; done' &\ntrap '' TERM\nwhile :; do sleep 1; done\n",
	// 1 GiB of output.
	"big.sh": "#!/bin/sh\nhead -c 1073741824 /dev/zero\necho tail-marker\n",
	// Starts a worker the right way: new session, stdio detached.
	"good-daemon.sh": "#!/bin/sh\nsetsid sh -c 'echo $$ > \"$CHILDPID\"; exec sleep 120' </dev/null >/dev/null 2>&1 &\necho started\n",
	// Starts a worker the wrong way: the child keeps the agent's pipe.
	"bad-daemon.sh": "#!/bin/sh\nsh -c 'echo $$ > \"$CHILDPID\"; exec sleep 120' &\necho started\n",
	"fail.sh":       "#!/bin/sh\necho 'no such worker' >&2\nprintf 'esc\\033[31m nul\\000 end\\n'\nexit 4\n",
}

type harness struct {
	t       *testing.T
	dir     string
	listen  string
	agent   string
	fleet   protocol.Key // what the monitoring side holds
	key     protocol.Key // the agent's host key
	keyPath string
	cfgPath string
	cfg     *Config
	srv     *Server
	addr    string
	audit   *syncBuf
	stop    context.CancelFunc
	done    chan error
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// opts vary the harness's config; the zero value is the default config.
type opts struct {
	allow        []string    // default rig.Loopback
	limits       *rig.Limits // default: generous enough never to refuse a test
	tls          *rig.TLS
	replayWindow string
	grace        string        // shutdown_grace, default 20s
	budget       *rig.Budget   // default: never in the way (testBudget)
	agent        string        // default worker1
	fleet        *protocol.Key // issue the agent's host key from this fleet key (default: a new fleet)
	listen       string        // default 127.0.0.1:0
	services     int           // mark.sh services svc0..svcN-1; default 4
	extra        string        // raw top-level YAML, e.g. a breaker block (default: none, the breaker as shipped)
}

// noBreaker switches the breaker off for a test of something else that
// restarts more than half of the harness's services at once.
const noBreaker = "breaker:\n  enabled: false\n"

// testBudget keeps the restart budget out of the way of tests that are
// not about it: many restarts an hour, no min gap.
var testBudget = rig.Budget{Max: 10000, Window: "1h", MinGap: "0s"}

func (h *harness) mark(svc string) string { return filepath.Join(h.dir, "mark-"+svc) }

// config is the harness's listener config: a service per script, each
// with restart, stop and start actions that mark what ran.
func (h *harness) config(o opts) rig.ListenerConfig {
	if o.allow == nil {
		o.allow = rig.Loopback
	}
	if o.limits == nil {
		o.limits = &rig.Limits{Rate: 100000, Burst: 100000, MaxConns: 256, MaxConnsPerSource: 256, ReadTimeout: "3s"}
	}
	if o.grace == "" {
		o.grace = "20s"
	}
	if o.budget == nil {
		o.budget = &testBudget
	}
	if o.agent == "" {
		o.agent = "worker1"
	}
	if o.services == 0 {
		o.services = 4
	}
	svc := func(name, script, timeout string) rig.Service {
		argv := []string{filepath.Join(h.dir, script)}
		env := func(action string) map[string]string {
			return map[string]string{"MARK": h.mark(name), "ACTION": action, "RELEASE": filepath.Join(h.dir, "release")}
		}
		restart := env("restart")
		restart["CHILDPID"] = filepath.Join(h.dir, "childpid-"+name)
		return rig.Service{Name: name, Actions: map[string]rig.Action{
			"restart": {Argv: argv, Timeout: timeout, KillGrace: "1s", Env: restart},
			"stop":    {Argv: argv, Timeout: timeout, Env: env("stop")},
			"start":   {Argv: argv, Timeout: timeout, Env: env("start")},
		}}
	}
	c := rig.ListenerConfig{
		Listen: "127.0.0.1:0", Agent: o.agent, Keys: []string{h.keyPath}, Allow: o.allow, AuditLog: "-",
		StateDir: filepath.Join(h.dir, "state"), ShutdownGrace: o.grace, Limits: *o.limits, TLS: o.tls,
		ReplayWindow: o.replayWindow, Budget: o.budget, Extra: o.extra,
		Services: []rig.Service{
			svc("demo", "mark.sh", "10s"),
			svc("slow", "slow.sh", "60s"),
			svc("hang", "hang.sh", "2s"),
			svc("big", "big.sh", "120s"),
			svc("good-daemon", "good-daemon.sh", "10s"),
			svc("bad-daemon", "bad-daemon.sh", "10s"),
			svc("fail", "fail.sh", "10s"),
		},
	}
	for i := 0; i < o.services; i++ {
		c.Services = append(c.Services, svc(fmt.Sprintf("svc%d", i), "mark.sh", "10s"))
	}
	return c
}

// newHarness has the rig write the scripts, a key and the config into a
// temp dir, and starts a real server on 127.0.0.1:0 in-process. Cleanup
// stops it and checks that no goroutine was leaked.
func newHarness(t *testing.T, o opts) *harness {
	t.Helper()
	base := runtime.NumGoroutine()
	h := &harness{t: t, dir: t.TempDir(), audit: &syncBuf{}, listen: o.listen}
	if h.listen == "" {
		h.listen = "127.0.0.1:0"
	}
	h.keyPath = filepath.Join(h.dir, "fleet1.key")
	if o.fleet != nil {
		// The agent's host key issued from a given fleet key (as issue-key
		// does), so that several agents share one fleet.
		host, err := o.fleet.ForAgent(o.agent)
		h.keyPath = filepath.Join(h.dir, "issued.key")
		if err == nil {
			err = protocol.WriteKeyFile(h.keyPath, host)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	f := rigtest.Prepare(t, rig.Kit{Dir: h.dir, FleetID: "fleet1", Agent: o.agent, Scripts: scripts, Config: h.config(o)})
	h.agent, h.fleet, h.key, h.cfgPath = f.Agent, f.Fleet, f.Key, f.Config
	if o.fleet != nil {
		h.fleet = *o.fleet
		h.key, _ = o.fleet.ForAgent(o.agent)
	} else if f.KeyFile != h.keyPath {
		t.Fatalf("the rig wrote the key to %s, the config names %s", f.KeyFile, h.keyPath)
	}
	h.start()
	t.Cleanup(func() {
		h.shutdown()
		checkNoLeak(t, base)
		killChildren(t, h.dir)
	})
	return h
}

func (h *harness) start() {
	h.t.Helper()
	cfg, err := Load(h.cfgPath)
	if err != nil {
		b, _ := os.ReadFile(h.cfgPath)
		h.t.Fatalf("%v\n%s", err, b)
	}
	h.cfg = cfg
	srv, err := NewServer(cfg, Deps{Audit: h.audit})
	if err != nil {
		h.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", h.listen)
	if err != nil {
		h.t.Fatal(err)
	}
	h.srv, h.addr = srv, ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	h.stop, h.done = cancel, make(chan error, 1)
	go func() { h.done <- srv.Serve(ctx, ln) }()
}

// shutdown stops the server (SIGTERM's path) and waits for the drain.
func (h *harness) shutdown() {
	if h.stop == nil {
		return
	}
	h.stop()
	select {
	case <-h.done:
	case <-time.After(60 * time.Second):
		h.t.Error("server did not stop within 60s")
	}
	h.stop = nil
}

// client signs with the fleet key for the harness's agent, as the
// handler does.
func (h *harness) client() *protocol.Client { return newClient(h.t, h.addr, h.fleet, h.agent, nil) }

func newClient(t testing.TB, addr string, k protocol.Key, agent string, tc *tls.Config) *protocol.Client {
	t.Helper()
	c, err := protocol.NewClient(protocol.ClientConfig{Addr: addr, Key: k, Agent: agent, TLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// do sends verb for svc without a fault ("-").
func (h *harness) do(verb protocol.Verb, svc string) (protocol.Reply, error) {
	return h.doFault(verb, svc, "-")
}

func (h *harness) doFault(verb protocol.Verb, svc, fault string) (protocol.Reply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return h.client().Do(ctx, verb, svc, fault)
}

// raw sends bytes on a fresh connection, half-closes, and returns the
// first reply line ("" if the agent closed without one).
func (h *harness) raw(b []byte) string {
	h.t.Helper()
	c, err := net.DialTimeout("tcp", h.addr, 10*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	c.Write(b) // may fail with a reset once the agent gave up: fine
	c.(*net.TCPConn).CloseWrite()
	line, _ := bufio.NewReader(c).ReadString('\n')
	return line
}

// signed builds a frame with arbitrary fields (agent worker1, fault "-")
// and a correct MAC under the host key, so that a refusal is about the
// field, not the signature.
func (h *harness) signed(keyID, verb, svc, ts, nonce string) []byte {
	return signedFrame(h.key, keyID, h.agent, verb, svc, "-", ts, nonce)
}

func signedFrame(k protocol.Key, keyID, agent, verb, svc, fault, ts, nonce string) []byte {
	mac := protocol.RequestMAC(k, keyID, agent, protocol.Verb(verb), svc, fault, ts, nonce)
	return []byte(strings.Join([]string{protocol.Version, keyID, agent, verb, svc, fault, ts, nonce, mac}, " ") + "\n")
}

func (h *harness) valid(verb protocol.Verb, svc string, at time.Time) []byte {
	return h.validFault(verb, svc, "-", at)
}

func (h *harness) validFault(verb protocol.Verb, svc, fault string, at time.Time) []byte {
	n, err := protocol.NewNonce()
	if err != nil {
		h.t.Fatal(err)
	}
	return protocol.NewRequest(h.key, verb, svc, fault, at, n).Marshal()
}

func (h *harness) marks(svc string) int {
	b, err := os.ReadFile(h.mark(svc))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// records parses the audit log so far.
func (h *harness) records() []rig.AuditRecord {
	h.t.Helper()
	var out []rig.AuditRecord
	for _, l := range strings.Split(strings.TrimSpace(h.audit.String()), "\n") {
		if l == "" {
			continue
		}
		var r rig.AuditRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			h.t.Fatalf("audit line %q: %v", l, err)
		}
		r.Raw = l
		out = append(out, r)
	}
	return out
}

// restartRecords waits (bounded) until the audit log holds n restart
// lines for svc, and returns them.
func (h *harness) restartRecords(svc string, n int) []rig.AuditRecord {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got []rig.AuditRecord
		for _, r := range h.records() {
			if r.Verb == "restart" && r.Service == svc {
				got = append(got, r)
			}
		}
		if len(got) >= n || time.Now().After(deadline) {
			if len(got) != n {
				h.t.Fatalf("%d restart lines for %s, want %d:\n%s", len(got), svc, n, h.audit.String())
			}
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkNoLeak waits (bounded) for the goroutine count to return to base.
func checkNoLeak(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("goroutine leak: %d running, %d before the test\n%s", n, base, buf)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

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

const deniedLine = "SH2 - denied - -1 0 0 - - -\n"

// okPrefix starts a signed ok reply of the harness's agent that ran its
// action and exited 0.
const okPrefix = "SH2 worker1 ok run 0 "

// liveMembers lists the processes of group pgid that have not exited (a
// zombie awaiting its reaper has).
func liveMembers(pgid int) []int {
	var live []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := proc.ReadStat(pid); err == nil && st.PGRP == pgid && st.State != 'Z' {
			live = append(live, pid)
		}
	}
	return live
}

func killChildren(t *testing.T, dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "childpid-*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// waitAudit waits for a new denied audit line after line `before`
// mentioning reason.
func waitAudit(t *testing.T, h *harness, before int, reason string) {
	t.Helper()
	waitAuditOutcome(t, h, before, protocol.OutcomeDenied, reason)
}

func waitAuditOutcome(t *testing.T, h *harness, before int, outcome protocol.Outcome, reason string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		lines := strings.Split(strings.TrimSpace(h.audit.String()), "\n")
		if len(lines) > before {
			for _, l := range lines[before:] {
				if strings.Contains(l, `"outcome":"`+string(outcome)+`"`) && strings.Contains(l, reason) {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s audit line with %q; got:\n%s", outcome, reason, strings.Join(lines[min(before, len(lines)):], "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// auditEventually reports whether the audit log holds s within 60 s: a
// bound for a loaded machine (the clock test once ran out of 10 s), only
// ever waited in full when the line never comes.
func auditEventually(h *harness, s string) bool {
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if strings.Contains(h.audit.String(), s) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// fakeClockServer replaces the harness's agent with one on a clock the
// test moves by hand, serving on a new loopback port (h.addr follows it).
func fakeClockServer(t *testing.T, h *harness) (srv *Server, now func() time.Time, advance func(time.Duration)) {
	t.Helper()
	h.shutdown()
	var mu sync.Mutex
	clock := time.Now()
	now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance = func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	cfg, err := Load(h.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if srv, err = NewServer(cfg, Deps{Audit: h.audit, Now: now}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	h.addr = ln.Addr().String()
	return srv, now, advance
}
