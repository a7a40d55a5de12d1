package listener

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/protocol"
)

// TestWithinGapDuplicateOrNew: inside min_gap, a fault that began before
// the last restart finished is that restart's (recorded, not counted); one
// that began after it, or whose start the request does not give, waits for
// the gap (backoff) and is never told ok. The request carries the fault's
// age on the client's clock, so an offset between the clocks changes
// nothing: each case runs with the client's clock off by up to 3h.
func TestWithinGapDuplicateOrNew(t *testing.T) {
	b := Budget{Max: 5, Window: time.Hour, MinGap: 2 * time.Minute}
	t0 := time.Unix(1_764_024_000, 0) // the restart began, on the agent's clock
	end := t0.Add(4 * time.Second)    // and ended
	arrive := end.Add(40 * time.Second)
	fleet, err := protocol.GenerateFleetKey("fleet1")
	if err != nil {
		t.Fatal(err)
	}
	k, err := fleet.ForAgent("worker1")
	if err != nil {
		t.Fatal(err)
	}
	for _, offset := range []time.Duration{0, 1500 * time.Millisecond, -time.Hour, 3 * time.Hour} {
		for _, tc := range []struct {
			name  string
			began time.Duration // after the restart began, on the agent's clock; 1 ns: not given
			dup   bool
		}{
			{"split brain, same start", -2 * time.Second, true},
			{"split brain, half a second later", -1500 * time.Millisecond, true},
			{"began while it ran", 2 * time.Second, true},
			{"began just as it ended", 4500 * time.Millisecond, true},
			{"crash 30s after it ended", 34 * time.Second, false},
			{"crash 2s after it ended", 6 * time.Second, false},
			{"start not given", 1, false},
		} {
			t.Run(fmt.Sprintf("%s/offset %s", tc.name, offset), func(t *testing.T) {
				s := newState()
				j := restartJob("a", t0, b)
				s.begin(j, t0)
				s.finish(j, t0, end, Result{Outcome: protocol.OutcomeOK, Output: "did a"})
				// The client's clock reads agent time + offset; the request
				// was made 300 ms before it arrived.
				c := protocol.Call{Verb: protocol.VerbRestart, Service: "demo", Fault: "b"}
				if tc.began != 1 {
					c.Since = t0.Add(tc.began + offset)
				}
				req := protocol.NewExtendedRequest(k, c, arrive.Add(offset-300*time.Millisecond), "00112233445566778899aabbccddeeff")
				parsed, err := protocol.ParseRequest(bytes.TrimSuffix(req.Marshal(), []byte{'\n'}))
				if err != nil || !parsed.Verify(k) {
					t.Fatalf("request: %v", err)
				}
				jb := restartJob("b", arrive, b)
				jb.Since = FaultStart(parsed.FaultAge, arrive)
				r, run := s.decide(jb, arrive)
				if run {
					t.Fatal("ran inside min_gap")
				}
				if tc.dup {
					if r.Outcome != protocol.OutcomeOK || r.Origin != protocol.OriginRecorded || r.Output != "did a" || r.Budget.Used != 1 ||
						r.Age != 44*time.Second || !strings.Contains(r.Detail, "the same fault under another id") {
						t.Fatalf("duplicate: %+v", r)
					}
					if f := s.fault("b"); f == nil || f.Outcome != protocol.OutcomeOK || !s.noted {
						t.Fatalf("the duplicate's id not recorded: %+v", s.Faults)
					}
					return
				}
				if r.Outcome != protocol.OutcomeBackoff || r.Origin != protocol.OriginNone || r.ExitCode != -1 ||
					r.Budget.RetryAfter != 2*time.Minute-44*time.Second || r.Budget.Used != 1 || s.fault("b") != nil {
					t.Fatalf("new fault: %+v", r)
				}
				want := "a new fault"
				if tc.began == 1 {
					want = "the request does not say when fault b began"
				}
				if !strings.Contains(r.Detail, want) || r.Output != r.Detail {
					t.Fatalf("new fault's words: %q, want %q", r.Detail, want)
				}
				// After the gap the same request runs.
				after := t0.Add(b.MinGap)
				jb.Arrived = after
				if _, run := s.decide(jb, after); !run {
					t.Fatal("not run after the gap")
				}
			})
		}
	}
}

