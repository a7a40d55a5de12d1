package handler

import (
	"fmt"
	"strings"
)

// State is a service state as Nagios ($SERVICESTATE$) and Icinga 2
// ($service.state$) spell it.
type State string

// The four service states.
const (
	StateOK       State = "OK"
	StateWarning  State = "WARNING"
	StateUnknown  State = "UNKNOWN"
	StateCritical State = "CRITICAL"
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
	State   State
	Type    StateType
	Attempt int
}

func (e Event) String() string { return fmt.Sprintf("%s %s %d", e.State, e.Type, e.Attempt) }

// ParseEvent validates the three macros. Case is ignored because Icinga 2
// and Naemon setups sometimes pass lower-case values through their own
// macros; anything else is a usage error (exit 3), never a guess.
func ParseEvent(state, stype string, attempt int) (Event, error) {
	e := Event{State: State(strings.ToUpper(strings.TrimSpace(state))), Type: StateType(strings.ToUpper(strings.TrimSpace(stype))), Attempt: attempt}
	switch e.State {
	case StateOK, StateWarning, StateUnknown, StateCritical:
	default:
		return Event{}, fmt.Errorf("unknown service state %q (want OK, WARNING, UNKNOWN or CRITICAL)", state)
	}
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

// Policy outcomes.
const (
	// Nothing: no restart and no change to the episode.
	Nothing Action = iota
	// Close: a recovery; the episode (if any) ends.
	Close
	// Restart: heal now (still subject to the budget).
	Restart
	// AlreadyHandled: a restart was already made in this episode; wait
	// for the recovery instead of restarting a second time.
	AlreadyHandled
)

func (a Action) String() string {
	switch a {
	case Close:
		return "close-episode"
	case Restart:
		return "restart"
	case AlreadyHandled:
		return "already-handled"
	default:
		return "nothing"
	}
}

// Decision is the policy's answer with a human reason.
type Decision struct {
	Action Action
	Reason string
}

// Decide maps an event to an action. It looks at the state and the type
// first and at the attempt only for the SOFT option, because Icinga 2
// resets the attempt to 1 at the HARD state (Nagios reports max attempts
// there) and calls the handler with "OK HARD 1" at start-up.
//
// softAttempt > 0 acts at SOFT CRITICAL from that attempt on. restarted
// says the current episode (the fault since the last OK) already had an
// automatic or manual restart: there is at most one per episode, so a
// restart at SOFT N is not repeated at the HARD state of the same fault.
func Decide(e Event, softAttempt int, restarted bool) Decision {
	switch e.State {
	case StateOK:
		return Decision{Close, "recovered: episode closed"}
	case StateWarning, StateUnknown:
		return Decision{Nothing, "state " + string(e.State) + " never triggers a restart"}
	}
	// CRITICAL.
	var trigger string
	switch {
	case e.Type == Hard:
		trigger = "HARD CRITICAL"
	case softAttempt > 0 && e.Attempt >= softAttempt:
		trigger = fmt.Sprintf("SOFT CRITICAL attempt %d (acting from attempt %d)", e.Attempt, softAttempt)
	case softAttempt > 0:
		return Decision{Nothing, fmt.Sprintf("SOFT CRITICAL attempt %d: waiting for attempt %d", e.Attempt, softAttempt)}
	default:
		return Decision{Nothing, "SOFT CRITICAL: waiting for the HARD state"}
	}
	if restarted {
		return Decision{AlreadyHandled, trigger + ": already restarted in this episode, waiting for recovery"}
	}
	return Decision{Restart, trigger}
}
