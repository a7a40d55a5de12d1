package handler

import (
	"fmt"
	"testing"
)

var (
	allStates = []State{StateOK, StateWarning, StateUnknown, StateCritical}
	allTypes  = []StateType{Soft, Hard}
)

// TestDecideEveryCombination walks every state x type x attempt (1-5, which
// covers Nagios' max_check_attempts at HARD and Icinga's reset to 1) for
// each --soft-attempt setting and episode flag, and checks the rules of
// docs/event-handler.md's decision table.
func TestDecideEveryCombination(t *testing.T) {
	for _, soft := range []int{0, 1, 2, 3} {
		for _, restarted := range []bool{false, true} {
			for _, st := range allStates {
				for _, ty := range allTypes {
					for attempt := 1; attempt <= 5; attempt++ {
						e := Event{State: st, Type: ty, Attempt: attempt}
						got := Decide(e, soft, restarted).Action
						var want Action
						switch {
						case st == StateOK:
							want = Close
						case st != StateCritical:
							want = Nothing
						case ty == Hard || (soft > 0 && attempt >= soft):
							want = Restart
							if restarted {
								want = AlreadyHandled
							}
						default:
							want = Nothing
						}
						if got != want {
							t.Errorf("Decide(%s, soft=%d, restarted=%v) = %s, want %s", e, soft, restarted, got, want)
						}
					}
				}
			}
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
		{"nagios first HARD", Event{StateCritical, Hard, 3}, 0, false, Restart},
		{"icinga HARD resets attempt to 1", Event{StateCritical, Hard, 1}, 0, false, Restart},
		{"icinga start-up OK HARD 1", Event{StateOK, Hard, 1}, 0, false, Close},
		{"nagios recovery OK HARD 3", Event{StateOK, Hard, 3}, 0, true, Close},
		{"soft recovery", Event{StateOK, Soft, 2}, 2, true, Close},
		{"SOFT waits for HARD by default", Event{StateCritical, Soft, 2}, 0, false, Nothing},
		{"SOFT before N", Event{StateCritical, Soft, 1}, 2, false, Nothing},
		{"SOFT at N", Event{StateCritical, Soft, 2}, 2, false, Restart},
		{"SOFT after N when N was missed", Event{StateCritical, Soft, 3}, 2, false, Restart},
		{"HARD after SOFT restart: not twice", Event{StateCritical, Hard, 3}, 2, true, AlreadyHandled},
		{"icinga HARD 1 after SOFT restart", Event{StateCritical, Hard, 1}, 2, true, AlreadyHandled},
		{"HARD WARNING", Event{StateWarning, Hard, 3}, 0, false, Nothing},
		{"HARD UNKNOWN (plugin failure)", Event{StateUnknown, Hard, 3}, 1, false, Nothing},
		{"SOFT UNKNOWN at N", Event{StateUnknown, Soft, 2}, 2, false, Nothing},
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
		{"CRITICAL", "HARD", 3, Event{StateCritical, Hard, 3}, false},
		{"critical", "soft", 1, Event{StateCritical, Soft, 1}, false},
		{" OK ", "HARD", 1, Event{StateOK, Hard, 1}, false},
		{"WARNING", "SOFT", 2, Event{StateWarning, Soft, 2}, false},
		{"UNKNOWN", "HARD", 4, Event{StateUnknown, Hard, 4}, false},
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
