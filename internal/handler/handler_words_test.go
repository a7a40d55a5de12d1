package handler

import (
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/protocol"
)

// TestAgentWordsCarried (issue 18): the handler's line (and so its log
// and comment) carries what the agent said: how old a recorded answer is,
// a clock that moved back, a record whose authority ended; a legacy reply
// without a note keeps the old hedge.
func TestAgentWordsCarried(t *testing.T) {
	c := Conn{Address: "127.0.0.1", Port: 5690, Agent: "web1", Target: "demo"}
	ans := func(kind string, rep protocol.Reply) answer {
		return answer{exchange: exchange{rep: rep, final: true, attempts: 1}, verb: protocol.VerbRestart, fault: "4711", conn: c, kind: kind}
	}
	clock := "the last restart is dated 2h in the future: the clock moved back; counted as now"
	for _, tc := range []struct {
		name string
		a    answer
		want []string
		not  []string
	}{
		{"recorded, with its age and a clock that moved back", ans(kindAlready, protocol.Reply{Outcome: protocol.OutcomeOK, Origin: protocol.OriginRecorded,
			Extended: true, Age: 192 * time.Second, Note: "fault 4711 was restarted 3m12s ago (at 2026-12-07T01:00:00Z): ok; " + clock}),
			[]string{"ok, not run again, answered from the agent's record (3m12s old): fault 4711 was restarted 3m12s ago", clock},
			[]string{"min gap"}},
		{"joined", ans(kindAlready, protocol.Reply{Outcome: protocol.OutcomeOK, Origin: protocol.OriginJoined, Extended: true,
			Note: "shared the restart that started at 2026-12-07T01:00:00Z"}),
			[]string{"ok, not run again, this request shared a restart in progress: shared the restart"}, nil},
		{"legacy agent", ans(kindAlready, protocol.Reply{Outcome: protocol.OutcomeOK, Origin: protocol.OriginRecorded}),
			[]string{"already restarted for this fault by another request (or within the agent's min gap), not run again: ok"}, nil},
		{"a reused id ran", ans(kindHealed, protocol.Reply{Outcome: protocol.OutcomeOK, Origin: protocol.OriginRun, Extended: true,
			Note: "the record of fault 4711 is 72h old (more than 24h): a new fault that reuses its id"}),
			[]string{"ok in", "; the agent: the record of fault 4711 is 72h old (more than 24h): a new fault that reuses its id"}, nil},
		{"a new fault inside the gap", ans(string(protocol.OutcomeBackoff), protocol.Reply{Outcome: protocol.OutcomeBackoff, Origin: protocol.OriginNone,
			Extended: true, Budget: protocol.Budget{Used: 1, Max: 3, Window: time.Hour, RetryAfter: 80 * time.Second},
			Output: "x", Note: "fault 4712 began 25s after the last restart (fault 4711, ok) ended: a new fault; min_gap 2m: allowed in 1m20s"}),
			[]string{"back-off at the agent", "next restart allowed in 1m20s (fault 4712 began 25s after the last restart (fault 4711, ok) ended: a new fault"},
			[]string{"ok,", "not run again"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.a.summary()
			for _, w := range tc.want {
				if !strings.Contains(s, w) {
					t.Errorf("summary %q lacks %q", s, w)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(s, w) {
					t.Errorf("summary %q has %q", s, w)
				}
			}
		})
	}
}

// TestSkewOrDelay (issue 18): a request the agent found outside its
// replay window is a clock problem only when the clocks disagree; when
// they agree it was delayed, and the line says so, not "check NTP".
func TestSkewOrDelay(t *testing.T) {
	ours := time.Unix(1_764_024_000, 0)
	note := "timestamp 75s in the past (window 60s)"
	delayed := skewText(protocol.Reply{AgentTime: ours.Add(200 * time.Millisecond), Note: note}, ours, ours.Add(-75*time.Second))
	if !strings.Contains(delayed, "reached the agent too late: 1m15s after it was signed") || !strings.Contains(delayed, "the clocks agree (off by 0 s)") ||
		strings.Contains(delayed, "check NTP") || !strings.Contains(delayed, note) {
		t.Errorf("delayed: %q", delayed)
	}
	skewed := skewText(protocol.Reply{AgentTime: ours.Add(90 * time.Second), Note: "timestamp 90s in the past (window 60s)"}, ours, ours.Add(-100*time.Millisecond))
	if !strings.Contains(skewed, "clock off by 90 s from the agent") || !strings.Contains(skewed, "check NTP") || strings.Contains(skewed, "too late") {
		t.Errorf("skewed: %q", skewed)
	}
	if s := skewText(protocol.Reply{}, ours, ours); !strings.Contains(s, "check NTP") {
		t.Errorf("unknown agent time: %q", s)
	}
}
