package handler

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/breaker"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/nodestate"
)

// statusFor is a status.dat holding web1/Worker and the host web1.
func statusFor(t *testing.T, svc, host string) *nagios.StatusData {
	t.Helper()
	in := "info {\ncreated=1764023001\n}\nservicestatus {\nhost_name=web1\nservice_description=Worker\n" + svc +
		"}\nhoststatus {\nhost_name=web1\n" + host + "}\n"
	sd, err := nagios.ReadStatusData(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	return sd
}

const (
	depOnly  = "'critical_self'=0;;;0; 'critical_dependency'=2;;;0;"
	selfCrit = "'critical_self'=1;;;0; 'critical_dependency'=2;;;0;"
)

func ruleOf(h *Hold) string {
	if h == nil {
		return ""
	}
	return h.Rule
}

// TestJudgePrecedence: with every condition present, the first rule in
// the documented order holds the restart; switching that rule off leaves
// the next; every rule off, nothing holds. Both from the macros and from
// status.dat alone.
func TestJudgePrecedence(t *testing.T) {
	down := nagios.HostDown
	macros := Facts{ServiceDowntime: 1, HostDowntime: 1, Ack: 1, HostState: &down, Perfdata: depOnly, PerfdataGiven: true}
	status := NoFacts
	status.Status = statusFor(t,
		"has_been_checked=1\ncurrent_state=2\nstate_type=1\nscheduled_downtime_depth=1\nproblem_has_been_acknowledged=1\nperformance_data="+depOnly+"\n",
		"has_been_checked=1\ncurrent_state=1\nscheduled_downtime_depth=1\n")
	order := []nodestate.Rule{nodestate.RuleDowntime, nodestate.RuleAck, nodestate.RuleHost, nodestate.RuleDependency}
	for name, f := range map[string]Facts{"macros": macros, "status.dat": status} {
		ignore := map[nodestate.Rule]bool{}
		for _, r := range order {
			if got := judge(Judgment{Ignore: ignore}, f, "web1", "Worker"); ruleOf(got) != string(r) {
				t.Fatalf("%s, ignoring %v: held by %q, want %q", name, ignore, ruleOf(got), r)
			}
			ignore[r] = true
		}
		if got := judge(Judgment{Ignore: ignore}, f, "web1", "Worker"); got != nil {
			t.Fatalf("%s, every rule off: held %+v", name, got)
		}
		// pause and breaker are not judge's: switching them off changes nothing.
		if got := judge(Judgment{Ignore: map[nodestate.Rule]bool{nodestate.RulePause: true, nodestate.RuleBreaker: true}}, f, "web1", "Worker"); ruleOf(got) != string(nodestate.RuleDowntime) {
			t.Fatalf("%s: %+v", name, got)
		}
	}
	// The host's downtime alone is downtime too, and says so.
	f := NoFacts
	f.HostDowntime = 2
	if h := judge(Judgment{}, f, "web1", "Worker"); ruleOf(h) != "downtime" || !strings.Contains(h.Text, "the host is in scheduled downtime") {
		t.Fatalf("host downtime: %+v", h)
	}
}

// TestJudgeFacts: one fact at a time, from the macros or from status.dat;
// a macro that is given wins over status.dat, which is read only for what
// the macros did not give.
func TestJudgeFacts(t *testing.T) {
	up, down, unreach := nagios.HostUp, nagios.HostDown, nagios.HostUnreachable
	critHard := "has_been_checked=1\ncurrent_state=2\nstate_type=1\n"
	hostUp := "has_been_checked=1\ncurrent_state=0\n"
	with := func(f Facts, edit func(*Facts)) Facts { edit(&f); return f }
	sd := func(svc, host string) func(*Facts) {
		return func(f *Facts) { f.Status = statusFor(t, svc, host) }
	}
	tests := []struct {
		name string
		f    Facts
		rule string
		text string
	}{
		{"nothing given", NoFacts, "", ""},
		{"zero facts (all given as 0)", Facts{}, "", ""},
		{"status.dat, all clear", with(NoFacts, sd(critHard, hostUp)), "", ""},

		{"service downtime macro", with(NoFacts, func(f *Facts) { f.ServiceDowntime = 1 }), "downtime",
			"auto-restart held back (downtime): the service is in scheduled downtime; healed when it ends if still CRITICAL"},
		{"service downtime, status.dat", with(NoFacts, sd(critHard+"scheduled_downtime_depth=1\n", hostUp)), "downtime", "the service is in scheduled downtime"},
		{"host downtime, status.dat", with(NoFacts, sd(critHard, hostUp+"scheduled_downtime_depth=1\n")), "downtime", "the host is in scheduled downtime"},
		{"downtime macro 0 wins over status.dat", with(NoFacts, func(f *Facts) {
			sd(critHard+"scheduled_downtime_depth=1\n", hostUp+"scheduled_downtime_depth=1\n")(f)
			f.ServiceDowntime, f.HostDowntime = 0, 0
		}), "", ""},

		{"ack macro", with(NoFacts, func(f *Facts) { f.Ack = 2 }), "ack",
			"auto-restart held back (acknowledged): a human has taken this problem; remove the acknowledgement to let it heal"},
		{"ack, status.dat", with(NoFacts, sd(critHard+"problem_has_been_acknowledged=1\n", hostUp)), "ack", "(acknowledged)"},
		{"ack macro 0 wins over status.dat", with(NoFacts, func(f *Facts) {
			sd(critHard+"problem_has_been_acknowledged=1\n", hostUp)(f)
			f.Ack = 0
		}), "", ""},
		{"status.dat says not acked, the macro does", with(NoFacts, func(f *Facts) { sd(critHard, hostUp)(f); f.Ack = 1 }), "ack", ""},

		{"host DOWN macro", with(NoFacts, func(f *Facts) { f.HostState = &down }), "host",
			"auto-restart held back (host DOWN): the worker's host is DOWN, so the agent cannot be reached and a restart would not help; the fault's restart is kept for when the host is UP"},
		{"host UNREACHABLE macro", with(NoFacts, func(f *Facts) { f.HostState = &unreach }), "host", "(host UNREACHABLE): the worker's host is UNREACHABLE"},
		{"host DOWN, status.dat", with(NoFacts, sd(critHard, "has_been_checked=1\ncurrent_state=1\n")), "host", "(host DOWN)"},
		{"host UNREACHABLE, status.dat", with(NoFacts, sd(critHard, "has_been_checked=1\ncurrent_state=2\n")), "host", "(host UNREACHABLE)"},
		{"host never checked, status.dat", with(NoFacts, sd(critHard, "has_been_checked=0\ncurrent_state=1\n")), "", ""},
		{"host UP macro wins over status.dat", with(NoFacts, func(f *Facts) {
			sd(critHard, "has_been_checked=1\ncurrent_state=1\n")(f)
			f.HostState = &up
		}), "", ""},
		{"host DOWN macro wins over status.dat", with(NoFacts, func(f *Facts) { sd(critHard, hostUp)(f); f.HostState = &down }), "host", ""},

		{"dependency perfdata macro", with(NoFacts, func(f *Facts) { f.Perfdata, f.PerfdataGiven = depOnly, true }), "dependency",
			"auto-restart held back (dependency): every critical finding (2) is a dependency's, not the worker's own; a restart would not fix it"},
		{"self and dependency", with(NoFacts, func(f *Facts) { f.Perfdata, f.PerfdataGiven = selfCrit, true }), "", ""},
		{"dependency, status.dat", with(NoFacts, sd(critHard+"performance_data="+depOnly+"\n", hostUp)), "dependency", "(2)"},
		{"perfdata macro wins over status.dat", with(NoFacts, func(f *Facts) {
			sd(critHard+"performance_data="+depOnly+"\n", hostUp)(f)
			f.Perfdata, f.PerfdataGiven = selfCrit, true
		}), "", ""},
		{"empty perfdata macro wins over status.dat", with(NoFacts, func(f *Facts) {
			sd(critHard+"performance_data="+depOnly+"\n", hostUp)(f)
			f.Perfdata, f.PerfdataGiven = "", true
		}), "", ""},
		{"perfdata not check_worker's", with(NoFacts, func(f *Facts) { f.Perfdata, f.PerfdataGiven = "'critical_dependency'=3", true }), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const svc = "Worker"
			h := judge(Judgment{}, tt.f, "web1", svc)
			if ruleOf(h) != tt.rule || h != nil && !strings.Contains(h.Text, tt.text) {
				t.Fatalf("held %+v; want rule %q with text %q", h, tt.rule, tt.text)
			}
			if h != nil && !h.RetryAt.IsZero() {
				t.Fatalf("the engine's facts set a retry time: %+v", h)
			}
			// Switched off, the rule holds nothing.
			if h != nil {
				if again := judge(Judgment{Ignore: map[nodestate.Rule]bool{nodestate.Rule(h.Rule): true}}, tt.f, "web1", svc); again != nil {
					t.Fatalf("--ignore %s, still held: %+v", h.Rule, again)
				}
			}
		})
	}
	// status.dat's entries of one service and host say nothing of others.
	f := NoFacts
	f.Status = statusFor(t, critHard+"scheduled_downtime_depth=1\nproblem_has_been_acknowledged=1\n", "has_been_checked=1\ncurrent_state=1\n")
	if h := judge(Judgment{}, f, "web1", "Worker"); ruleOf(h) != "downtime" {
		t.Fatalf("web1/Worker: %+v", h)
	}
	if h := judge(Judgment{}, f, "web1", "Other"); ruleOf(h) != "host" {
		t.Fatalf("web1/Other is judged by its host only: %+v", h)
	}
	if h := judge(Judgment{}, f, "web2", "Worker"); h != nil {
		t.Fatalf("web2 judged by web1's status: %+v", h)
	}
}

