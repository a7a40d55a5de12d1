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
// automatic restart: there is at most one per episode, so a restart at
// SOFT N is not repeated at the HARD state of the same fault.
//
// This is the one act/no-act rule: Run asks Decide(e, softAttempt, false)
// whether the event calls for a restart at all, and reads the episode only
// when it does.
func Decide(e Event, softAttempt int, restarted bool) Decision {
	switch e.State {
	case nagios.OK:
		return Decision{Close, "recovered: episode closed"}
	case nagios.Critical: // decided below
	default: // WARNING, UNKNOWN, and anything out of range: never restart
		return Decision{Nothing, "state " + e.State.String() + " never triggers a restart"}
	}
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

// newFault says e is the first check of a new fault: a problem at SOFT
// attempt 1. It ends any episode still open, in case its OK was missed.
func newFault(e Event) bool { return e.State != nagios.OK && e.Type == Soft && e.Attempt == 1 }
