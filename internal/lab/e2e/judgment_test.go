package e2e

// The judgment rules under a real Nagios Core 4 (issue 11): each "no
// restart" scenario first heals a crash on the same loop, so it cannot pass
// with the loop broken; then the condition holds the restart back (the
// engine ran the handler at HARD CRITICAL, the agent ran nothing); then the
// condition goes and the sample's reevaluate service heals the same fault.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/engine"
	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/nagios"
)

// judged is one loop for a judgment scenario.
type judged struct {
	t *testing.T
	l *rig.Loop
}

func newJudged(t *testing.T, opts rig.LoopOptions) *judged {
	opts.Kind = engine.Nagios4
	return &judged{t: t, l: newLoop(t, opts)}
}

func (j *judged) fail(format string, args ...any) {
	j.t.Helper()
	fail(j.t, j.l, format, args...)
}

// healOnce shows the loop healing a crash: the proof that a later "no
// restart" is the rule's doing.
func (j *judged) healOnce(ctx context.Context) {
	j.t.Helper()
	mark := j.l.Mark()
	if err := j.l.Fault(ctx, "crash"); err != nil {
		j.t.Fatal(err)
	}
	if _, err := j.l.WaitHealed(ctx, mark); err != nil {
		j.fail("the loop did not heal a crash before the rule was tried: %v", err)
	}
	if c := restarts(j.t, j.l); c.Run != 1 {
		j.fail("audit log: %s; want 1 run after the first crash", c)
	}
}