func TestParseRules(t *testing.T) {
	got, err := nodestate.ParseRules([]string{"Downtime", " host ", "breaker"})
	if err != nil || len(got) != 3 || !got[nodestate.RuleDowntime] || !got[nodestate.RuleHost] || !got[nodestate.RuleBreaker] || got[nodestate.RuleAck] {
		t.Fatalf("%v, %v", got, err)
	}
	if got, err := nodestate.ParseRules(nil); err != nil || len(got) != 0 {
		t.Fatalf("no --ignore: %v, %v", got, err)
	}
	for _, bad := range []string{"bogus", "", "downtime,ack"} {
		_, err := nodestate.ParseRules([]string{"ack", bad})
		if err == nil || err.Error() != `--ignore "`+bad+`": want one of pause, downtime, ack, host, dependency, breaker` {
			t.Errorf("%q: %v", bad, err)
		}
	}
	want := []nodestate.Rule{"pause", "downtime", "ack", "host", "dependency", "breaker"}
	if len(nodestate.Rules) != len(want) {
		t.Fatalf("rules %v", nodestate.Rules)
	}
	for i := range want {
		if nodestate.Rules[i] != want[i] {
			t.Fatalf("rules %v, want %v (the documented order)", nodestate.Rules, want)
		}
	}
}

