package handler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/protocol"
)

// TestBackoff: 100 ms doubling to a 2 s cap, ±50 % jitter, never over 2 s.
func TestBackoff(t *testing.T) {
	tests := []struct {
		name string
		r    float64
		want []time.Duration
	}{
		{"middle", 0.5, []time.Duration{100, 200, 400, 800, 1600, 2000, 2000}},
		{"low", 0, []time.Duration{50, 100, 200, 400, 800, 1000, 1000}},
		{"high", 0.999, []time.Duration{149, 299, 599, 1199, 2000, 2000, 2000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackoff(func() float64 { return tt.r })
			for i, w := range tt.want {
				got := b.next().Truncate(time.Millisecond)
				if got != w*time.Millisecond {
					t.Fatalf("pause %d = %s, want %s", i, got, w*time.Millisecond)
				}
			}
		})
	}
}

// fakeDoer answers from a script and records what it was asked, and in
// which form ("ext" for Send, "short" for Do).
type fakeDoer struct {
	script []func() (protocol.Reply, error)
	faults []string
	forms  []string
}

func (f *fakeDoer) Send(_ context.Context, c protocol.Call) (protocol.Reply, error) {
	return f.next("ext", c.Fault)
}

func (f *fakeDoer) Do(_ context.Context, _ protocol.Verb, _, fault string) (protocol.Reply, error) {
	return f.next("short", fault)
}

func (f *fakeDoer) next(form, fault string) (protocol.Reply, error) {
	f.faults, f.forms = append(f.faults, fault), append(f.forms, form)
	n := len(f.faults) - 1
	if n >= len(f.script) {
		return protocol.Reply{}, fmt.Errorf("%w: script ended", protocol.ErrNotSent)
	}
	return f.script[n]()
}

// reply is a signed reply from agent worker1.
func reply(o protocol.Outcome, origin protocol.Origin) func() (protocol.Reply, error) {
	return func() (protocol.Reply, error) {
		return protocol.Reply{Agent: "worker1", Outcome: o, Origin: origin}, nil
	}
}

// unsigned is the agent's unsigned refusal.
func unsigned(o protocol.Outcome) func() (protocol.Reply, error) {
	return func() (protocol.Reply, error) {
		return protocol.Reply{Outcome: o, Origin: protocol.OriginNone, ExitCode: -1}, nil
	}
}

func fail(err error) func() (protocol.Reply, error) {
	return func() (protocol.Reply, error) { return protocol.Reply{}, fmt.Errorf("%w: boom", err) }
}

func testDeps(pauses *[]time.Duration) Deps {
	d := Deps{Rand: func() float64 { return 0.5 }, Sleep: func(_ context.Context, p time.Duration) error {
		*pauses = append(*pauses, p)
		return nil
	}}
	d.defaults()
	return d
}

// TestCallRetries: transport failures and the refusals sent before
// anything ran are retried with the same fault; any other answer ends it.
func TestCallRetries(t *testing.T) {
	f := &fakeDoer{script: []func() (protocol.Reply, error){
		fail(protocol.ErrNotSent), fail(protocol.ErrNoReply),
		unsigned(protocol.OutcomeBusy), unsigned(protocol.OutcomeRateLimited),
		reply(protocol.OutcomeOK, protocol.OriginRecorded),
	}}
	var pauses []time.Duration
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	x := call(ctx, f, protocol.Call{Verb: protocol.VerbRestart, Service: "demo", Fault: "42"}, testDeps(&pauses))
	if !x.final || x.rep.Origin != protocol.OriginRecorded || x.attempts != 5 || !x.sent || x.short || x.old {
		t.Fatalf("exchange %+v", x)
	}
	for i, fault := range f.faults {
		if fault != "42" {
			t.Fatalf("try %d sent fault %q", i, fault)
		}
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}
	if fmt.Sprint(pauses) != fmt.Sprint(want) {
		t.Fatalf("pauses %v, want %v", pauses, want)
	}
	a := answer{exchange: x, verb: protocol.VerbRestart, fault: "42"}
	if a.kind = a.classify(); a.kind != kindAlready || a.code() != ExitOK {
		t.Fatalf("kind %s code %d", a.kind, a.code())
	}
}

// TestCallShortForm: an unsigned denied to the extended form is asked
// again once, at once (no pause), in the short form, with the same fault;
// the tries after it stay short. Only a signed answer to the short form
// says the agent is old; denied in both forms is denied.
func TestCallShortForm(t *testing.T) {
	q := protocol.Call{Verb: protocol.VerbRestart, Service: "demo", Fault: "42", Since: time.Unix(1_764_024_000, 0)}
	for _, tc := range []struct {
		name   string
		script []func() (protocol.Reply, error)
		forms  string
		old    bool
		kind   string
		pauses int
	}{
		{"old agent", []func() (protocol.Reply, error){unsigned(protocol.OutcomeDenied), reply(protocol.OutcomeOK, protocol.OriginRun)},
			"[ext short]", true, kindHealed, 0},
		{"old agent, busy first", []func() (protocol.Reply, error){unsigned(protocol.OutcomeDenied), unsigned(protocol.OutcomeBusy),
			reply(protocol.OutcomeBackoff, protocol.OriginNone)}, "[ext short short]", true, "backoff", 1},
		{"denied in both forms", []func() (protocol.Reply, error){unsigned(protocol.OutcomeDenied), unsigned(protocol.OutcomeDenied)},
			"[ext short]", false, "denied", 0},
		{"signed denied is final", []func() (protocol.Reply, error){reply(protocol.OutcomeDenied, protocol.OriginNone)},
			"[ext]", false, "denied", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeDoer{script: tc.script}
			var pauses []time.Duration
			x := call(context.Background(), f, q, testDeps(&pauses))
			a := answer{exchange: x, verb: protocol.VerbRestart, fault: "42", conn: Conn{Address: "127.0.0.1", Port: 5690, Target: "demo"}}
			a.kind = a.classify()
			if fmt.Sprint(f.forms) != tc.forms || x.old != tc.old || a.kind != tc.kind || len(pauses) != tc.pauses || x.attempts != len(tc.script) {
				t.Fatalf("forms %v, old %v, kind %s, pauses %v, attempts %d", f.forms, x.old, a.kind, pauses, x.attempts)
			}
			for i, fault := range f.faults {
				if fault != "42" {
					t.Fatalf("try %d sent fault %q", i, fault)
				}
			}
			if old := strings.Contains(a.summary(), "the agent is older than the extended request form"); old != tc.old {
				t.Fatalf("summary %q", a.summary())
			}
		})
	}
}