// waitLog waits for an entry of the engine's log after mark.
func (j *judged) waitLog(ctx context.Context, mark int, m func(engine.LogEntry) bool, what string) {
	j.t.Helper()
	for ctx.Err() == nil {
		if rig.Index(j.l.Log(), mark, m) >= 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	j.fail("no %s in the engine's log", what)
}

func (j *judged) submit(cmd string) {
	j.t.Helper()
	if err := j.l.Inst.SubmitCommand(cmd); err != nil {
		j.t.Fatal(err)
	}
}

// waitField polls status.dat until the block of type typ for the rig's
// host (and service, for service blocks) has field=want.
func (j *judged) waitField(ctx context.Context, typ, field, want string) map[string]string {
	j.t.Helper()
	var last map[string]string
	for ctx.Err() == nil {
		if st, err := j.l.Inst.Status(); err == nil {
			for _, b := range st.Blocks {
				f := b.Fields
				if b.Type == typ && f["host_name"] == hostName && (f["service_description"] == "" || f["service_description"] == svcName) {
					last = f
					if f[field] == want {
						return f
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	j.fail("status.dat: %s %s never became %q (last block %v)", typ, field, want, last)
	return nil
}

// statusSince waits for a status.dat that Nagios created at or after t.
func (j *judged) statusSince(ctx context.Context, t time.Time) *engine.Status {
	j.t.Helper()
	var created string
	for ctx.Err() == nil {
		if st, err := j.l.Inst.Status(); err == nil {
			for _, b := range st.Blocks {
				if b.Type == "info" {
					created = b.Fields["created"]
				}
			}
			if c, err := strconv.ParseInt(created, 10, 64); err == nil && c >= t.Unix() {
				return st
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	j.fail("status.dat: never created at or after %s (last created=%s)", t.Format(time.TimeOnly), created)
	return nil
}

// waitHeld waits for the handler to log a HARD CRITICAL run held back by
// rule, after the crash; it returns the handler's records so far.
func (j *judged) waitHeld(ctx context.Context, rule string) []rig.HandlerRecord {
	j.t.Helper()
	for ctx.Err() == nil {
		recs, _ := rig.ReadHandlerLog(j.l.HandlerLog)
		for _, r := range recs {
			if r.Held == rule && r.State == "CRITICAL" {
				return recs
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	j.fail("the handler never held a restart back for %q", rule)
	return nil
}

// crashHeld crashes the worker and asserts that the restart is held back
// by rule: the engine ran the handler at HARD CRITICAL, the handler held,
// and over the next few seconds of checks the agent runs nothing and the
// service stays CRITICAL.
func (j *judged) crashHeld(ctx context.Context, rule, comment string) {
	j.t.Helper()
	mark := j.l.Mark()
	if err := j.l.Fault(ctx, "crash"); err != nil {
		j.t.Fatal(err)
	}
	j.waitLog(ctx, mark, hardHandler, "a handler run at HARD CRITICAL")
	j.waitHeld(ctx, rule)
	from := len(j.reevaluations())
	if _, err := j.l.Inst.WaitComment(ctx, hostName, svcName, comment); err != nil {
		j.fail("%v", err)
	}
	j.keptHeld(ctx, from)
	if c := restarts(j.t, j.l); c.Run != 1 {
		j.fail("audit log: %s; want still 1 run (held back by %s)", c, rule)
	}
	st, err := j.l.Inst.Status()
	if err != nil {
		j.t.Fatal(err)
	}
	if s, ok := st.Service(hostName, svcName); !ok || s.State != nagios.Critical {
		j.fail("service is %v, want it still CRITICAL while held back", s.State)
	}
	if n := rig.Count(j.l.Log()[mark:], hardHandler); n < 1 {
		j.fail("the engine never ran the handler at HARD CRITICAL")
	}
}

// reevalRun is one reevaluate run, from the handler's log.
type reevalRun struct {
	Mode    string `json:"mode"`
	Held    int    `json:"held"`
	Message string `json:"message"`
}

// reevaluations are the reevaluate runs logged so far, in order.
func (j *judged) reevaluations() []reevalRun {
	b, _ := os.ReadFile(j.l.HandlerLog)
	var out []reevalRun
	for _, line := range strings.Split(string(b), "\n") {
		var r reevalRun
		if json.Unmarshal([]byte(line), &r) == nil && r.Mode == "reevaluate" {
			out = append(out, r)
		}
	}
	return out
}

// keptHeld waits for several reevaluate runs (one a second) after run
// number from, and fails if any dropped the hold: the service is still
// HARD CRITICAL, so nothing would ever ask for its restart again (issue
// 18: a status.dat written before the HARD CRITICAL showed it OK). The
// first run after from may have read the records before the hold.
func (j *judged) keptHeld(ctx context.Context, from int) {
	j.t.Helper()
	const runs = 4
	var got []reevalRun
	for ctx.Err() == nil {
		if got = j.reevaluations(); len(got) >= from+runs {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(got) < from+runs {
		j.fail("only %d reevaluate runs after the hold, want %d", len(got)-from, runs)
	}
	for _, r := range got[from+1 : from+runs] {
		if r.Held < 1 || !strings.Contains(r.Message, "cleared=0") {
			j.fail("reevaluate dropped the hold while the service was HARD CRITICAL: held=%d %q", r.Held, r.Message)
		}
	}
}

// healedByReevaluate waits for OK HARD and for the reevaluate service's
// restart of the held fault.
func (j *judged) healedByReevaluate(ctx context.Context) {
	j.t.Helper()
	if _, err := j.l.Inst.WaitService(ctx, hostName, svcName, engine.StateIs(nagios.OK, true)); err != nil {
		j.fail("not healed once the reason went: %v", err)
	}
	if c := restarts(j.t, j.l); c.Run != 2 {
		j.fail("audit log: %s; want 2 runs (the held fault healed once)", c)
	}
	recs, _ := rig.ReadHandlerLog(j.l.HandlerLog)
	for _, r := range recs {
		if r.Source == "reevaluate" && r.Result == "healed" {
			return
		}
	}
	j.fail("no handler record of a reevaluate heal")
}

func downtimeID(st *engine.Status, typ string) string {
	for _, b := range st.Blocks {
		if b.Type == typ && b.Fields["host_name"] == hostName {
			return b.Fields["downtime_id"]
		}
	}
	return ""
}

// Service and host downtime: no restart while in downtime, healed by
// reevaluate once the downtime is cancelled.
func TestDowntimeHoldsThenHeals(t *testing.T) {
	for _, tc := range []struct{ name, block, del string }{
		{"service", "servicedowntime", "DEL_SVC_DOWNTIME;%s"},
		{"host", "hostdowntime", "DEL_HOST_DOWNTIME;%s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			j := newJudged(t, rig.LoopOptions{})
			ctx := scenarioCtx(t)
			j.healOnce(ctx)
			now := time.Now().Unix()
			if tc.name == "service" {
				j.submit(fmt.Sprintf("SCHEDULE_SVC_DOWNTIME;%s;%s;%d;%d;1;0;3600;e2e;maintenance", hostName, svcName, now-1, now+3600))
				j.waitField(ctx, "servicestatus", "scheduled_downtime_depth", "1")
			} else {
				j.submit(fmt.Sprintf("SCHEDULE_HOST_DOWNTIME;%s;%d;%d;1;0;3600;e2e;maintenance", hostName, now-1, now+3600))
				j.waitField(ctx, "hoststatus", "scheduled_downtime_depth", "1")
			}
			j.crashHeld(ctx, "downtime", "auto-restart held back (downtime)")
			st, err := j.l.Inst.Status()
			if err != nil {
				t.Fatal(err)
			}
			id := downtimeID(st, tc.block)
			if id == "" {
				j.fail("no %s block in status.dat", tc.block)
			}
			j.submit(fmt.Sprintf(tc.del, id))
			j.healedByReevaluate(ctx)
		})
	}
}

// An acknowledgement given during the SOFT states holds the HARD restart
// back; removing it lets reevaluate heal.
func TestAcknowledgedIsNotRestarted(t *testing.T) {
	t.Parallel()
	// 6 attempts: time for the ack to reach status.dat before HARD.
	j := newJudged(t, rig.LoopOptions{MaxAttempts: 6})
	ctx := scenarioCtx(t)
	j.healOnce(ctx)
	mark := j.l.Mark()
	if err := j.l.Fault(ctx, "crash"); err != nil {
		t.Fatal(err)
	}
	// Nagios logs SOFT states only as handler runs (log_service_retries=0).
	j.waitLog(ctx, mark, engine.EventHandler(hostName, svcName, "CRITICAL", "SOFT"), "SOFT CRITICAL")
	j.submit(fmt.Sprintf("ACKNOWLEDGE_SVC_PROBLEM;%s;%s;2;0;0;e2e;on it", hostName, svcName))
	j.waitField(ctx, "servicestatus", "problem_has_been_acknowledged", "1")
	if s, _ := j.l.Inst.Status(); s != nil {
		if sv, ok := s.Service(hostName, svcName); ok && sv.Hard {
			j.fail("the service went HARD before the ack reached status.dat: the test proves nothing")
		}
	}
	j.waitHeld(ctx, "ack")
	if _, err := j.l.Inst.WaitComment(ctx, hostName, svcName, "auto-restart held back (acknowledged)"); err != nil {
		j.fail("%v", err)
	}
	time.Sleep(3 * time.Second)
	if c := restarts(t, j.l); c.Run != 1 {
		j.fail("audit log: %s; want still 1 run (acknowledged)", c)
	}
	if n := rig.Count(j.l.Log()[mark:], hardHandler); n < 1 {
		j.fail("the engine never ran the handler at HARD CRITICAL")
	}
	j.submit(fmt.Sprintf("REMOVE_SVC_ACKNOWLEDGEMENT;%s;%s", hostName, svcName))
	j.healedByReevaluate(ctx)
}

// With the host DOWN the restart is held and the fault's restart is kept:
// once the host is UP, reevaluate heals it, and the agent ran it once.
func TestHostDownHoldsThenHeals(t *testing.T) {
	t.Parallel()
	j := newJudged(t, rig.LoopOptions{})
	ctx := scenarioCtx(t)
	j.healOnce(ctx)
	j.submit(fmt.Sprintf("PROCESS_HOST_CHECK_RESULT;%s;1;host unreachable (e2e)", hostName))
	j.waitField(ctx, "hoststatus", "current_state", "1")
	j.crashHeld(ctx, "host", "auto-restart held back (host DOWN)")
	j.submit(fmt.Sprintf("PROCESS_HOST_CHECK_RESULT;%s;0;host back (e2e)", hostName))
	j.healedByReevaluate(ctx)
}

// A pause holds the restart; resume lets reevaluate heal.
func TestPauseAndResume(t *testing.T) {
	t.Parallel()
	j := newJudged(t, rig.LoopOptions{})
	ctx := scenarioCtx(t)
	j.healOnce(ctx)
	state := j.l.Opts.Dir + "/handler-state"
	out, err := rig.Run(ctx, j.l.Bin("handle_worker"), "pause", "--state-dir", state, "--host", hostName, "--reason", "e2e deploy", "--for", "10m")
	if err != nil || !strings.Contains(out, "paused auto-healing for host "+hostName) {
		j.fail("pause: %v: %s", err, out)
	}
	j.crashHeld(ctx, "pause", "auto-healing paused (host "+hostName+")")
	status, err := rig.Run(ctx, j.l.Bin("handle_worker"), "status", "--state-dir", state)
	if err != nil || !strings.Contains(status, "paused: host "+hostName) || !strings.Contains(status, "pause since") {
		j.fail("status: %v:\n%s", err, status)
	}
	if out, err := rig.Run(ctx, j.l.Bin("handle_worker"), "resume", "--state-dir", state, "--host", hostName); err != nil {
		j.fail("resume: %v: %s", err, out)
	}
	j.healedByReevaluate(ctx)
}

// A volatile service runs the handler at every check: a held-back fault
// still gets one comment, not one per check.
func TestVolatileHeldCommentsOnce(t *testing.T) {
	t.Parallel()
	j := newJudged(t, rig.LoopOptions{Volatile: true})
	ctx := scenarioCtx(t)
	j.healOnce(ctx)
	now := time.Now().Unix()
	j.submit(fmt.Sprintf("SCHEDULE_SVC_DOWNTIME;%s;%s;%d;%d;1;0;3600;e2e;maintenance", hostName, svcName, now-1, now+3600))
	j.waitField(ctx, "servicestatus", "scheduled_downtime_depth", "1")
	j.crashHeld(ctx, "downtime", "auto-restart held back (downtime)")
	// The handler ran at several checks by now, each held.
	deadline := time.Now().Add(20 * time.Second)
	for {
		held := 0
		recs, _ := rig.ReadHandlerLog(j.l.HandlerLog)
		for _, r := range recs {
			if r.Held == "downtime" && r.Source == "event" {
				held++
			}
		}
		if held >= 3 {
			break
		}
		if time.Now().After(deadline) {
			j.fail("the volatile service's handler held only %d times", held)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// A status.dat Nagios wrote 2 s after the third held run shows every
	// comment that run asked for, however slowly the machine goes.
	st := j.statusSince(ctx, time.Now().Add(2*time.Second))
	n := 0
	for _, c := range st.CommentsFor(hostName, svcName) {
		if strings.Contains(c.Text, "held back") {
			n++
		}
	}
	if n != 1 {
		j.fail("%d held-back comments on the volatile service, want 1", n)
	}
}

// A CRITICAL whose every finding is a dependency's is not restarted (the
// loop first heals a self-scoped crash); once the worker's own finding
// joins it (same fault, still HARD CRITICAL, so no new handler run),
// reevaluate reads check_worker's counters from status.dat and heals.
func TestDependencyScopeHoldsSelfHeals(t *testing.T) {
	t.Parallel()
	j := newJudged(t, rig.LoopOptions{})
	ctx := scenarioCtx(t)
	j.healOnce(ctx)
	mark := j.l.Mark()
	if err := j.l.Fault(ctx, "depfail"); err != nil {
		t.Fatal(err)
	}
	j.waitLog(ctx, mark, hardHandler, "a handler run at HARD CRITICAL")
	j.waitHeld(ctx, "dependency")
	if _, err := j.l.Inst.WaitComment(ctx, hostName, svcName, "auto-restart held back (dependency)"); err != nil {
		j.fail("%v", err)
	}
	st, err := j.l.Inst.Status()
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := st.Service(hostName, svcName); !strings.Contains(s.Output, "dependency") {
		j.fail("check_worker's output %q does not show the scope", s.Output)
	}
	time.Sleep(4 * time.Second)
	if c := restarts(t, j.l); c.Run != 1 {
		j.fail("audit log: %s; want still 1 run (a dependency's fault)", c)
	}
	if err := j.l.Fault(ctx, "fail"); err != nil {
		t.Fatal(err)
	}
	j.healedByReevaluate(ctx)
}

// The mass-failure rule, read from status.dat: 3 services of one host
// failing at once are 3 restarts; 20 at once are more than the zone's
// allowance (10), so the rest are held with a comment naming the count and
// the host; once the restarts let through are seen healed, reevaluate's
// asks are let through too: every service ends up healed without a human. The agent's own breaker is on, with the same short
// quiet time, but set to hold only beyond 19 of its 20: otherwise which of
// the two opens first is a race (the agent's own tests cover its breaker),
// and this test is about the node's.
func TestBreakerHoldsMassFailure(t *testing.T) {
	// Not parallel: 20 workers at once want the machine to themselves.
	on := true
	j := newJudged(t, rig.LoopOptions{Extra: 19, HandlerArgs: "--breaker-threshold=10 --breaker-window=5m --breaker-quiet=3s",
		Breaker: &rig.Breaker{Enabled: &on, Quiet: "3s", Fraction: 0.95}})
	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
	defer cancel()
	type svc struct {
		name string
		w    rig.Worker
	}
	all := []svc{{svcName, j.l.Worker}}
	for _, x := range j.l.Extras {
		all = append(all, svc{x.Name, x.Worker})
	}
	crash := func(list []svc) {
		errs := make(chan error, len(list))
		for _, s := range list {
			go func() { errs <- s.w.Fault(ctx, "crash") }()
		}
		for range list {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
	waitAllOK := func(list []svc, what string) {
		for _, s := range list {
			if _, err := j.l.Inst.WaitService(ctx, hostName, s.name, func(x engine.Service) bool {
				return x.HasBeenChecked && x.State == nagios.OK && time.Since(x.LastCheck) < 5*time.Second
			}); err != nil {
				j.fail("%s: %s not healed: %v", what, s.name, err)
			}
		}
	}
	heldBy := func(rule string) int {
		recs, _ := rig.ReadHandlerLog(j.l.HandlerLog)
		n := 0
		for _, r := range recs {
			if r.Held == rule {
				n++
			}
		}
		return n
	}

	crash(all[:3])
	for ctx.Err() == nil && restarts(t, j.l).Run < 3 {
		time.Sleep(200 * time.Millisecond)
	}
	waitAllOK(all[:3], "3 at once")
	if c := restarts(t, j.l); c.Run != 3 || heldBy("breaker") != 0 {
		j.fail("3 at once: audit %s, %d breaker holds; want 3 runs and none held", c, heldBy("breaker"))
	}

	crash(all)
	for ctx.Err() == nil && heldBy("breaker") == 0 {
		time.Sleep(200 * time.Millisecond)
	}
	// At the first hold at most 10 of this burst had been let through
	// (restarts still running can only lower the count seen now).
	if n := restarts(t, j.l).Run; n > 3+10 {
		j.fail("%d runs by the breaker's first hold; it was to hold after 10", n)
	}
	// Which services the breaker holds depends on the order the checks
	// ran in: look for its comment on any of them.
	var c engine.Comment
	err := fmt.Errorf("no comment containing %q on any service", "mass failure")
	for deadline := time.Now().Add(30 * time.Second); err != nil && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		st, serr := j.l.Inst.Status()
		if serr != nil {
			continue
		}
		for _, s := range all {
			for _, cm := range st.CommentsFor(hostName, s.name) {
				if strings.Contains(cm.Text, "mass failure") {
					c, err = cm, nil
				}
			}
		}
	}
	if err != nil {
		// The handler's event lines and the node's breaker: the loop's
		// report is cut to its tail, which reevaluate's lines fill.
		var ev []string
		recs, _ := rig.ReadHandlerLog(j.l.HandlerLog)
		for _, r := range recs {
			if r.Source == "event" && r.State == "CRITICAL" {
				ev = append(ev, r.Raw)
			}
		}
		b, _ := os.ReadFile(j.l.Opts.Dir + "/handler-state/zone.json")
		t.Logf("handler event lines:\n%s\nzone.json: %s", strings.Join(ev, "\n"), b)
		j.fail("no mass-failure comment: %v", err)
	}
	if !strings.Contains(c.Text, "host "+hostName) || !strings.Contains(c.Text, "services of this zone turned CRITICAL") {
		j.fail("the breaker's comment %q names no count or host", c.Text)
	}
	waitAllOK(all, "after the breaker closed")
	recs, _ := rig.ReadHandlerLog(j.l.HandlerLog)
	healedLater := 0
	for _, r := range recs {
		if r.Source == "reevaluate" && r.Result == "healed" {
			healedLater++
		}
	}
	if healedLater == 0 {
		j.fail("no service was healed by reevaluate after the breaker")
	}
	t.Logf("20 at once: %s in the audit log, %d healed by reevaluate once the breaker closed", restarts(t, j.l), healedLater)
}

// Under Icinga 2 the rules read its own macros ($service.downtime_depth$,
// $service.acknowledgement$, $service.perfdata$): each holds the restart
// back after the same loop healed a crash.
func TestIcingaJudgment(t *testing.T) {
	for _, tc := range []struct {
		name, rule, comment string
		before              func(j *judged, ctx context.Context)
		fault               string
	}{
		{"downtime", "downtime", "auto-restart held back (downtime)", func(j *judged, ctx context.Context) {
			now := time.Now().Unix()
			j.submit(fmt.Sprintf("SCHEDULE_SVC_DOWNTIME;%s;%s;%d;%d;1;0;3600;e2e;maintenance", hostName, svcName, now-1, now+3600))
			j.waitField(ctx, "servicestatus", "scheduled_downtime_depth", "1")
		}, "crash"},
		{"dependency", "dependency", "auto-restart held back (dependency)", nil, "depfail"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			j := &judged{t: t, l: newLoop(t, rig.LoopOptions{Kind: engine.Icinga2})}
			ctx := scenarioCtx(t)
			j.healOnce(ctx)
			if tc.before != nil {
				tc.before(j, ctx)
			}
			mark := j.l.Mark()
			if err := j.l.Fault(ctx, tc.fault); err != nil {
				t.Fatal(err)
			}
			j.waitLog(ctx, mark, hardHandler, "a handler run at HARD CRITICAL")
			j.waitHeld(ctx, tc.rule)
			if _, err := j.l.Inst.WaitComment(ctx, hostName, svcName, tc.comment); err != nil {
				j.fail("%v", err)
			}
			time.Sleep(4 * time.Second)
			if c := restarts(t, j.l); c.Run != 1 {
				j.fail("audit log: %s; want still 1 run (held back by %s)", c, tc.rule)
			}
		})
	}
}

// Icinga 2: an acknowledgement given during the SOFT states reaches the
// handler as $service.acknowledgement$ and holds the HARD restart back.
func TestIcingaAcknowledged(t *testing.T) {
	t.Parallel()
	j := &judged{t: t, l: newLoop(t, rig.LoopOptions{Kind: engine.Icinga2})}
	ctx := scenarioCtx(t)
	j.healOnce(ctx)
	mark := j.l.Mark()
	if err := j.l.Fault(ctx, "crash"); err != nil {
		t.Fatal(err)
	}
	j.waitLog(ctx, mark, engine.EventHandler(hostName, svcName, "CRITICAL", "SOFT"), "SOFT CRITICAL")
	j.submit(fmt.Sprintf("ACKNOWLEDGE_SVC_PROBLEM;%s;%s;2;0;0;e2e;on it", hostName, svcName))
	j.waitLog(ctx, mark, hardHandler, "a handler run at HARD CRITICAL")
	recs := j.waitHeld(ctx, "ack")
	// Icinga ran the event command at SOFT CRITICAL (its log, above), the
	// sample's /bin/true there: handle_worker ran at HARD only.
	for _, r := range recs {
		if r.Type != "HARD" {
			j.fail("handle_worker ran at %s %s: the sample runs /bin/true at a SOFT problem", r.State, r.Type)
		}
	}
	time.Sleep(3 * time.Second)
	if c := restarts(t, j.l); c.Run != 1 {
		j.fail("audit log: %s; want still 1 run (acknowledged)", c)
	}
}