func TestBreakerText(t *testing.T) {
	cfg := breaker.Config{Window: 5 * time.Minute, Threshold: 2, Quiet: 2 * time.Minute}
	const head = "auto-restart held back (mass failure): "
	const tail = "; the breaker lets one trial restart through 2m0s after the last new failure"
	for _, tc := range []struct {
		keys  []string
		count int
		cause string
	}{
		{[]string{"web1!A", "web1!B", "web2!C"}, 3, "suspect host web1 (2 of them) or a dependency it shares"},
		{[]string{"web1!A", "web2!B", "web3!C", "web3!D"}, 4, "suspect a dependency shared by 3 hosts"},
		{[]string{"web1!A", "web1!B", "web1!C"}, 3, "suspect host web1 (3 of them) or a dependency it shares"},
		{nil, 0, "suspect a cause they share"},
	} {
		got := breakerText(breaker.Verdict{Keys: tc.keys, Count: tc.count}, cfg)
		want := head + strconv.Itoa(tc.count) + " services needed a restart within 5m0s on this monitoring node (more than 2): " + tc.cause + tail
		if got != want {
			t.Errorf("keys %q:\n got %q\nwant %q", tc.keys, got, want)
		}
	}
}

// TestCommentKey: the kind of a comment, which must not repeat for one
// fault: the words up to the bracketed rule or outcome, or up to the
// first colon; every success is one kind.
func TestCommentKey(t *testing.T) {
	for text, want := range map[string]string{
		"auto-restart ok in 0s (restart demo via 127.0.0.1:5690 after CRITICAL HARD 3)":                 okKey,
		"auto-restart ok: already restarted for this fault by another request (restart demo via x:1)":   okKey,
		"auto-restart held back (downtime): the service is in scheduled downtime; healed when it ends":  "auto-restart held back (downtime)",
		"auto-restart held back (host DOWN): the worker's host is DOWN, so":                             "auto-restart held back (host DOWN)",
		"auto-healing deferred (backoff): restart demo on 127.0.0.1:5690: back-off at the agent (x)":    "auto-healing deferred (backoff)",
		"auto-healing suspended: restart demo on 127.0.0.1:5690: restart budget spent (budget 1/1)":     "auto-healing suspended",
		"auto-restart failed: restart demo on 127.0.0.1:5690: failed (action exit 7 after 0s); a human": "auto-restart failed",
		"auto-healing paused (host web1) by alice until 2025-11-25T00:00:00Z: patching":                 "auto-healing paused (host web1)",
		"no colon, no bracket": "no colon, no bracket",
		"open ( never closed":  "open ( never closed",
	} {
		if got := commentKey(text); got != want {
			t.Errorf("commentKey(%q) = %q, want %q", text, got, want)
		}
	}
}