// TestCallFinal: these answers are never retried.
func TestCallFinal(t *testing.T) {
	for _, o := range []protocol.Outcome{protocol.OutcomeOK, protocol.OutcomeFailed, protocol.OutcomeTimeout,
		protocol.OutcomeDenied, protocol.OutcomeSkew, protocol.OutcomeSpent} {
		f := &fakeDoer{script: []func() (protocol.Reply, error){reply(o, protocol.OriginNone)}}
		var pauses []time.Duration
		x := call(context.Background(), f, protocol.Call{Verb: protocol.VerbRestart, Service: "demo", Fault: "1"}, testDeps(&pauses))
		if !x.final || x.attempts != 1 || len(pauses) != 0 {
			t.Errorf("%s: %+v after %v", o, x, pauses)
		}
	}
	// An error that is not a transport failure: the request was never
	// valid, so trying again cannot help.
	f := &fakeDoer{script: []func() (protocol.Reply, error){func() (protocol.Reply, error) {
		return protocol.Reply{}, errors.New("invalid service name")
	}}}
	var pauses []time.Duration
	x := call(context.Background(), f, protocol.Call{Verb: protocol.VerbRestart, Service: "demo", Fault: "1"}, testDeps(&pauses))
	a := answer{exchange: x}
	if a.kind = a.classify(); x.attempts != 1 || a.kind != kindError || a.code() != ExitFailed {
		t.Fatalf("%+v kind %s", x, a.kind)
	}
}

// TestCallDeadline: the loop stops when the pause no longer fits, and it
// says honestly what it knows.
func TestCallDeadline(t *testing.T) {
	tests := []struct {
		name   string
		script []func() (protocol.Reply, error)
		kind   string
		says   string
	}{
		{"never sent", []func() (protocol.Reply, error){fail(protocol.ErrNotSent)}, kindUnreachable, "listener 127.0.0.1:5690 unreachable (9 attempt(s), last: request not sent: boom)"},
		{"no reply last", []func() (protocol.Reply, error){fail(protocol.ErrNotSent), fail(protocol.ErrNoReply)}, kindNoReply,
			"request sent, no reply within the deadline: the restart may have run; check the agent's audit log for fault 5"},
		// Sent once, then unreachable: it may still have run.
		{"no reply earlier", []func() (protocol.Reply, error){fail(protocol.ErrNoReply), fail(protocol.ErrNotSent)}, kindNoReply, "the restart may have run"},
		{"busy", []func() (protocol.Reply, error){unsigned(protocol.OutcomeBusy)}, "busy", "busy on every try"},
		{"sent then busy", []func() (protocol.Reply, error){fail(protocol.ErrNoReply), unsigned(protocol.OutcomeBusy)}, "busy",
			"an earlier request was sent without a reply: the restart may have run"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The last entry repeats: the script runs until the deadline.
			var script []func() (protocol.Reply, error)
			for i := 0; i < 9; i++ {
				script = append(script, tt.script[min(i, len(tt.script)-1)])
			}
			f := &fakeDoer{script: script}
			// The sleep fails on the 9th pause, as a context ending would.
			var pauses []time.Duration
			deps := testDeps(&pauses)
			deps.Sleep = func(_ context.Context, p time.Duration) error {
				pauses = append(pauses, p)
				if len(pauses) == 9 {
					return context.DeadlineExceeded
				}
				return nil
			}
			x := call(context.Background(), f, protocol.Call{Verb: protocol.VerbRestart, Service: "demo", Fault: "5"}, deps)
			a := answer{exchange: x, verb: protocol.VerbRestart, fault: "5", conn: Conn{Address: "127.0.0.1", Port: 5690, Target: "demo"}}
			a.kind = a.classify()
			if x.attempts != 9 || a.kind != tt.kind || a.code() != ExitFailed || !strings.Contains(a.summary(), tt.says) {
				t.Fatalf("%d attempts, kind %s: %q", x.attempts, a.kind, a.summary())
			}
		})
	}
	// A deadline closer than one more try: no pause is taken.
	f := &fakeDoer{script: []func() (protocol.Reply, error){fail(protocol.ErrNotSent), fail(protocol.ErrNotSent)}}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	var pauses []time.Duration
	if x := call(ctx, f, protocol.Call{Verb: protocol.VerbRestart, Service: "demo", Fault: "5"}, testDeps(&pauses)); x.attempts != 1 || len(pauses) != 0 {
		t.Fatalf("%d attempts, pauses %v", x.attempts, pauses)
	}
}
