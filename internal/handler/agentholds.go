package handler

import (
	"context"
	"net"
	"strconv"
	"time"

	"github.com/selfheal/selfheal/internal/breaker"
	"github.com/selfheal/selfheal/internal/nodestate"
)

// agentHolds are the agents whose own breaker holds their host, for one
// reevaluate run, as this node's zone rule keeps them between runs
// (breaker.AgentHold: the trial's record no longer shows its agent held).
//
// An agent's breaker opens, lets one trial through once no new failure
// came for its quiet time, and closes a quiet time after the trial if no
// new failure came. To it a service it was never asked for is a new
// failure: asking on for its host's other services keeps it open (the
// scale lab's hosts stood still 7 minutes while the walk was refused by
// the hundred). So the walk asks such an agent only for the service it
// held (the trial), and for no other before a quiet time after the
// trial. The quiet time is the retry-after it gave when it first held.
type agentHolds struct {
	ctx   context.Context
	store nodestate.Store
	zone  breaker.ZoneConfig
	now   func() time.Time
	m     map[string]breaker.AgentHold
}

// maxAgentQuiet bounds the quiet time read from an agent's deferral.
const maxAgentQuiet = 10 * time.Minute

func loadAgentHolds(ctx context.Context, cfg ReevalConfig, deps Deps, store nodestate.Store) *agentHolds {
	a := &agentHolds{ctx: ctx, store: store, zone: cfg.Judgment.zone(), now: deps.Now, m: map[string]breaker.AgentHold{}}
	if d, err := store.Open(); err == nil {
		if s, err := (breaker.ZoneStore{Dir: d, Name: nodestate.ZoneFile}).Current(); err == nil {
			a.m = s.AgentsHeld(deps.Now())
		}
		d.Close()
	}
	return a
}

// agentName names the agent a hold asks (its name, address and port).
func agentName(a nodestate.Ask) string {
	return a.Agent + "@" + net.JoinHostPort(a.Address, strconv.Itoa(a.Port))
}

func holdKey(r nodestate.Record) string { return r.Host + "!" + r.Service }

// deferred: the agent's breaker holds r: asking for r again at its
// RetryAt is the trial. Returns the agent's name ("" when r is no such
// hold).
func (a *agentHolds) deferred(r *nodestate.Record) string {
	if r == nil || r.Held == nil || r.Held.Rule != ruleAgentBreaker {
		return ""
	}
	name := agentName(r.Held.Ask)
	h := a.m[name]
	if h.Agent == "" {
		// The first hold of this opening: asked when it opened, its
		// retry-after is the quiet time (a later one's is shorter).
		h = breaker.AgentHold{Agent: name, Quiet: min(max(r.Held.RetryAt.Sub(r.Held.Since), 0), maxAgentQuiet)}
	}
	h.Trial = holdKey(*r)
	h.Until = breaker.Later(h.Until, r.Held.RetryAt.Add(h.Quiet))
	a.m[name] = h
	return name
}

// ran: the agent was asked for key and acted: when key was its trial,
// its breaker may close a quiet time from now. Returns the agent's name
// when it was.
func (a *agentHolds) ran(ask nodestate.Ask, key string) string {
	name := agentName(ask)
	h, ok := a.m[name]
	if !ok || h.Trial != key {
		return ""
	}
	h.Trial, h.Until = "", breaker.Later(h.Until, a.now().Add(h.Quiet))
	a.m[name] = h
	return name
}

// skip: not asked now, its agent's breaker holding its host.
func (a *agentHolds) skip(r nodestate.Record) bool {
	h, ok := a.m[agentName(r.Held.Ask)]
	return ok && a.now().Before(h.Until) && h.Trial != holdKey(r)
}

// keep stores name's hold, and drops keys (its host's other holds, not
// asked now) from the zone rule's ranking. Not stored, the next run asks
// that agent sooner: a cost, not a harm (its breaker decides).
func (a *agentHolds) keep(name string, keys []string) {
	d, err := a.store.Open()
	if err != nil {
		return
	}
	defer d.Close()
	_ = breaker.ZoneStore{Dir: d, Name: nodestate.ZoneFile, Config: a.zone}.HoldAgent(a.ctx, a.now(), a.m[name], keys...)
}
