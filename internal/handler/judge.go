package handler

import (
	"fmt"
	"strings"
	"time"

	"github.com/selfheal/selfheal/internal/breaker"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/nodestate"
	"github.com/selfheal/selfheal/internal/status"
)

// Facts are what the engine says about the service besides its state.
// Each is optional: a fact not given (or unreadable) holds nothing back,
// because healing is the default and these inputs may only prevent it.
type Facts struct {
	ServiceDowntime int // $SERVICEDOWNTIME$, $service.downtime_depth$; -1 not given
	HostDowntime    int // $HOSTDOWNTIME$, $host.downtime_depth$; -1 not given
	HostState       *nagios.HostState
	// Ack is $service.acknowledgement$ (0 none, 1 normal, 2 sticky); -1
	// not given. Nagios has no ack macro for handlers: Status has it.
	Ack int
	// Perfdata is $SERVICEPERFDATA$ / $service.perfdata$: check_worker's
	// critical counters say whether every critical finding is a
	// dependency's. Only numbers check_worker printed are read from it.
	Perfdata      string
	PerfdataGiven bool
	// Status is Nagios' status.dat, when --status-file was given and
	// readable; StatusErr why not.
	Status    *nagios.StatusData
	StatusErr error
}

// NoFacts is Facts with nothing given.
var NoFacts = Facts{ServiceDowntime: -1, HostDowntime: -1, Ack: -1}

// Judgment is the configuration of the rules.
type Judgment struct {
	Ignore map[nodestate.Rule]bool
	// Zone is the mass-failure rule, decided from the zone's failing
	// services as the engine shows them (zone.go).
	Zone breaker.ZoneConfig
	// EventCommand names the zone's services the rule ranks (those that
	// run this handler); "" is DefaultEventCommand.
	EventCommand string
	// StatusFile is Nagios' status.dat, read whole for the zone rule.
	StatusFile string
	// Breaker is the node's own count, used only when the zone's view
	// cannot be read.
	Breaker breaker.Config
}

// DefaultBreaker is the node's breaker: more than 10 services needing a
// restart within 5 minutes open it; 2 minutes without a new one let one
// trial restart through, and 2 more close it.
var DefaultBreaker = breaker.Config{Window: 5 * time.Minute, Threshold: 10, Quiet: 2 * time.Minute}

// Hold is a needed restart held back, and why.
type Hold struct {
	Rule    string
	Text    string    // the human sentence (comment and log)
	RetryAt time.Time // not asked again before (agent deferrals)
}

// judge applies the rules that need no state of this node's (pause and
// breaker are applied by the caller, around it), in order of precedence.
func judge(j Judgment, f Facts, host, service string) *Hold {
	on := func(r nodestate.Rule) bool { return !j.Ignore[r] }
	var st *nagios.ServiceStatus
	var hs *nagios.HostStatus
	if f.Status != nil {
		if s, ok := f.Status.Service(host, service); ok {
			st = &s
		}
		if h, ok := f.Status.Hosts[host]; ok {
			hs = &h
		}
	}
	if on(nodestate.RuleDowntime) {
		sd, hd := f.ServiceDowntime, f.HostDowntime
		if sd < 0 && st != nil {
			sd = st.DowntimeDepth
		}
		if hd < 0 && hs != nil {
			hd = hs.DowntimeDepth
		}
		switch {
		case sd > 0:
			return &Hold{Rule: string(nodestate.RuleDowntime), Text: "auto-restart held back (downtime): the service is in scheduled downtime; healed when it ends if still CRITICAL"}
		case hd > 0:
			return &Hold{Rule: string(nodestate.RuleDowntime), Text: "auto-restart held back (downtime): the host is in scheduled downtime; healed when it ends if still CRITICAL"}
		}
	}
	if on(nodestate.RuleAck) {
		acked := f.Ack > 0
		if f.Ack < 0 && st != nil {
			acked = st.Acknowledged
		}
		if acked {
			return &Hold{Rule: string(nodestate.RuleAck), Text: "auto-restart held back (acknowledged): a human has taken this problem; remove the acknowledgement to let it heal"}
		}
	}
	if on(nodestate.RuleHost) {
		var h *nagios.HostState
		switch {
		case f.HostState != nil:
			h = f.HostState
		case hs != nil && hs.Checked:
			h = &hs.State
		}
		if h != nil && *h != nagios.HostUp {
			return &Hold{Rule: string(nodestate.RuleHost), Text: fmt.Sprintf("auto-restart held back (host %s): the worker's host is %s, so the agent cannot be reached and a restart would not help; the fault's restart is kept for when the host is UP", *h, *h)}
		}
	}
	if on(nodestate.RuleDependency) {
		pd, given := f.Perfdata, f.PerfdataGiven
		if !given && st != nil {
			pd, given = st.Perfdata, true
		}
		if given && status.DependencyOnly(pd) {
			_, dep, _ := status.ScopeFromPerfdata(pd)
			return &Hold{Rule: string(nodestate.RuleDependency), Text: fmt.Sprintf("auto-restart held back (dependency): every critical finding (%d) is a dependency's, not the worker's own; a restart would not fix it", dep)}
		}
	}
	return nil
}

// breakerText is the comment of a service the node's breaker holds.
func breakerText(v breaker.Verdict, cfg breaker.Config) string {
	hosts := map[string]int{}
	for _, k := range v.Keys {
		h, _, _ := strings.Cut(k, "!")
		hosts[h]++
	}
	cause := "a cause they share"
	if top, n := topHost(hosts); n*2 > len(v.Keys) && len(v.Keys) > 0 {
		cause = fmt.Sprintf("host %s (%d of them) or a dependency it shares", top, n)
	} else if len(hosts) > 1 {
		cause = fmt.Sprintf("a dependency shared by %d hosts", len(hosts))
	}
	return fmt.Sprintf("auto-restart held back (mass failure): %d services needed a restart within %s on this monitoring node (more than %d): suspect %s; the breaker lets one trial restart through %s after the last new failure",
		v.Count, cfg.Window, cfg.Threshold, cause, cfg.Quiet)
}

func topHost(m map[string]int) (string, int) {
	best, n := "", 0
	for h, c := range m {
		if c > n || c == n && h < best {
			best, n = h, c
		}
	}
	return best, n
}
