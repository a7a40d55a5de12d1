package nodestate

import (
	"fmt"
	"slices"
	"strings"
)

// Rule is one reason to hold a needed restart back. Every rule is on by
// default; --ignore switches some off. docs/event-handler.md has the
// decision table, in this order of precedence.
type Rule string

// The rules, in order of precedence.
const (
	RulePause      Rule = "pause"      // handle_worker pause, for the node, the host or the service
	RuleDowntime   Rule = "downtime"   // the service or its host is in scheduled downtime
	RuleAck        Rule = "ack"        // the problem is acknowledged: a human has it
	RuleHost       Rule = "host"       // the host is DOWN or UNREACHABLE
	RuleDependency Rule = "dependency" // every critical finding is a dependency's
	RuleBreaker    Rule = "breaker"    // too many services of the zone are failing at once
)

// Rules lists the rules in order of precedence.
var Rules = []Rule{RulePause, RuleDowntime, RuleAck, RuleHost, RuleDependency, RuleBreaker}

// ParseRules reads --ignore's list.
func ParseRules(list []string) (map[Rule]bool, error) {
	out := map[Rule]bool{}
	for _, s := range list {
		r := Rule(strings.ToLower(strings.TrimSpace(s)))
		if !slices.Contains(Rules, r) {
			return nil, fmt.Errorf("--ignore %q: want one of %s", s, joinRules())
		}
		out[r] = true
	}
	return out, nil
}

func joinRules() string {
	var s []string
	for _, r := range Rules {
		s = append(s, string(r))
	}
	return strings.Join(s, ", ")
}
