package handler

import (
	"fmt"
	"strings"
	"testing"

	"github.com/selfheal/selfheal/internal/nagios"
)

// decisionTable is docs/event-handler.md's decision table written out for
// every state x type: one column per --soft-attempt setting (0-3), one
// letter per attempt 1-5 (which covers Nagios' max_check_attempts at HARD
// and Icinga's reset to 1). R asks the agent for a restart, - does
// nothing. There is no "already restarted" column: the agent answers a
// second request for the same fault from its record.
var decisionTable = []struct {
	bySoft [4]string // --soft-attempt 0, 1, 2, 3
	state  nagios.State
	typ    StateType
}{
	//         soft 0   soft 1   soft 2   soft 3   state, type
	{[4]string{"-----", "-----", "-----", "-----"}, nagios.OK, Soft},
	{[4]string{"-----", "-----", "-----", "-----"}, nagios.OK, Hard},
	{[4]string{"-----", "-----", "-----", "-----"}, nagios.Warning, Soft},
	{[4]string{"-----", "-----", "-----", "-----"}, nagios.Warning, Hard},
	{[4]string{"-----", "-----", "-----", "-----"}, nagios.Unknown, Soft},
	{[4]string{"-----", "-----", "-----", "-----"}, nagios.Unknown, Hard},
	{[4]string{"-----", "RRRRR", "-RRRR", "--RRR"}, nagios.Critical, Soft},
	{[4]string{"RRRRR", "RRRRR", "RRRRR", "RRRRR"}, nagios.Critical, Hard},
}

var tableLetter = map[byte]Action{'-': Nothing, 'R': Restart}

// TestDecideEveryCombination checks Decide against decisionTable, and that
// the table has a row for every state x type.
func TestDecideEveryCombination(t *testing.T) {
	seen := map[string]bool{}
	for _, row := range decisionTable {
		seen[fmt.Sprintf("%s %s", row.state, row.typ)] = true
		for soft, col := range row.bySoft {
			if len(col) != 5 {
				t.Fatalf("row %s %s, soft %d: %q is not 5 attempts", row.state, row.typ, soft, col)
			}
			for i := range len(col) {
				want, ok := tableLetter[col[i]]
				if !ok {
					t.Fatalf("row %s %s: bad letter %q", row.state, row.typ, col[i])
				}
				e := Event{State: row.state, Type: row.typ, Attempt: i + 1}
				d := Decide(e, soft)
				if d.Action != want {
					t.Errorf("Decide(%s, soft=%d) = %s (%s), want %s", e, soft, d.Action, d.Reason, want)
				}
				if d.Reason == "" {
					t.Errorf("Decide(%s, soft=%d): empty reason", e, soft)
				}
			}
		}
	}
	for _, st := range nagios.States {
		for _, ty := range []StateType{Soft, Hard} {
			if k := fmt.Sprintf("%s %s", st, ty); !seen[k] {
				t.Errorf("decisionTable has no row %s", k)
			}
		}
	}
}

// An out-of-range state (never produced by ParseEvent) must not restart.
func TestDecideOutOfRangeState(t *testing.T) {
	for _, ty := range []StateType{Soft, Hard} {
		if d := Decide(Event{State: nagios.State(7), Type: ty, Attempt: 3}, 1); d.Action != Nothing {
			t.Errorf("state 7 %s: %s (%s), want nothing", ty, d.Action, d.Reason)
		}
	}
}

