package worker

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/check"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/status"
)

// TestDepFail: the database check is always there, scoped "dependency";
// depfail makes it critical, and check_worker's counters then say what
// handle_worker needs: CRITICAL, yet no fault of the worker's. fail (the
// worker's own store) is not, and clear and a restart both end depfail.
func TestDepFail(t *testing.T) {
	w := newWorker(Config{QueueCap: 10}.withDefaults(), time.Now, 1)
	if c := checkByName(t, w.Document(), "database"); c.Scope != "dependency" || c.Status != "ok" {
		t.Fatalf("healthy database check %+v", c)
	}
	w.inject(FaultDepFail)
	d := w.Document()
	if c := checkByName(t, d, "database"); c.Scope != "dependency" || c.Status != "critical" || !strings.Contains(c.Message, "depfail") {
		t.Fatalf("database check under depfail %+v", c)
	}
	if d.Status != "critical" {
		t.Fatalf("status under depfail %q", d.Status)
	}
	if err := d.Validate(); err != nil {
		t.Fatalf("the document breaks the contract: %v", err)
	}

	client := &http.Client{Timeout: 5 * time.Second}
	ctx := context.Background()
	probe := func(addr string) (nagios.State, string) {
		t.Helper()
		res := check.Run(ctx, check.Config{URL: "http://" + addr + "/status", Timeout: 5 * time.Second, TimeoutState: nagios.Critical}, check.Deps{})
		line1, _, _ := strings.Cut(res.Output, "\n")
		_, perf, _ := strings.Cut(line1, "|")
		return res.State, perf
	}
	addr, _, stop := startWorker(t, Config{JobsPerSec: 20})
	steps := []struct {
		f       Fault
		state   nagios.State
		depOnly bool
	}{
		{FaultDepFail, nagios.Critical, true},
		{FaultFail, nagios.Critical, false}, // the worker's own store as well
		{FaultClear, nagios.OK, false},
		{FaultDepFail, nagios.Critical, true},
	}
	for _, s := range steps {
		if _, err := SendFault(ctx, client, addr, s.f); err != nil {
			t.Fatal(err)
		}
		st, perf := probe(addr)
		if dep := status.DependencyOnly(perf); st != s.state || dep != s.depOnly {
			t.Fatalf("after %s: %v, dependency only %v (%q); want %v, %v", s.f, st, dep, perf, s.state, s.depOnly)
		}
	}
	// A restart is a new process: the fault is gone.
	stop()
	addr, _, _ = startWorker(t, Config{JobsPerSec: 20})
	if st, perf := probe(addr); st != nagios.OK || status.DependencyOnly(perf) {
		t.Fatalf("after a restart: %v %q", st, perf)
	}
}
