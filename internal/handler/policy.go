package handler

import (
	"fmt"
	"strings"

	"github.com/selfheal/selfheal/internal/nagios"
)

// StateType is $SERVICESTATETYPE$.
type StateType string

// The two state types.
const (
	Soft StateType = "SOFT"
	Hard StateType = "HARD"
)

// Event is one handler invocation: the macros Nagios or Icinga passed.
type Event struct {
	State   nagios.State
	Type    StateType
	Attempt int
}

func (e Event) String() string { return fmt.Sprintf("%s %s %d", e.State, e.Type, e.Attempt) }

// ParseEvent validates the three macros. Case is ignored because Icinga 2
// and Naemon setups sometimes pass lower-case values through their own
// macros; anything else is a usage error (exit 3), never a guess.
func ParseEvent(state, stype string, attempt int) (Event, error) {
	st, ok := nagios.Parse(state)
	if !ok {
		return Event{}, fmt.Errorf("unknown service state %q (want OK, WARNING, UNKNOWN or CRITICAL)", state)
	}
	e := Event{State: st, Type: StateType(strings.ToUpper(strings.TrimSpace(stype))), Attempt: attempt}
	switch e.Type {
	case Soft, Hard:
	default:
		return Event{}, fmt.Errorf("unknown state type %q (want SOFT or HARD)", stype)
	}
	if attempt < 1 {
		return Event{}, fmt.Errorf("attempt %d: must be 1 or more", attempt)
	}
	return e, nil
}

// Action is what the policy wants done.
type Action int

// Policy outcomes. There is no local "already handled": the agent keeps
// one restart per fault, so the handler may ask again for the same fault
// (a SOFT restart, then the HARD state) and the agent answers from its
// record.
const (
	// Nothing: no request.
	Nothing Action = iota
	// Restart: ask the agent to heal now (its budget decides).
	Restart
)

func (a Action) String() string {
	if a == Restart {
		return "restart"
	}
	return "nothing"
}

// Decision is the policy's answer with a human reason.
type Decision struct {
	Action Action
	Reason string
}

// Decide maps an event to an action: whether to ask the agent for a
// restart. It looks at the state and the type first and at the attempt
// only for the SOFT option, because Icinga 2 resets the attempt to 1 at
// the HARD state (Nagios reports max attempts there) and calls the handler
// with "OK HARD 1" at start-up.
//
// softAttempt > 0 also asks at SOFT CRITICAL from that attempt on. The
// SOFT request and the later HARD one carry the same fault id, so the
// agent runs the restart once and answers the second from its record.
func Decide(e Event, softAttempt int) Decision {
	switch e.State {
	case nagios.OK:
		return Decision{Nothing, "recovered: nothing to do"}
	case nagios.Critical: // decided below
	default: // WARNING, UNKNOWN, and anything out of range: never restart
		return Decision{Nothing, "state " + e.State.String() + " never triggers a restart"}
	}
	switch {
	case e.Type == Hard:
		return Decision{Restart, "HARD CRITICAL"}
	case softAttempt > 0 && e.Attempt >= softAttempt:
		return Decision{Restart, fmt.Sprintf("SOFT CRITICAL attempt %d (acting from attempt %d)", e.Attempt, softAttempt)}
	case softAttempt > 0:
		return Decision{Nothing, fmt.Sprintf("SOFT CRITICAL attempt %d: waiting for attempt %d", e.Attempt, softAttempt)}
	default:
		return Decision{Nothing, "SOFT CRITICAL: waiting for the HARD state"}
	}
}
