package handler

import (
	"strings"
	"testing"

	"github.com/selfheal/selfheal/internal/protocol"
)

func TestIssueHostKey(t *testing.T) {
	fleet, err := protocol.GenerateFleetKey("fleet1")
	if err != nil {
		t.Fatal(err)
	}
	host, err := IssueHostKey(fleet, "web1")
	if err != nil || host.Kind != protocol.HostKey || host.Agent != "web1" || host.ID != "fleet1" {
		t.Fatalf("issued %+v, %v", host.Kind, err)
	}
	if want, _ := fleet.ForAgent("web1"); string(want.Secret) != string(host.Secret) {
		t.Fatal("not the derived host key")
	}
	// A host key issues nothing, not even for its own agent.
	for _, agent := range []string{"web1", "web2"} {
		if _, err := IssueHostKey(host, agent); err == nil || !strings.Contains(err.Error(), "not a fleet key") {
			t.Errorf("issued from a host key for %s: %v", agent, err)
		}
	}
	if _, err := IssueHostKey(fleet, "Web1"); err == nil {
		t.Error("issued a key for an invalid agent name")
	}
}

func TestAgentName(t *testing.T) {
	tests := []struct {
		explicit, def, want string
		err                 bool
	}{
		{"", "web1", "web1", false},
		{"", "Web1.Example.ORG", "web1.example.org", false},
		{"", " web1 ", "web1", false},
		{"worker-7", "Web1", "worker-7", false},
		{"", "web 1", "", true},
		{"", "", "", true},
		{"", "-web", "", true},
		{"Web1", "web1", "", true}, // an explicit name is taken as it is
		{"", "$HOSTNAME$", "", true},
	}
	for _, tt := range tests {
		got, err := AgentName(tt.explicit, tt.def, "HOSTNAME")
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("AgentName(%q, %q) = %q, %v", tt.explicit, tt.def, got, err)
		}
	}
}

func TestFaultID(t *testing.T) {
	tests := []struct {
		in, want string
		err      bool
	}{
		{"-", "-", false},
		{"", "-", false},
		{"0", "-", false}, // Nagios' $SERVICEPROBLEMID$ while OK
		{"4711", "4711", false},
		{"1764024000.123456", "1764024000.123456", false}, // Icinga 2's last_state_change
		{"manual-1764024000-0a1b2c3d", "manual-1764024000-0a1b2c3d", false},
		{"$SERVICEPROBLEMID$", "", true},
		{"1 2", "", true},
		{"-1", "", true},
		{strings.Repeat("1", 65), "", true},
	}
	for _, tt := range tests {
		got, err := FaultID(tt.in)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("FaultID(%q) = %q, %v", tt.in, got, err)
		}
	}
}

// TestFaultSince: Nagios' whole seconds and Icinga 2's fractions are read;
// an empty, zero, negative or unreadable value is "not known", never an
// error (an engine that expands the macro to nothing must not stop
// healing).
func TestFaultSince(t *testing.T) {
	for in, want := range map[string]int64{
		"1764024000": 1764024000, " 1764024000 ": 1764024000, "1764024000.734512": 1764024000,
		"": 0, "0": 0, "-5": 0, "$LASTSERVICESTATECHANGE$": 0, "abc": 0, "NaN": 0, "Inf": 0, "1e300": 0,
	} {
		got := FaultSince(in)
		if (want == 0 && !got.IsZero()) || (want != 0 && got.Unix() != want) {
			t.Errorf("FaultSince(%q) = %v, want %d", in, got, want)
		}
	}
}
