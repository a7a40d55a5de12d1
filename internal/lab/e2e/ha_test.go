package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/engine"
	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/testutil"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/proc"
)

// The HA test's agent budget: two restarts an hour, 20 s apart. 20 s is
// longer than a split brain's two handler runs for one fault are apart
// (each endpoint sees the fault at its own check, seconds apart), and short
// enough that the test can wait it out between faults.
const (
	haMax    = 2
	haMinGap = 20 * time.Second
)

// haRestartPause is how long the agent's restart action waits before it
// restarts the worker: a worker that takes a few seconds to restart, so
// that in a split brain the second endpoint reaches HARD CRITICAL (and
// asks too) while the worker is still down.
const haRestartPause = "3"

// haLab is one worker, one agent (worker1) and a two-endpoint Icinga 2 HA
// zone running the shipped selfheal.conf, each endpoint with its own
// handler state dir and log.
type haLab struct {
	t         *testing.T
	zone      *engine.Zone
	worker    rig.Worker
	audit     string
	fleetFile string // the monitoring nodes' key
	port      int    // the agent's
	bin       func(name string) string
	files     []string // logs for a report
	start     time.Time
}

// TestHAZone is the issue's proof on a real Icinga 2 HA zone: connected,
// one restart for a fault, by whichever endpoint has authority; split (both
// endpoints run every check and every handler), still one restart for a
// fault; and the agent's budget holds across both endpoints. Everything is
// asserted from the agent's audit log and from both endpoints' own logs.
func TestHAZone(t *testing.T) {
	t.Parallel()
	lab := newHALab(t)
	z := lab.zone

	// Phase 1, connected: one endpoint has authority and runs the handler.
	auth, err := z.WaitAuthorities(lab.step(60*time.Second), hostName, svcName, 1)
	if err != nil {
		lab.fail("%v", err)
	}
	leader, follower := z.Endpoint(auth[0]), z.Endpoints[0]
	if follower == leader {
		follower = z.Endpoints[1]
	}
	lab.logf("phase 1 (connected): %s has authority over %s!%s", leader.Name, hostName, svcName)
	for _, e := range z.Endpoints {
		if _, err := e.WaitService(lab.step(60*time.Second), hostName, svcName, engine.StateIs(nagios.OK, true)); err != nil {
			lab.fail("%s: %v", e.Name, err)
		}
	}
	skip := fmt.Sprintf("Skipping event handler for HA-paused checkable '%s!%s'", hostName, svcName)
	skipsBefore := lab.mainLogCount(follower, skip)
	m := lab.mark()
	pid0 := lab.worker.PID()
	faultAt := time.Now()
	lab.crash()
	if _, err := rig.WaitHealed(lab.step(90*time.Second), leader.Instance, m.log[leader.Name]); err != nil {
		lab.fail("phase 1: %s: %v", leader.Name, err)
	}
	healed := time.Since(faultAt)
	lab.waitHandlerRestarts(m, map[string]int{leader.Name: 1})
	p1 := lab.restartsSince(m)
	run1 := lab.assertOneRun("phase 1", p1)
	if c := rig.CountRestarts(p1); c.Run != 1 || c.Recorded+c.Joined+c.Spent+c.Denied+c.Other != 0 {
		lab.fail("phase 1: the agent's audit log: %s; want exactly 1 restart request, run", c)
	}
	if n := len(lab.handlerRestartsSince(m, follower)); n != 0 {
		lab.fail("phase 1: %s (no authority) ran the handler %d times", follower.Name, n)
	}
	if n := rig.Count(lab.logSince(m, follower), engine.EventHandler(hostName, svcName, "CRITICAL", "")); n != 0 {
		lab.fail("phase 1: %s (no authority) logged %d SERVICE EVENT HANDLER at CRITICAL", follower.Name, n)
	}
	if n := lab.mainLogCount(follower, skip); n <= skipsBefore {
		lab.fail("phase 1: %s never logged %q", follower.Name, skip)
	}
	if pid1 := lab.worker.PID(); pid1 == pid0 || !proc.Alive(pid1) {
		lab.fail("phase 1: worker pid %d -> %d (alive %v): want a new, running process", pid0, pid1, proc.Alive(pid1))
	}
	lab.logf("phase 1: healed %.1fs after the crash; handler runs: %s; audit: %s (fault %s, budget %s)",
		healed.Seconds(), lab.handlerSummary(m), rig.CountRestarts(p1), run1.Fault, budgetOf(run1))

	// Phase 2, split brain: cut the link as early as possible (authority
	// moves only after 30 s of uptime and a 10 s tick), then crash again.
	z.Cut()
	cut := time.Now()
	if err := z.WaitSplit(lab.step(30 * time.Second)); err != nil {
		lab.fail("%v", err)
	}
	if _, err := z.WaitAuthorities(lab.step(90*time.Second), hostName, svcName, len(z.Endpoints)); err != nil {
		lab.fail("%v", err)
	}
	lab.logf("phase 2 (split): both endpoints hold authority %.1fs after the cut", time.Since(cut).Seconds())
	lab.waitPastMinGap(run1)
	for _, e := range z.Endpoints {
		if _, err := e.WaitService(lab.step(30*time.Second), hostName, svcName, engine.StateIs(nagios.OK, true)); err != nil {
			lab.fail("phase 2: %s: %v", e.Name, err)
		}
	}
	m = lab.mark()
	pid1 := lab.worker.PID()
	faultAt = time.Now()
	lab.crash()
	for _, e := range z.Endpoints {
		// Each endpoint ran its own checks and its own handler, and
		// records its own heal.
		if _, err := rig.WaitHealed(lab.step(90*time.Second), e.Instance, m.log[e.Name]); err != nil {
			lab.fail("phase 2: %s: %v", e.Name, err)
		}
	}
	healed = time.Since(faultAt)
	lab.waitHandlerRestarts(m, map[string]int{z.Endpoints[0].Name: 1, z.Endpoints[1].Name: 1})
	p2 := lab.restartsSince(m)
	run2 := lab.assertOneRun("phase 2", p2)
	c2 := rig.CountRestarts(p2)
	if c2.Run != 1 || c2.Recorded+c2.Joined != len(p2)-1 || len(p2) < 2 {
		lab.fail("phase 2: the agent's audit log: %s; want one run and every other request answered from it", c2)
	}
	for _, e := range z.Endpoints {
		for _, r := range lab.handlerRestartsSince(m, e) {
			if r.Outcome != "ok" || r.Exit != 0 {
				lab.fail("phase 2: %s's handler: %s; want ok", e.Name, r.Raw)
			}
		}
	}
	if p := lab.worker.PID(); p == pid1 || !proc.Alive(p) {
		lab.fail("phase 2: worker pid %d -> %d (alive %v): want a new, running process", pid1, p, proc.Alive(p))
	}
	lab.logf("phase 2: both endpoints healed %.1fs after the crash; handler runs: %s; audit: %s; faults %s (budget %s)",
		healed.Seconds(), lab.handlerSummary(m), c2, faultsOf(p2), budgetOf(run2))

	// An on-call restart inside min_gap is a fault of its own that begins
	// now, after the run ended: the agent defers it to the gap's end
	// (backoff, signed, nothing run, not counted), and send says so (exit
	// 1) rather than call the earlier restart its own.
	m = lab.mark()
	pid2 := lab.worker.PID()
	out, err := lab.send("restart")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(out, "back-off at the agent") {
		lab.fail("send restart within min_gap: %v, want exit 1 and a back-off\n%s", err, out)
	}
	p2b := lab.restartsSince(m)
	if c := rig.CountRestarts(p2b); len(p2b) != 1 || c.Run != 0 || p2b[0].Outcome != "backoff" || !strings.HasPrefix(p2b[0].Fault, "manual-") ||
		budgetOf(p2b[0]) != budgetOf(run2) {
		lab.fail("a manual restart inside min_gap: %s; want it deferred, not run, not counted", faultsOf(p2b))
	}
	if p := lab.worker.PID(); p != pid2 {
		lab.fail("a manual restart inside min_gap restarted the worker: pid %d -> %d", pid2, p)
	}
	lab.logf("phase 2: a manual restart %.0fs after the run, fault %s: %s, budget %s; handle_worker said %q",
		p2b[0].Time.Sub(run2.Time).Seconds(), p2b[0].Fault, p2b[0].Outcome, budgetOf(p2b[0]), strings.TrimSpace(out))

	// Phase 3, still split: a third fault past min_gap finds the budget
	// (2 an hour) spent, whichever endpoint asks.
	lab.waitPastMinGap(run2)
	for _, e := range z.Endpoints {
		if _, err := e.WaitService(lab.step(30*time.Second), hostName, svcName, engine.StateIs(nagios.OK, true)); err != nil {
			lab.fail("phase 3: %s: %v", e.Name, err)
		}
	}
	m = lab.mark()
	crashed := lab.worker.PID()
	faultAt = time.Now()
	lab.crash()
	lab.waitHandlerRestarts(m, map[string]int{z.Endpoints[0].Name: 1, z.Endpoints[1].Name: 1})
	took := time.Since(faultAt)
	p3 := lab.restartsSince(m)
	c3 := rig.CountRestarts(p3)
	if c3.Run != 0 || c3.Spent != len(p3) || len(p3) < 2 {
		lab.fail("phase 3: the agent's audit log: %s; want every request spent, none run", c3)
	}
	for _, e := range z.Endpoints {
		if n := rig.Count(lab.logSince(m, e), engine.EventHandler(hostName, svcName, "CRITICAL", "HARD")); n == 0 {
			lab.fail("phase 3: %s logged no SERVICE EVENT HANDLER at CRITICAL HARD", e.Name)
		}
		for _, r := range lab.handlerRestartsSince(m, e) {
			if r.Outcome != "spent" || r.Exit != 1 {
				lab.fail("phase 3: %s's handler: %s; want spent, exit 1", e.Name, r.Raw)
			}
		}
		if _, err := e.WaitComment(lab.step(30*time.Second), hostName, svcName, "budget spent"); err != nil {
			lab.fail("phase 3: %s: %v", e.Name, err)
		}
		if _, err := e.WaitService(lab.step(30*time.Second), hostName, svcName, engine.StateIs(nagios.Critical, true)); err != nil {
			lab.fail("phase 3: %s: %v", e.Name, err)
		}
	}
	if p := lab.worker.PID(); p != crashed || proc.Alive(p) {
		lab.fail("phase 3: worker pid %d (alive %v) after the budget was spent; want the crashed %d, not running", p, proc.Alive(p), crashed)
	}
	all, err := rig.ReadAudit(lab.audit)
	if err != nil {
		lab.fail("%v", err)
	}
	if c := rig.CountRestarts(all); c.Run != haMax {
		lab.fail("the whole test: the agent's audit log: %s; want exactly %d runs, the budget", c, haMax)
	}
	lab.logf("phase 3: %.1fs after the crash both endpoints were refused; handler runs: %s; audit: %s; whole test: %s, %.0fs",
		took.Seconds(), lab.handlerSummary(m), c3, rig.CountRestarts(all), time.Since(lab.start).Seconds())
}

