package handler

import (
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/breaker"
	"github.com/selfheal/selfheal/internal/nodestate"
)

// TestAgentHolds: an agent's breaker held S0 at t0, allowing its trial at
// t0+10s. Its host's other holds wait; S0 itself does not, even once
// another rule held it (the agent waits for that trial); the trial
// running late moves the time the breaker may close with it.
func TestAgentHolds(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	now := t0
	a := &agentHolds{now: func() time.Time { return now }, m: map[string]breaker.AgentHold{}}
	ask := nodestate.Ask{Address: "127.0.0.1", Port: 5690, Agent: "a"}
	hold := func(svc, rule string) nodestate.Record {
		return nodestate.Record{Host: "h", Service: svc, Held: &nodestate.Held{Rule: rule, Since: t0, RetryAt: t0.Add(10 * time.Second), Ask: ask}}
	}
	s0 := hold("S0", ruleAgentBreaker)
	if name := a.deferred(&s0); name != "a@127.0.0.1:5690" {
		t.Fatalf("deferred named %q", name)
	}
	zoneS0, s3 := hold("S0", string(nodestate.RuleBreaker)), hold("S3", string(nodestate.RuleBreaker))
	other := s3
	other.Held = &nodestate.Held{Rule: string(nodestate.RuleBreaker), Ask: nodestate.Ask{Address: "127.0.0.2", Port: 5690, Agent: "b"}}
	for _, c := range []struct {
		r    nodestate.Record
		want bool
	}{{s3, true}, {zoneS0, false}, {other, false}} {
		if got := a.skip(c.r); got != c.want {
			t.Errorf("skip %s on %s: %v, want %v", c.r.Service, c.r.Held.Ask.Agent, got, c.want)
		}
	}
	if a.ran(ask, "h!S3") != "" {
		t.Error("S3 counted as the trial")
	}
	now = t0.Add(25 * time.Second) // past RetryAt + quiet: a late trial
	if a.skip(s3) {
		t.Fatal("S3 held past RetryAt + quiet with no trial seen")
	}
	if a.ran(ask, "h!S0") == "" {
		t.Fatal("S0's run not taken for the trial")
	}
	if h := a.m["a@127.0.0.1:5690"]; !h.Until.Equal(now.Add(10*time.Second)) || h.Trial != "" {
		t.Fatalf("after the trial: %+v, want until %s, no trial pending", h, now.Add(10*time.Second))
	}
	if !a.skip(s3) {
		t.Fatal("S3 asked inside the quiet time after the trial")
	}
}
