// Package handler is handle_worker's core. Run handles one Nagios or
// Icinga 2 state change in four steps, one file each, tied together in
// run.go: decide (policy.go: heal at HARD CRITICAL only), hold (hold.go,
// judge.go: a pause, the engine's facts or the node's breaker holds a
// needed restart back), act (act.go: the signed request to the worker
// host's agent, retried for the same fault; answer.go: the honest account
// of its answer), and report (feedback.go: the record in the state
// directory, kept by internal/nodestate, and the comments and forced
// re-check written back through Nagios' command file or Icinga 2's API,
// engine.go). Send is a request by hand, Reevaluate asks again for what
// was held back, Status shows the state directory, CheckFiles judges the
// files the handler trusts. args.go is handle_worker's command line (the
// grammar and its validation) and commands.go its subcommands, so that
// cmd/handle_worker is a thin shell. The agent is the authority: it runs
// at most one restart per fault and keeps the restart budget, so the
// handler keeps no budget of its own. docs/event-handler.md describes the
// behaviour. Run, Send and Reevaluate never exit, print or use globals;
// the subcommands write only to the writers they are given.
package handler

import (
	"context"
	"crypto/tls"
	"math/rand/v2"
	"net"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/protocol"
)

// Exit codes. 0-2 say whether healing happened; 3 is a usage error.
const (
	ExitOK       = 0 // healed (now or already, for this fault), or nothing to do
	ExitWithheld = 1 // healing needed but withheld: the agent's restart budget is spent
	ExitFailed   = 2 // healing attempted and failed or unconfirmed: unreachable, no reply, denied, skew, action failed
	ExitUsage    = 3
)

// Doer is the part of *protocol.Client the handler uses: Send, the
// extended form, which tells the agent when the fault began and brings
// back its note and the age of a recorded answer; Do, the short form, for
// an agent older than the extended form (see call).
type Doer interface {
	Send(ctx context.Context, c protocol.Call) (protocol.Reply, error)
	Do(ctx context.Context, verb protocol.Verb, service, fault string) (protocol.Reply, error)
}

// Deps are the handler's outside world, injected.
type Deps struct {
	Now   func() time.Time                                 // nil = time.Now
	Sleep func(ctx context.Context, d time.Duration) error // nil = a timer bounded by ctx
	Rand  func() float64                                   // [0, 1) for the backoff's jitter; nil = math/rand/v2
	Dial  func(protocol.ClientConfig) (Doer, error)        // nil = protocol.NewClient
	Log   zerolog.Logger
}

func (d *Deps) defaults() {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Sleep == nil {
		d.Sleep = sleepCtx
	}
	if d.Rand == nil {
		d.Rand = rand.Float64
	}
	if d.Dial == nil {
		d.Dial = func(c protocol.ClientConfig) (Doer, error) { return protocol.NewClient(c) }
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Conn says how to reach a worker_listener.
type Conn struct {
	Address string // host or IP (no port)
	Port    int
	// Agent is the agent's name: requests are signed for it alone, and a
	// reply from any other agent is refused.
	Agent  string
	Target string       // the service name on the listener
	Key    protocol.Key // the fleet key, or the agent's own host key
	TLS    *tls.Config
}

// Addr is host:port, bracketing IPv6 literals.
func (c Conn) Addr() string { return net.JoinHostPort(c.Address, strconv.Itoa(c.Port)) }

// Config is one `handle_worker event` invocation.
type Config struct {
	Event Event
	// Fault names the fault ("-": none): Nagios' $SERVICEPROBLEMID$,
	// Icinga 2's $service.last_state_change$. The agent runs one restart
	// per fault and answers every later request for it from its record.
	Fault string
	// FaultSince is when the fault began (Nagios' $LASTSERVICESTATECHANGE$,
	// Icinga 2's $service.last_state_change$); zero: not known. With it the
	// agent tells a new crash inside its min_gap from a duplicate.
	FaultSince  time.Time
	HostName    string // $HOSTNAME$: names the record and the command-file lines
	ServiceDesc string // $SERVICEDESC$
	Conn        Conn
	Action      protocol.Verb
	StateDir    string // the advisory records; "" keeps none
	// Trust is whose StateDir must be (the user the handler runs as, see
	// Store); the zero value is root's.
	Trust       fsutil.Trust
	SoftAttempt int
	Deadline    time.Duration
	CommandFile string // "" = no feedback to Nagios
	Recheck     time.Duration
	DryRun      bool
	// Facts are the engine's other macros (downtime, host state, ack,
	// perfdata, status.dat); Judgment says which rules apply.
	Facts    Facts
	Judgment Judgment
	// Source names the record's origin: "event" (default) or
	// sourceReevaluate.
	Source string
	// Engine reads the engine's view (when Facts has no status) and takes
	// the write-back; nil writes to CommandFile.
	Engine Engine
	// ZoneCache, when set, shares one read of the zone among runs.
	ZoneCache *ZoneCache
}

// Result is what happened; main prints Line and exits with Code.
type Result struct {
	Code     int
	Line     string
	Decision Decision
	Verdict  string          // the answer's kind (see Record.Result), or "held"; "" when nothing was asked
	Hold     *Hold           // why a needed restart was held back
	Reply    *protocol.Reply // the agent's final reply, if any
	Attempts int             // requests made (retries included)
	Commands []Command       // written (or, in dry-run, that would be written)
	Err      error           // the failure behind a non-zero code
	// AgentOld: the agent denied the extended request form and answered
	// the short one: it is older than the extended form.
	AgentOld bool
}