// TestFaultStart: the age before the arrival; -1 is not given.
func TestFaultStart(t *testing.T) {
	arr := time.Unix(1_000_000, 0)
	if got := FaultStart(-1, arr); !got.IsZero() {
		t.Errorf("not given: %v", got)
	}
	if got := FaultStart(0, arr); !got.Equal(arr) {
		t.Errorf("age 0: %v", got)
	}
	if got := FaultStart(61_500, arr); !got.Equal(arr.Add(-61500 * time.Millisecond)) {
		t.Errorf("61.5 s: %v", got)
	}
}

// TestFaultRecordAuthorityEnds: a record answers its fault's retries and
// says how old it is; one older than a day, or older than the fault it
// is asked about, is a reused id: the fault is new, and its restart runs
// and replaces the record.
func TestFaultRecordAuthorityEnds(t *testing.T) {
	b := Budget{Max: 5, Window: time.Hour}
	t0 := time.Unix(1_764_024_000, 0)
	s := newState()
	ran(s, "4711", t0, time.Second, b)
	at := t0.Add(3 * time.Minute)
	r, run := s.decide(restartJob("4711", at, b), at)
	if run || r.Origin != protocol.OriginRecorded || r.Age != 3*time.Minute || !strings.Contains(r.Detail, "restarted 3m ago") {
		t.Fatalf("a retry: %+v %v", r, run)
	}
	// The same id, a fault that began an hour after that restart.
	j := restartJob("4711", t0.Add(2*time.Hour), b)
	j.Since = t0.Add(time.Hour)
	if r, run := s.decide(j, j.Arrived); !run || !strings.Contains(r.Detail, "a new fault that reuses its id") {
		t.Fatalf("a reused id: %+v %v", r, run)
	}
	// Three days later, start not given.
	late := t0.Add(72 * time.Hour)
	r, run = s.decide(restartJob("4711", late, b), late)
	if !run || !strings.Contains(r.Detail, "is 72h old (more than 24h)") {
		t.Fatalf("3 days later: %+v %v", r, run)
	}
	ran(s, "4711", late, time.Second, b)
	if n := len(s.Faults); n != 1 || !s.Faults[0].At.Equal(late) {
		t.Fatalf("records %+v, want the new one in place of the old", s.Faults)
	}
	if r, run := s.decide(restartJob("4711", late.Add(time.Minute), b), late.Add(time.Minute)); run || r.Age != time.Minute {
		t.Fatalf("retry of the new one: %+v %v", r, run)
	}
}