// Named rows for the cases that matter at 3 a.m.
func TestDecideRows(t *testing.T) {
	tests := []struct {
		name   string
		e      Event
		soft   int
		want   Action
		reason string
	}{
		{"nagios first HARD", Event{nagios.Critical, Hard, 3}, 0, Restart, "HARD CRITICAL"},
		{"icinga HARD resets attempt to 1", Event{nagios.Critical, Hard, 1}, 0, Restart, "HARD CRITICAL"},
		{"icinga start-up OK HARD 1", Event{nagios.OK, Hard, 1}, 0, Nothing, "recovered"},
		{"nagios recovery OK HARD 3", Event{nagios.OK, Hard, 3}, 0, Nothing, "recovered"},
		{"soft recovery", Event{nagios.OK, Soft, 2}, 2, Nothing, "recovered"},
		{"SOFT waits for HARD by default", Event{nagios.Critical, Soft, 2}, 0, Nothing, "waiting for the HARD state"},
		{"SOFT before N", Event{nagios.Critical, Soft, 1}, 2, Nothing, "waiting for attempt 2"},
		{"SOFT at N", Event{nagios.Critical, Soft, 2}, 2, Restart, "SOFT CRITICAL attempt 2 (acting from attempt 2)"},
		{"SOFT after N when N was missed", Event{nagios.Critical, Soft, 3}, 2, Restart, "SOFT CRITICAL attempt 3"},
		// The agent answers this one from the SOFT restart's fault record.
		{"HARD after SOFT restart asks again", Event{nagios.Critical, Hard, 3}, 2, Restart, "HARD CRITICAL"},
		{"HARD WARNING", Event{nagios.Warning, Hard, 3}, 0, Nothing, "never triggers"},
		{"HARD UNKNOWN (plugin failure)", Event{nagios.Unknown, Hard, 3}, 1, Nothing, "never triggers"},
		{"SOFT UNKNOWN at N", Event{nagios.Unknown, Soft, 2}, 2, Nothing, "never triggers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.e, tt.soft)
			if d.Action != tt.want || !strings.Contains(d.Reason, tt.reason) {
				t.Fatalf("got %s (%s), want %s (%s)", d.Action, d.Reason, tt.want, tt.reason)
			}
		})
	}
}

func TestParseEvent(t *testing.T) {
	tests := []struct {
		state, typ string
		attempt    int
		want       Event
		err        bool
	}{
		{"CRITICAL", "HARD", 3, Event{nagios.Critical, Hard, 3}, false},
		{"critical", "soft", 1, Event{nagios.Critical, Soft, 1}, false},
		{" OK ", "HARD", 1, Event{nagios.OK, Hard, 1}, false},
		{"WARNING", "SOFT", 2, Event{nagios.Warning, Soft, 2}, false},
		{"UNKNOWN", "HARD", 4, Event{nagios.Unknown, Hard, 4}, false},
		{"DOWN", "HARD", 1, Event{}, true},
		{"", "HARD", 1, Event{}, true},
		{"$SERVICESTATE$", "HARD", 1, Event{}, true},
		{"CRITICAL", "FIRM", 1, Event{}, true},
		{"CRITICAL", "HARD", 0, Event{}, true},
		{"CRITICAL", "HARD", -1, Event{}, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s_%s_%d", tt.state, tt.typ, tt.attempt), func(t *testing.T) {
			got, err := ParseEvent(tt.state, tt.typ, tt.attempt)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// The usage errors name what was wrong and what is accepted.
func TestParseEventMessages(t *testing.T) {
	tests := []struct {
		state, typ string
		attempt    int
		want       string
	}{
		{"DOWN", "HARD", 1, `unknown service state "DOWN" (want OK, WARNING, UNKNOWN or CRITICAL)`},
		{"CRITICAL", "FIRM", 1, `unknown state type "FIRM" (want SOFT or HARD)`},
		{"CRITICAL", "HARD", 0, "attempt 0: must be 1 or more"},
	}
	for _, tt := range tests {
		_, err := ParseEvent(tt.state, tt.typ, tt.attempt)
		if err == nil || err.Error() != tt.want {
			t.Errorf("ParseEvent(%q, %q, %d) = %v, want %q", tt.state, tt.typ, tt.attempt, err, tt.want)
		}
	}
}

func TestConnAddr(t *testing.T) {
	tests := []struct {
		host string
		want string
	}{
		{"127.0.0.1", "127.0.0.1:5690"},
		{"::1", "[::1]:5690"},
		{"worker-1.example.org", "worker-1.example.org:5690"},
	}
	for _, tt := range tests {
		if got := (Conn{Address: tt.host, Port: 5690}).Addr(); got != tt.want {
			t.Errorf("Addr(%q) = %q, want %q", tt.host, got, tt.want)
		}
	}
}
