package healercheck

import (
	"context"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/lab/rig/rigtest"
	"github.com/selfheal/selfheal/internal/lab/testutil"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/nodestate"
	"github.com/selfheal/selfheal/internal/protocol"
	"github.com/selfheal/selfheal/internal/thresholds"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.Cleanup()
	os.Exit(code)
}

// scrubs replace what a real agent and a real clock make differ from run
// to run; everything else in the golden files is pinned byte for byte.
var scrubs = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`'rtt'=[0-9.]+ms`), "'rtt'=<rtt>ms"},
	{regexp.MustCompile(`round trip [0-9.]+ ms`), "round trip <rtt> ms"},
	{regexp.MustCompile(`127\.0\.0\.1:[0-9]+`), "127.0.0.1:<port>"},
	// The agent's version stamp: "dev" from go test, git's from make build.
	{regexp.MustCompile(`worker_listener [^ ,]+ answers`), "worker_listener <version> answers"},
	{regexp.MustCompile(`worker_listener [^ ,]+,`), "worker_listener <version>,"},
	{regexp.MustCompile(`[0-9hms]+ ago`), "<ago> ago"},
	{regexp.MustCompile(`allowed in [0-9hms]+`), "allowed in <retry>"},
	{regexp.MustCompile(`(?:/tmp|` + regexp.QuoteMeta(os.TempDir()) + `)/[^ :;,)]+`), "<tmp>"},
}

// offsetRe: the offset is a real agent's clock against a skewed one of
// ours; it is pinned to the second (the skew is whole seconds, loopback
// takes microseconds).
var offsetRe = regexp.MustCompile(`'clock_offset'=(-?[0-9]+)ms`)

func scrub(s string) string {
	s = offsetRe.ReplaceAllStringFunc(s, func(m string) string {
		n, _ := strconv.ParseFloat(offsetRe.FindStringSubmatch(m)[1], 64)
		return fmt.Sprintf("'clock_offset'=%.0fms", math.Round(n/1000)*1000+0)
	})
	for _, sc := range scrubs {
		s = sc.re.ReplaceAllString(s, sc.with)
	}
	return strings.ReplaceAll(s, "'clock_offset'=-0ms", "'clock_offset'=0ms")
}

func golden(t *testing.T, name string, res Result, want nagios.State) {
	t.Helper()
	if res.State != want {
		t.Errorf("state %v, want %v\n%s", res.State, want, res.Output)
	}
	got := scrub(res.Output)
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./internal/healercheck -update writes it)", err)
	}
	if got != string(b) {
		t.Errorf("output differs from %s\n--- got\n%s--- want\n%s", path, got, b)
	}
}

// agentCfg is the config of the sample service: defaults as the flags
// give them.
func agentCfg(t *testing.T, l *rigtest.HandlerListener, key string) AgentConfig {
	t.Helper()
	k, err := nodestate.LoadKey(fsutil.Self(), key)
	if err != nil {
		t.Fatal(err)
	}
	return AgentConfig{Addr: l.Addr(), Agent: l.Agent, Key: k, Timeout: 10 * time.Second,
		Offset: pair(t, DefaultOffsetWarn, DefaultOffsetCrit), Budget: pair(t, DefaultBudgetWarn, "")}
}