// TestQuery: the query verb, over real TCP, answers what a restart would
// get now (run, recorded, the gap, the back-off, the budget, the breaker)
// and changes nothing: the journal and the breaker's file keep their
// bytes, nothing runs, no budget is spent. Its nonce is recorded like any
// request's.
func TestQuery(t *testing.T) {
	h := newHarness(t, opts{budget: &rig.Budget{Max: 2, Window: "1h", MinGap: "2m"}, extra: "breaker:\n  fraction: 0.2\n  min_count: 1\n"})
	_, now, advance := fakeClockServer(t, h)
	c := clockClient(t, h, now)
	ask := func(verb protocol.Verb, svc, fault string, since time.Time) protocol.Reply {
		t.Helper()
		rep, err := c.Send(context.Background(), protocol.Call{Verb: verb, Service: svc, Fault: fault, Since: since})
		if err != nil {
			t.Fatalf("%s %s %s: %v", verb, svc, fault, err)
		}
		return rep
	}
	journal := filepath.Join(h.dir, "state", "services", "demo.json")
	q := ask(protocol.VerbQuery, "demo", "f1", now().Add(-time.Second))
	if q.Outcome != protocol.OutcomeOK || q.Origin != protocol.OriginNone || q.ExitCode != -1 || q.Budget.Used != 0 ||
		!strings.Contains(q.Note, "a restart would run now (restart 1 of 2 in 1h)") || h.marks("demo") != 0 {
		t.Fatalf("fresh: %+v", q)
	}
	if _, err := os.Stat(journal); err == nil {
		t.Fatal("a query created the journal")
	}
	began := now().Add(-time.Second)
	if rep := ask(protocol.VerbRestart, "demo", "f1", began); rep.Origin != protocol.OriginRun || h.marks("demo") != 1 {
		t.Fatalf("restart: %+v", rep)
	}
	before, _ := os.ReadFile(journal)
	advance(30 * time.Second)
	for _, tc := range []struct {
		fault   string
		since   time.Time
		outcome protocol.Outcome
		origin  protocol.Origin
		note    string
	}{
		{"f1", began, protocol.OutcomeOK, protocol.OriginRecorded, "fault f1 was restarted 30s ago"},
		{"f2", began, protocol.OutcomeOK, protocol.OriginRecorded, "the same fault under another id"},
		{"f3", now().Add(-5 * time.Second), protocol.OutcomeBackoff, protocol.OriginNone, "a new fault"},
	} {
		q := ask(protocol.VerbQuery, "demo", tc.fault, tc.since)
		if q.Outcome != tc.outcome || q.Origin != tc.origin || !strings.Contains(q.Note, tc.note) {
			t.Fatalf("query %s: %+v, want %s/%s %q", tc.fault, q, tc.outcome, tc.origin, tc.note)
		}
	}
	if after, _ := os.ReadFile(journal); !bytes.Equal(before, after) {
		t.Fatalf("a query changed the journal:\n%s\n%s", before, after)
	}
	// A query's f2 was not recorded: after the gap it would run.
	advance(2 * time.Minute)
	if q := ask(protocol.VerbQuery, "demo", "f2", began); q.Outcome != protocol.OutcomeOK || q.Origin != protocol.OriginNone {
		t.Fatalf("f2 after the gap: %+v", q)
	}
	if rep := ask(protocol.VerbRestart, "demo", "f4", time.Time{}); rep.Origin != protocol.OriginRun || h.marks("demo") != 2 {
		t.Fatalf("second restart: %+v", rep)
	}
	advance(3 * time.Minute)
	if q := ask(protocol.VerbQuery, "demo", "f5", time.Time{}); q.Outcome != protocol.OutcomeSpent || q.Budget.Used != 2 {
		t.Fatalf("spent: %+v", q)
	}
	// The breaker: 3 of the 11 services needing a restart within 5m opens
	// it (threshold 2); a query asks it, and counts nothing.
	advance(6 * time.Minute)
	for _, svc := range []string{"svc0", "svc1"} {
		if rep := ask(protocol.VerbRestart, svc, "b1", time.Time{}); rep.Origin != protocol.OriginRun {
			t.Fatalf("%s: %+v", svc, rep)
		}
	}
	bfile := filepath.Join(h.dir, "state", "breaker.json")
	bbefore, _ := os.ReadFile(bfile)
	for _, svc := range []string{"svc2", "svc2", "svc3"} {
		if q := ask(protocol.VerbQuery, svc, "b1", time.Time{}); q.Outcome != protocol.OutcomeBreaker || h.marks(svc) != 0 {
			t.Fatalf("breaker, %s: %+v", svc, q)
		}
	}
	if bafter, _ := os.ReadFile(bfile); !bytes.Equal(bbefore, bafter) {
		t.Fatalf("a query changed the breaker:\n%s\n%s", bbefore, bafter)
	}
	// A replayed query: denied (its nonce was recorded).
	frame := protocol.NewExtendedRequest(h.key, protocol.Call{Verb: protocol.VerbQuery, Service: "demo", Fault: "f9"}, now(), "00112233445566778899aabbccddeeff").Marshal()
	if got := h.raw(frame); !strings.HasPrefix(got, "SH2 worker1 breaker ") {
		t.Fatalf("query frame: %q", got)
	}
	if got := h.raw(frame); !strings.Contains(got, "denied") {
		t.Fatalf("replayed query: %q", got)
	}
	waitAudit(t, h, 0, "replayed nonce")
}
