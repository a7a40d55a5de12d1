package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/engine"
	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/testutil"
)

const (
	hostName = rig.HostName
	svcName  = rig.ServiceName
)

// newLoop starts one isolated loop (worker, listener, engine) for t, built
// from the real binaries and the sample definitions, and stops it when t
// ends. A missing engine skips locally and fails under CI=true.
func newLoop(t *testing.T, opts rig.LoopOptions) *rig.Loop {
	t.Helper()
	opts.Engine = testutil.LookTool(t, string(opts.Kind), "/usr/sbin/"+string(opts.Kind))
	opts.Dir = t.TempDir()
	opts.ConfigDir = filepath.Join(testutil.ModuleRoot(t), "nagios-config")
	opts.Bin = map[string]string{}
	for _, name := range rig.Binaries {
		opts.Bin[name] = testutil.Binary(t, name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	l, err := rig.StartLoop(ctx, opts)
	if err != nil {
		t.Fatalf("starting the loop under %s: %v", opts.Kind, err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("stopping the loop: %v", err)
		}
	})
	return l
}

// fail logs everything the loop recorded, then fails the test.
func fail(t *testing.T, l *rig.Loop, format string, args ...any) {
	t.Helper()
	t.Log(l.Report())
	t.Fatalf(format, args...)
}

// scenarioCtx is generous, because the machine is shared and slow; the
// scenarios assert order and outcome, never speed.
func scenarioCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func hardHandler(e engine.LogEntry) bool { return rig.HardHandler(e) }

// sampleDeadline is the samples' handle_worker --deadline.
const sampleDeadline = 18 * time.Second

// restarts tallies the restart requests in the loop's audit log.
func restarts(t *testing.T, l *rig.Loop) rig.AuditCounts {
	t.Helper()
	a, err := l.Audit()
	if err != nil {
		t.Fatal(err)
	}
	return rig.CountRestarts(a)
}
