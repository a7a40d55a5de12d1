package handler

import (
	"fmt"
	"testing"

	"github.com/selfheal/selfheal/internal/nagios"
)

// decisionTable is docs/event-handler.md's decision table written out for
// every state x type x episode flag: one column per --soft-attempt setting
// (0-3), one letter per attempt 1-5 (which covers Nagios'
// max_check_attempts at HARD and Icinga's reset to 1).
// C close the episode, - nothing, R restart, A already handled.
var decisionTable = []struct {
	bySoft    [4]string // --soft-attempt 0, 1, 2, 3
	state     nagios.State
	typ       StateType
	restarted bool // the episode already had its restart
}{
	//         soft 0   soft 1   soft 2   soft 3   state, type, restarted
	{[4]string{"CCCCC", "CCCCC", "CCCCC", "CCCCC"}, nagios.OK, Soft, false},
	{[4]string{"CCCCC", "CCCCC", "CCCCC", "CCCCC"}, nagios.OK, Soft, true},
	{[4]string{"CCCCC", "CCCCC", "CCCCC", "CCCCC"}, nagios.OK, Hard, false},
	{[4]string{"CCCCC", "CCCCC", "CCCCC", "CCCCC"}, nagios.OK, Hard, true},
	{[4]string{"-----", "-----", "-----", "-----"}, nagios.Warning, Soft, false},
	{[4]string{"-----", "-----", "-----", "-----"}, nagios.Warning, Soft, true},
	{[4]string{"-----", "-----", "-----", "-----"}, nagios.Warning, Hard, false},
	{[4]string{"-----", "-----", "-----", "-----"}, nagios.Warning, Hard, true},
	{[4]string{"-----", "-----", "-----", "-----"}, nagios.Unknown, Soft, false},
	{[4]string{"-----", "-----", "-----", "-----"}, nagios.Unknown, Soft, true},
	{[4]string{"-----", "-----", "-----", "-----"}, nagios.Unknown, Hard, false},
	{[4]string{"-----", "-----", "-----", "-----"}, nagios.Unknown, Hard, true},
	{[4]string{"-----", "RRRRR", "-RRRR", "--RRR"}, nagios.Critical, Soft, false},
	{[4]string{"-----", "AAAAA", "-AAAA", "--AAA"}, nagios.Critical, Soft, true},
	{[4]string{"RRRRR", "RRRRR", "RRRRR", "RRRRR"}, nagios.Critical, Hard, false},
	{[4]string{"AAAAA", "AAAAA", "AAAAA", "AAAAA"}, nagios.Critical, Hard, true},
}

var tableLetter = map[byte]Action{'C': Close, '-': Nothing, 'R': Restart, 'A': AlreadyHandled}

// TestDecideEveryCombination checks Decide against decisionTable, and that
// the table has a row for every state x type x episode flag.
func TestDecideEveryCombination(t *testing.T) {
	seen := map[string]bool{}
	for _, row := range decisionTable {
		seen[fmt.Sprintf("%s %s %v", row.state, row.typ, row.restarted)] = true
		for soft, col := range row.bySoft {
			if len(col) != 5 {
				t.Fatalf("row %s %s %v, soft %d: %q is not 5 attempts", row.state, row.typ, row.restarted, soft, col)
			}
			for i := range len(col) {
				want, ok := tableLetter[col[i]]
				if !ok {
					t.Fatalf("row %s %s %v: bad letter %q", row.state, row.typ, row.restarted, col[i])
				}
				e := Event{State: row.state, Type: row.typ, Attempt: i + 1}
				d := Decide(e, soft, row.restarted)
				if d.Action != want {
					t.Errorf("Decide(%s, soft=%d, restarted=%v) = %s (%s), want %s", e, soft, row.restarted, d.Action, d.Reason, want)
				}
				if d.Reason == "" {
					t.Errorf("Decide(%s, soft=%d, restarted=%v): empty reason", e, soft, row.restarted)
				}
			}
		}
	}
	for _, st := range nagios.States {
		for _, ty := range []StateType{Soft, Hard} {
			for _, restarted := range []bool{false, true} {
				if k := fmt.Sprintf("%s %s %v", st, ty, restarted); !seen[k] {
					t.Errorf("decisionTable has no row %s", k)
				}
			}
		}
	}
}

// An out-of-range state (never produced by ParseEvent) must not restart.
func TestDecideOutOfRangeState(t *testing.T) {
	for _, ty := range []StateType{Soft, Hard} {
		if d := Decide(Event{State: nagios.State(7), Type: ty, Attempt: 3}, 1, false); d.Action != Nothing {
			t.Errorf("state 7 %s: %s (%s), want nothing", ty, d.Action, d.Reason)
		}
	}
}

// TestNewFault: only a problem at SOFT attempt 1 starts a new fault.
func TestNewFault(t *testing.T) {
	tests := []struct {
		e    Event
		want bool
	}{
		{Event{nagios.Critical, Soft, 1}, true},
		{Event{nagios.Warning, Soft, 1}, true},
		{Event{nagios.Unknown, Soft, 1}, true},
		{Event{nagios.OK, Soft, 1}, false},
		{Event{nagios.Critical, Soft, 2}, false},
		{Event{nagios.Critical, Hard, 1}, false},
		{Event{nagios.OK, Hard, 1}, false},
	}
	for _, tt := range tests {
		if got := newFault(tt.e); got != tt.want {
			t.Errorf("newFault(%s) = %v, want %v", tt.e, got, tt.want)
		}
	}
}

// Named rows for the cases that matter at 3 a.m.
func TestDecideRows(t *testing.T) {
	tests := []struct {
		name      string
		e         Event
		soft      int
		restarted bool
		want      Action
	}{
		{"nagios first HARD", Event{nagios.Critical, Hard, 3}, 0, false, Restart},
		{"icinga HARD resets attempt to 1", Event{nagios.Critical, Hard, 1}, 0, false, Restart},
		{"icinga start-up OK HARD 1", Event{nagios.OK, Hard, 1}, 0, false, Close},
		{"nagios recovery OK HARD 3", Event{nagios.OK, Hard, 3}, 0, true, Close},
		{"soft recovery", Event{nagios.OK, Soft, 2}, 2, true, Close},
		{"SOFT waits for HARD by default", Event{nagios.Critical, Soft, 2}, 0, false, Nothing},
		{"SOFT before N", Event{nagios.Critical, Soft, 1}, 2, false, Nothing},
		{"SOFT at N", Event{nagios.Critical, Soft, 2}, 2, false, Restart},
		{"SOFT after N when N was missed", Event{nagios.Critical, Soft, 3}, 2, false, Restart},
		{"HARD after SOFT restart: not twice", Event{nagios.Critical, Hard, 3}, 2, true, AlreadyHandled},
		{"icinga HARD 1 after SOFT restart", Event{nagios.Critical, Hard, 1}, 2, true, AlreadyHandled},
		{"HARD WARNING", Event{nagios.Warning, Hard, 3}, 0, false, Nothing},
		{"HARD UNKNOWN (plugin failure)", Event{nagios.Unknown, Hard, 3}, 1, false, Nothing},
		{"SOFT UNKNOWN at N", Event{nagios.Unknown, Soft, 2}, 2, false, Nothing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.e, tt.soft, tt.restarted)
			if d.Action != tt.want {
				t.Fatalf("got %s (%s), want %s", d.Action, d.Reason, tt.want)
			}
			if d.Reason == "" {
				t.Fatal("empty reason")
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
