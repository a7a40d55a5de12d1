package handler

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/selfheal/selfheal/internal/protocol"
)

// IssueHostKey derives agent's host key from the fleet key. A host key
// never derives anything: it is refused, so that a copy of one host's key
// cannot be mistaken for the fleet key and issued further.
func IssueHostKey(fleet protocol.Key, agent string) (protocol.Key, error) {
	if fleet.Kind != protocol.FleetKey {
		return protocol.Key{}, fmt.Errorf("this is a %s (fleet %s, agent %s), not a fleet key: only the fleet key on the monitoring nodes issues host keys",
			fleet.Kind, fleet.ID, fleet.Agent)
	}
	return fleet.ForAgent(agent)
}

// AgentName is the agent a request is meant for: explicit when set, else
// def (the Nagios host name) lower-cased. It must be a valid agent name.
func AgentName(explicit, def, from string) (string, error) {
	if explicit != "" {
		if !protocol.ValidName(explicit) {
			return "", fmt.Errorf("--agent %q: use 1-64 of a-z 0-9 . _ - starting with a letter or digit", explicit)
		}
		return explicit, nil
	}
	a := strings.ToLower(strings.TrimSpace(def))
	if !protocol.ValidName(a) {
		return "", fmt.Errorf("%s %q lower-cased is not an agent name (1-64 of a-z 0-9 . _ - starting with a letter or digit): pass --agent", from, def)
	}
	return a, nil
}

// FaultID validates the --fault argument. "" and "0" mean none: Nagios'
// $SERVICEPROBLEMID$ is 0 while a service is OK, and an empty macro is no
// id; sending either as an id would make every later fault "the same".
func FaultID(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return "-", nil
	}
	if !protocol.ValidFault(s) {
		return "", fmt.Errorf("--fault %q: want - or 1-64 of a-z 0-9 . _ : - starting with a letter or digit (Nagios: $SERVICEPROBLEMID$, Icinga 2: $service.last_state_change$)", s)
	}
	return s, nil
}

// FaultSince reads the --fault-since argument: when the fault began, in
// Unix seconds (Nagios' $LASTSERVICESTATECHANGE$, an integer; Icinga 2's
// $service.last_state_change$, with a fraction). Empty, 0, negative or
// anything else it cannot read is "not given" (the zero time), never an
// error: an engine that expands the macro to nothing, or an old command
// line, must not stop healing. The agent then cannot tell a new fault
// from a duplicate inside its min_gap, and defers it.
func FaultSince(s string) time.Time {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || !(f >= 1) || f > 1<<40 {
		return time.Time{}
	}
	return time.Unix(int64(f), 0)
}
