package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/testutil"
)

// gapMinGap is the agent's min_gap here: long enough that the second
// crash below reaches HARD CRITICAL well inside it on a loaded machine
// (a crash, three 1 s checks), short enough for a test.
const gapMinGap = 20 * time.Second

// TestCrashWithinGapIsDeferredThenHealed (issue 17): under a real Nagios 4,
// with the sample definitions (which pass --fault-since), the agent's
// min_gap at 20 s and its back-off off:
//   - a crash is healed (the loop works);
//   - the same fault seen by another endpoint (a split brain: another
//     fault id, the same start), asked by the real handle_worker inside
//     the gap, gets that restart's answer: ok, nothing run;
//   - a second crash 3 s after the heal is a new fault inside the gap: the
//     handler comments an honest deferral (never "auto-restart ok") and
//     holds it, nothing runs, the service stays CRITICAL;
//   - the sample's reevaluate service heals it once the gap has passed.
func TestCrashWithinGapIsDeferredThenHealed(t *testing.T) {
	t.Parallel()
	j := newJudged(t, rig.LoopOptions{MinGap: gapMinGap.String(), MaxGap: gapMinGap.String()})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	j.healOnce(ctx)

	// The healed fault's id and start, as the handler logged them.
	var fault, since string
	recs, _ := rig.ReadHandlerLog(j.l.HandlerLog)
	for _, r := range recs {
		if r.Result == "healed" {
			var m map[string]any
			if json.Unmarshal([]byte(r.Raw), &m) == nil {
				fault, _ = m["fault"].(string)
				since, _ = m["fault_since"].(string)
			}
		}
	}
	began, err := time.Parse(time.RFC3339, since)
	if fault == "" || err != nil {
		j.fail("the heal's log line has no fault or fault_since (%q, %q): %v", fault, since, err)
	}
	audit, err := j.l.Audit()
	if err != nil {
		t.Fatal(err)
	}
	var healed time.Time
	for _, a := range audit {
		if a.Ran() {
			healed = a.Time
		}
	}

	// The other endpoint of a split brain: its own state, its own fault id
	// for the same fault, the same start.
	out, code := handleEvent(ctx, t, j.l, "--fault", fault+"0", "--fault-since="+strconv.FormatInt(began.Unix(), 10))
	if code != 0 || !strings.Contains(out, "the same fault under another id") || !strings.Contains(out, "not run again") {
		j.fail("split brain's second id: exit %d\n%s", code, out)
	}
	if c := restarts(t, j.l); c.Run != 1 {
		j.fail("audit log: %s; want 1 run after the split brain's second request", c)
	}

	// A new crash 3 s after the restart ended (the engine saw the heal in
	// between): a new fault, inside the gap.
	for time.Since(healed) < 3*time.Second && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	j.crashHeld(ctx, "backoff", "auto-healing deferred (backoff)")
	c, err := j.l.Inst.WaitComment(ctx, hostName, svcName, "auto-healing deferred (backoff)")
	if err != nil || !strings.Contains(c.Text, "a new fault") || !strings.Contains(c.Text, "asked again when the agent allows it") {
		j.fail("deferral comment %q: %v", c.Text, err)
	}
	recs, _ = rig.ReadHandlerLog(j.l.HandlerLog)
	for _, r := range recs {
		if r.Source == "event" && r.Fault != fault && r.Fault != "0" && r.State == "CRITICAL" && r.Type == "HARD" {
			if r.Exit != 1 || r.Result != "backoff" || strings.Contains(r.Message, "not run again") {
				j.fail("the new fault's handler run: %s", r.Raw)
			}
		}
	}
	if time.Since(healed) >= gapMinGap {
		j.fail("the deferral was checked %s after the heal, past min_gap %s: the test proves nothing", time.Since(healed), gapMinGap)
	}
	j.healedByReevaluate(ctx)
	if a, _ := j.l.Audit(); len(a) > 0 {
		last := a[len(a)-1]
		for _, x := range a {
			if x.Ran() {
				last = x
			}
		}
		if gap := last.Time.Sub(healed); gap < gapMinGap-time.Second {
			j.fail("the new fault's restart ran %s after the first, inside min_gap %s", gap, gapMinGap)
		}
	}
}

// handleEvent runs the real handle_worker as another monitoring endpoint
// would (its own state directory and log) for the loop's service at HARD
// CRITICAL, and returns its output and exit code.
func handleEvent(ctx context.Context, t *testing.T, l *rig.Loop, extra ...string) (string, int) {
	t.Helper()
	dir := t.TempDir()
	args := append([]string{"event", "--key-file", l.Keys.FleetFile, "--agent", l.Agent, "--target", rig.Target,
		"--port", strconv.Itoa(l.ListenerPort), "--state-dir", dir, "--log-file", filepath.Join(dir, "handler.log"), "--deadline", "10s"},
		extra...)
	args = append(args, "CRITICAL", "HARD", "3", "127.0.0.1", hostName, svcName)
	out, err := exec.CommandContext(ctx, testutil.Binary(t, "handle_worker"), args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("handle_worker: %v\n%s", err, out)
	return "", -1
}