func pair(t *testing.T, w, c string) thresholds.Pair {
	t.Helper()
	p, err := thresholds.ParsePair(w, c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// restart has the agent restart svc for a new fault, as handle_worker would.
func restart(t *testing.T, l *rigtest.HandlerListener, svc, fault string) protocol.Reply {
	t.Helper()
	cl, err := protocol.NewClient(protocol.ClientConfig{Addr: l.Addr(), Key: l.Key, Agent: l.Agent})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rep, err := cl.Do(ctx, protocol.VerbRestart, svc, fault)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// skewed is the plugin's clock d off the real one.
func skewed(d time.Duration) Deps { return Deps{Now: func() time.Time { return time.Now().Add(d) }} }

// TestAgentStates runs the check against one real worker_listener on
// loopback in each state. Each case first shows the agent restarting
// what it is asked to (the budget it then reports is the agent's own).
func TestAgentStates(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	closed := rigtest.ClosedPort(t)
	tests := []struct {
		name   string
		setup  func(t *testing.T) // restarts before the check
		config func(c *AgentConfig)
		deps   Deps
		state  nagios.State
		want   []string // in the raw output too (not scrubbed)
	}{
		{name: "agent_ok", state: nagios.OK,
			want: []string{"SELFHEAL OK - agent worker1: worker_listener <version> answers, key accepted, 1 service(s) reported |",
				"'demo_budget_left'=3;1:;;0;3", "'demo_restarts'=0;;;0;", "demo: budget 0 of 3 used per 1h; never restarted; status action ok: demo is running"}},
		{name: "agent_warning_clock_skew", deps: skewed(-40 * time.Second), state: nagios.Warning,
			want: []string{"agent clock 40s ahead of ours (breaks the warning range 30000 ms): near the replay window's edge, check NTP", "'clock_offset'=40000ms"}},
		{name: "agent_critical_clock_skew_threshold", deps: skewed(55 * time.Second), state: nagios.Critical,
			want: []string{"agent clock 55s behind ours (breaks the critical range 50000 ms)", "'clock_offset'=-5500"}},
		{name: "agent_critical_clock_outside_window", deps: skewed(11 * time.Minute), state: nagios.Critical,
			want: []string{"refuses our requests: clock skew beyond its replay window (check NTP)", "agent clock 11m behind ours", "'clock_offset'=-6600"}},
		{name: "agent_critical_wrong_key", config: func(c *AgentConfig) {
			k, err := nodestate.LoadKey(fsutil.Self(), rigtest.OtherKeyFile(t))
			if err != nil {
				t.Fatal(err)
			}
			c.Key = k
		}, state: nagios.Critical, want: []string{"refused our signed ping (denied)"}},
		{name: "agent_critical_wrong_agent", config: func(c *AgentConfig) { c.Agent = "worker2" }, state: nagios.Critical,
			want: []string{"SELFHEAL CRITICAL - agent worker2: agent worker2 at 127.0.0.1:", "refused our signed ping (denied)"}},
		{name: "agent_critical_agent_down", config: func(c *AgentConfig) { c.Addr = "127.0.0.1:" + strconv.Itoa(closed) }, state: nagios.Critical,
			want: []string{"unreachable: dial tcp 127.0.0.1:", "connection refused"}},
		{name: "agent_unknown_target_without_status", config: func(c *AgentConfig) { c.Targets = []string{"failing"} }, state: nagios.Unknown,
			want: []string{"failing: the agent has no status action for it (or no such service)"}},
		{name: "agent_restarted_ok", setup: func(t *testing.T) {
			if rep := restart(t, l, "demo", "f1"); rep.Outcome != protocol.OutcomeOK {
				t.Fatalf("restart: %+v", rep)
			}
		}, state: nagios.OK, want: []string{"'demo_budget_left'=2;1:;;0;3", "'demo_budget_used'=1;;;0;3", "'demo_restarts'=1;;;0;", "last restart ok ", "(fault f1), 1 in the last hour"}},
		{name: "agent_warning_budget_nearly_spent", setup: func(t *testing.T) { restart(t, l, "demo", "f2") },
			config: func(c *AgentConfig) { c.Budget = pair(t, "2:", "") }, state: nagios.Warning,
			want: []string{"SELFHEAL WARNING - agent worker1: demo: restart budget nearly spent (2 of 3 used per 1h, 1 left)", "'demo_budget_left'=1;2:;;0;3"}},
		{name: "agent_warning_budget_spent", setup: func(t *testing.T) { restart(t, l, "demo", "f3") }, state: nagios.Warning,
			want: []string{"demo: restart budget spent (3 of 3 used per 1h, 0 left)", "'demo_budget_left'=0;1:;;0;3", "'demo_restarts'=3;;;0;"}},
		{name: "agent_critical_budget_spent_by_threshold", config: func(c *AgentConfig) { c.Budget = pair(t, "2:", "1:") }, state: nagios.Critical,
			want: []string{"SELFHEAL CRITICAL - agent worker1: demo: restart budget spent"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup(t)
			}
			cfg := agentCfg(t, l, l.KeyFile)
			if tt.config != nil {
				tt.config(&cfg)
			}
			res := RunAgent(context.Background(), cfg, tt.deps)
			for _, w := range tt.want {
				if !strings.Contains(scrub(res.Output), w) {
					t.Errorf("output lacks %q:\n%s", w, res.Output)
				}
			}
			golden(t, tt.name, res, tt.state)
		})
	}
	// The check asks, it never heals: only the three restarts above ran.
	if n := l.Actions(t); n != 3 {
		t.Fatalf("%d actions ran, want the 3 restarts of the setup", n)
	}
}

// TestAgentNeverHangs: an agent that accepts and never answers is
// CRITICAL within -t, not a hang.
func TestAgentNeverHangs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() { // accepts, reads nothing, answers nothing; closed with ln's test
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	k, err := protocol.GenerateFleetKey("fleet1")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res := RunAgent(context.Background(), AgentConfig{Addr: ln.Addr().String(), Agent: "worker1", Key: k, Timeout: 500 * time.Millisecond}, Deps{})
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("took %s with -t 0.5", el)
	}
	if res.State != nagios.Critical || !strings.Contains(res.Output, "did not answer within 500ms") {
		t.Fatalf("%v %s", res.State, res.Output)
	}
}