func newHALab(t *testing.T) *haLab {
	t.Helper()
	icinga := testutil.LookTool(t, "icinga2", "/usr/sbin/icinga2")
	lab := &haLab{t: t, start: time.Now()}
	dir := t.TempDir()
	bins := map[string]string{}
	for _, name := range rig.Binaries {
		bins[name] = testutil.Binary(t, name)
	}
	binDir := filepath.Join(dir, "bin")
	if err := rig.LinkBinaries(binDir, bins); err != nil {
		t.Fatal(err)
	}
	bin := func(name string) string { return filepath.Join(binDir, name) }
	lab.bin = bin
	waddr, err := rig.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	lport, err := rig.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	lab.worker = rig.Worker{Bin: bin("demo_worker"), Addr: waddr, PIDFile: filepath.Join(dir, "worker.pid"),
		LogFile: filepath.Join(dir, "worker.log")}
	lab.audit = filepath.Join(dir, "audit.log")
	listenerLog := filepath.Join(dir, "listener.log")
	zoneOut := filepath.Join(dir, "zone.out")
	lab.files = []string{lab.audit, listenerLog, lab.worker.LogFile, zoneOut}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := lab.worker.Daemon(ctx, "start"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lab.worker.Shutdown(context.Background()) })
	restart := append([]string{"/bin/sh", "-c", "sleep " + haRestartPause + ` && exec "$0" "$@"`}, lab.worker.Argv("restart")...)
	files, err := rig.Prepare(ctx, rig.Kit{Dir: filepath.Join(dir, "agent"), Agent: hostName, Issue: bin("handle_worker"),
		Config: rig.ListenerConfig{
			Listen: "127.0.0.1:" + strconv.Itoa(lport), Allow: rig.Loopback, AuditLog: lab.audit,
			Budget: &rig.Budget{Max: haMax, Window: "1h", MinGap: haMinGap.String()},
			Services: []rig.Service{{Name: rig.Target, Actions: map[string]rig.Action{
				"restart": {Argv: restart, Timeout: "10s", KillGrace: "5s"}}}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	lab.fleetFile, lab.port = files.FleetFile, lport
	ln, err := rig.StartListener(ctx, rig.Serve{Bin: bin("worker_listener"), Config: files.Config, Log: listenerLog,
		Ping: &files.Fleet, PingAgent: hostName})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Stop(10 * time.Second) })

	// The shipped selfheal.conf on both endpoints, one fleet key, and each
	// endpoint's own handler state and log (${dir} is the endpoint's).
	_, wport, _ := strings.Cut(waddr, ":")
	site := rig.Site{Kind: engine.Icinga2, ConfigDir: filepath.Join(testutil.ModuleRoot(t), "nagios-config"), BinDir: binDir,
		KeyFile: files.FleetFile, StateDir: "${dir}/handler-state", HandlerLog: "${dir}/handle_worker.log",
		ListenerPort: lport, CheckTimeout: 2, MaxAge: "2s,3s", Recheck: "1s"}
	if site.WorkerPort, err = strconv.Atoi(wport); err != nil {
		t.Fatal(err)
	}
	cfg, err := site.Config()
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(zoneOut)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	z, err := engine.NewZone(engine.ZoneConfig{Binary: icinga, ObjectFiles: cfg.ObjectFiles, Objects: cfg.Objects,
		Resources: cfg.Resources, Constants: cfg.Constants, Stderr: out})
	if err != nil {
		t.Fatal(err)
	}
	lab.zone = z
	// Registered last, so it runs first: no handler fires while the rest
	// goes down.
	t.Cleanup(func() {
		if err := z.Close(); err != nil {
			t.Errorf("closing the zone: %v", err)
		}
	})
	// Before the zone's directory goes.
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(lab.report())
		}
	})
	for _, e := range z.Endpoints {
		if err := os.MkdirAll(filepath.Join(e.Dir, "handler-state"), 0o700); err != nil {
			t.Fatal(err)
		}
		if text, err := e.Validate(ctx); err != nil {
			t.Fatalf("%s: %v\n%s", e.Name, err, text)
		}
	}
	if err := z.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := z.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	lab.logf("zone %s up and connected", strings.Join([]string{z.Endpoints[0].Name, z.Endpoints[1].Name}, ", "))
	return lab
}

