package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/engine"
	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/proc"
)

// `service nagios4 reload` (SIGHUP) must not turn healing off. Nagios
// 4.4.6 expands $STATUSDATAFILE$ to nothing after a reload; the sample
// passes every macro so that an empty one stays one empty argument, and
// the handler reads status_file from nagios.cfg instead. After the
// reload a crash is healed (one HARD handler run, one restart, the
// success comment through $COMMANDFILE$), the handler's log shows the
// empty macro and the fallback (so the reload really emptied it), and the
// reevaluate service stays OK.
func TestReloadKeepsHealing(t *testing.T) {
	t.Parallel()
	l := newLoop(t, rig.LoopOptions{Kind: engine.Nagios4})
	ctx := scenarioCtx(t)
	if err := l.Inst.Reload(ctx); err != nil {
		fail(t, l, "reload: %v", err)
	}
	reloaded := l.Log()
	var at int64
	for _, e := range reloaded {
		if strings.Contains(e.Raw, "Caught SIGHUP, restarting") {
			at = e.Time.Unix()
		}
	}
	pid0 := l.WorkerPID()
	mark := len(reloaded)
	if err := l.Fault(ctx, "crash"); err != nil {
		t.Fatal(err)
	}
	h, err := l.WaitHealed(ctx, mark)
	if err != nil {
		fail(t, l, "not healed after a reload: %v", err)
	}
	if n := rig.Count(h.Entries[mark:], hardHandler); n != 1 {
		t.Errorf("handler ran %d times at HARD CRITICAL, want 1", n)
	}
	if c := restarts(t, l); c.Run != 1 {
		t.Errorf("the agent's audit log: %s; want exactly 1 run", c)
	}
	c, err := l.Inst.WaitComment(ctx, hostName, svcName, "auto-restart ok")
	if err != nil {
		fail(t, l, "%v", err)
	}
	if c.EntryTime.Unix() < at {
		t.Errorf("the success comment (%s) is older than the reload", c.EntryTime)
	}
	if pid1 := l.WorkerPID(); pid1 == pid0 || !proc.Alive(pid1) {
		t.Errorf("worker pid %d -> %d (alive %v): want a new, running process", pid0, pid1, proc.Alive(pid1))
	}
	b, err := os.ReadFile(l.HandlerLog)
	if err != nil {
		t.Fatal(err)
	}
	note := "--status-file is empty (Nagios expanded $STATUSDATAFILE$ to nothing): using status_file=" + l.Inst.StatusFile + " from " + l.Inst.MainConfig
	if !strings.Contains(string(b), note) {
		fail(t, l, "the handler's log lacks %q: did the reload empty $STATUSDATAFILE$?\n%s", note, b)
	}
	if strings.Contains(string(b), "command-file is empty") {
		t.Errorf("the reload emptied $COMMANDFILE$ too; the packaged commands rely on it:\n%s", b)
	}
	// reevaluate, a check run after the reload, is OK, not UNKNOWN.
	if _, err := l.Inst.WaitService(ctx, hostName, rig.ReevaluateService, func(s engine.Service) bool {
		return s.LastCheck.Unix() > at+1 && s.HasBeenChecked && s.State == nagios.OK && strings.HasPrefix(s.Output, "OK - ")
	}); err != nil {
		st, _ := l.Inst.Status()
		if st != nil {
			s, _ := st.Service(hostName, rig.ReevaluateService)
			t.Logf("reevaluate: %v %q", s.State, s.Output)
		}
		fail(t, l, "reevaluate after the reload: %v", err)
	}
	for _, e := range l.Log()[mark:] {
		if strings.Contains(e.Raw, "usage error") {
			t.Errorf("Nagios logged a usage error: %s", e.Raw)
		}
	}
}

// A heal that reached no agent is retried (issue 20): the listener is down
// at the HARD CRITICAL, so the handler fails ("unreachable", nothing
// sent) and keeps the fault for reevaluate; the listener comes back, and
// after the 30 s back-off reevaluate heals the same fault, once.
func TestUnreachableHealIsRetried(t *testing.T) {
	t.Parallel()
	l := newLoop(t, rig.LoopOptions{Kind: engine.Nagios4, NoListener: true})
	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
	defer cancel()
	pid0 := l.WorkerPID()
	mark := l.Mark()
	if err := l.Fault(ctx, "crash"); err != nil {
		t.Fatal(err)
	}
	c, err := l.Inst.WaitComment(ctx, hostName, svcName, "auto-restart failed")
	if err != nil {
		fail(t, l, "%v", err)
	}
	if !strings.Contains(c.Text, "unreachable") || !strings.Contains(c.Text, "asked again by reevaluate") {
		t.Errorf("comment %q does not say the agent was unreachable and the heal is retried", c.Text)
	}
	if err := l.StartListener(ctx); err != nil {
		fail(t, l, "the listener did not come back: %v", err)
	}
	if _, err := l.WaitHealed(ctx, mark); err != nil {
		fail(t, l, "not healed once the agent answered: %v", err)
	}
	if c := restarts(t, l); c.Run != 1 {
		t.Errorf("the agent's audit log: %s; want exactly 1 run", c)
	}
	recs, _ := rig.ReadHandlerLog(l.HandlerLog)
	var fault string
	for _, r := range recs {
		if r.Source == "event" && r.Result == "unreachable" {
			fault = r.Fault
		}
	}
	healed := false
	for _, r := range recs {
		healed = healed || (r.Source == "reevaluate" && r.Result == "healed" && r.Fault == fault && fault != "")
	}
	if !healed {
		fail(t, l, "no reevaluate heal of the unreachable fault %q in the handler's log", fault)
	}
	if pid1 := l.WorkerPID(); pid1 == pid0 || !proc.Alive(pid1) {
		t.Errorf("worker pid %d -> %d (alive %v): want a new, running process", pid0, pid1, proc.Alive(pid1))
	}
}
