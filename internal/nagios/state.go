// Package nagios holds the one Nagios service state type the suite shares:
// the plugin exit code, its label, and the worst-of order used to combine
// sub-checks. Every binary, the handler's policy and the lab read states
// through it, so "which state is worse" is decided in one place.
package nagios

import "strings"

// State is a Nagios service state; its value is the plugin exit code.
type State int

// The four states, numbered as the plugin API defines them.
const (
	OK       State = 0
	Warning  State = 1
	Critical State = 2
	Unknown  State = 3
)

// States lists the four states in exit-code order.
var States = [...]State{OK, Warning, Critical, Unknown}

// String is the label Nagios prints and passes in $SERVICESTATE$.
func (s State) String() string {
	switch s {
	case OK:
		return "OK"
	case Warning:
		return "WARNING"
	case Critical:
		return "CRITICAL"
	}
	return "UNKNOWN"
}

// ExitCode is the plugin exit code for s; anything out of range is UNKNOWN,
// so a plugin never exits outside 0-3.
func (s State) ExitCode() int {
	if s < OK || s > Unknown {
		return int(Unknown)
	}
	return int(s)
}

// rank orders states for Worst: CRITICAL > WARNING > UNKNOWN > OK, as
// monitoring-plugins' max_state_alt does. A sub-check that cannot tell
// (UNKNOWN) must not hide a real WARNING.
func (s State) rank() int {
	switch s {
	case OK:
		return 0
	case Unknown:
		return 1
	case Warning:
		return 2
	case Critical:
		return 3
	}
	return 1 // out of range reads as UNKNOWN
}

// Worst returns the more severe of a and b.
func Worst(a, b State) State {
	if b.rank() > a.rank() {
		return b
	}
	return a
}

// Parse reads a state label in any case, with surrounding space ignored:
// "OK", "warning", " CRITICAL ". The boolean is false for anything else,
// and the state is then Unknown.
func Parse(word string) (State, bool) {
	switch strings.ToUpper(strings.TrimSpace(word)) {
	case "OK":
		return OK, true
	case "WARNING":
		return Warning, true
	case "CRITICAL":
		return Critical, true
	case "UNKNOWN":
		return Unknown, true
	}
	return Unknown, false
}