// send runs `handle_worker send VERB` as on-call would, with the fleet key,
// and returns the first line it prints.
func (l *haLab) send(verb string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.bin("handle_worker"), "send", verb, "--host", "127.0.0.1", "--port", strconv.Itoa(l.port),
		"--agent", hostName, "--target", rig.Target, "--key-file", l.fleetFile, "--state-dir", l.t.TempDir(),
		"--hostname", hostName, "--service", svcName)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, stderr.String())
	}
	// Its first line is the human one; the rest is the action's output.
	line, _, _ := strings.Cut(string(out), "\n")
	return line, err
}

// step bounds one wait; the whole test stays under about 3 minutes.
func (l *haLab) step(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	l.t.Cleanup(cancel)
	return ctx
}

func (l *haLab) logf(format string, args ...any) {
	l.t.Helper()
	l.t.Logf("[%5.1fs] %s", time.Since(l.start).Seconds(), fmt.Sprintf(format, args...))
}

func (l *haLab) fail(format string, args ...any) {
	l.t.Helper()
	l.t.Fatalf("[%5.1fs] %s", time.Since(l.start).Seconds(), fmt.Sprintf(format, args...))
}

func (l *haLab) crash() {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := l.worker.Fault(ctx, "crash"); err != nil {
		l.fail("crashing the worker: %v", err)
	}
}

// haMark is where every log stood before a fault.
type haMark struct {
	audit   int
	log     map[string]int // compat log entries, per endpoint
	handler map[string]int // handler log records, per endpoint
}

func (l *haLab) mark() haMark {
	m := haMark{log: map[string]int{}, handler: map[string]int{}}
	a, err := rig.ReadAudit(l.audit)
	if err != nil {
		l.fail("%v", err)
	}
	m.audit = len(a)
	for _, e := range l.zone.Endpoints {
		entries, _ := e.Log()
		m.log[e.Name] = len(entries)
		m.handler[e.Name] = len(l.handlerLog(e))
	}
	return m
}

func (l *haLab) handlerLog(e *engine.ZoneEndpoint) []rig.HandlerRecord {
	recs, err := rig.ReadHandlerLog(filepath.Join(e.Dir, "handle_worker.log"))
	if err != nil {
		l.fail("%v", err)
	}
	return recs
}

func (l *haLab) handlerRestartsSince(m haMark, e *engine.ZoneEndpoint) []rig.HandlerRecord {
	return rig.Restarts(l.handlerLog(e)[m.handler[e.Name]:])
}

func (l *haLab) logSince(m haMark, e *engine.ZoneEndpoint) []engine.LogEntry {
	entries, _ := e.Log()
	return entries[min(m.log[e.Name], len(entries)):]
}

// restartsSince is the agent's restart lines after m.
func (l *haLab) restartsSince(m haMark) []rig.AuditRecord {
	a, err := rig.ReadAudit(l.audit)
	if err != nil {
		l.fail("%v", err)
	}
	var out []rig.AuditRecord
	for _, r := range a[m.audit:] {
		if r.Verb == "restart" {
			out = append(out, r)
		}
	}
	return out
}

// waitHandlerRestarts waits until each named endpoint's handler has logged
// want restart runs after m, and then a moment longer, so that a run that
// should not be there has the time to show.
func (l *haLab) waitHandlerRestarts(m haMark, want map[string]int) {
	l.t.Helper()
	ctx := l.step(60 * time.Second)
	for {
		done := true
		for _, e := range l.zone.Endpoints {
			if len(l.handlerRestartsSince(m, e)) < want[e.Name] {
				done = false
			}
		}
		if done {
			break
		}
		select {
		case <-ctx.Done():
			l.fail("waiting for handler runs %v: got %s", want, l.handlerSummary(m))
		case <-time.After(100 * time.Millisecond):
		}
	}
	time.Sleep(2 * time.Second)
	for _, e := range l.zone.Endpoints {
		if n := len(l.handlerRestartsSince(m, e)); n != want[e.Name] {
			l.fail("%s's handler asked %d times, want %d: %s", e.Name, n, want[e.Name], l.handlerSummary(m))
		}
	}
}

// assertOneRun returns the one restart that ran among recs.
func (l *haLab) assertOneRun(phase string, recs []rig.AuditRecord) rig.AuditRecord {
	l.t.Helper()
	var runs []rig.AuditRecord
	for _, r := range recs {
		if r.Ran() {
			runs = append(runs, r)
		}
	}
	if len(runs) != 1 {
		l.fail("%s: %d restarts ran (%s), want exactly 1", phase, len(runs), rig.CountRestarts(recs))
	}
	if runs[0].Outcome != "ok" || runs[0].Agent != hostName {
		l.fail("%s: the run: %s; want outcome ok for agent %s", phase, runs[0].Raw, hostName)
	}
	return runs[0]
}

// waitPastMinGap waits until a new fault is past min_gap after run: the
// audit log's times are whole seconds, so one more.
func (l *haLab) waitPastMinGap(run rig.AuditRecord) {
	if d := time.Until(run.Time.Add(haMinGap + time.Second)); d > 0 {
		l.logf("waiting %.1fs for min_gap (%s) since the last restart", d.Seconds(), haMinGap)
		time.Sleep(d)
	}
}

func (l *haLab) mainLogCount(e *engine.ZoneEndpoint, substr string) int {
	lines, err := e.MainLogLines(substr)
	if err != nil {
		l.fail("%v", err)
	}
	return len(lines)
}

// handlerSummary says, per endpoint, what each handler run after m was told.
func (l *haLab) handlerSummary(m haMark) string {
	var parts []string
	for _, e := range l.zone.Endpoints {
		var runs []string
		for _, r := range l.handlerRestartsSince(m, e) {
			runs = append(runs, fmt.Sprintf("%s/%s fault %s exit %d", r.Outcome, r.Origin, r.Fault, r.Exit))
		}
		parts = append(parts, fmt.Sprintf("%s %d [%s]", e.Name, len(runs), strings.Join(runs, "; ")))
	}
	return strings.Join(parts, ", ")
}

func faultsOf(recs []rig.AuditRecord) string {
	var f []string
	for _, r := range recs {
		f = append(f, r.Fault+" ("+r.Origin+")")
	}
	return strings.Join(f, ", ")
}

func budgetOf(r rig.AuditRecord) string {
	if r.BudgetUsed == nil || r.BudgetMax == nil {
		return "-"
	}
	return fmt.Sprintf("%d/%d", *r.BudgetUsed, *r.BudgetMax)
}

// report is every log of the lab, for a failing test.
func (l *haLab) report() string {
	var b strings.Builder
	files := append([]string{}, l.files...)
	if l.zone != nil {
		for _, e := range l.zone.Endpoints {
			files = append(files, e.LogFile, e.MainLog, filepath.Join(e.Dir, "handle_worker.log"))
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if len(data) > 12000 {
			data = append([]byte("...\n"), data[len(data)-12000:]...)
		}
		fmt.Fprintf(&b, "==> %s <==\n%s\n", f, strings.TrimSpace(string(data)))
	}
	return b.String()
}
