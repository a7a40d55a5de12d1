package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/rig"
)

var bigBudget = rig.Budget{Max: 100, Window: "1h", MinGap: "0s"}

// TestEventJudgeFlagErrors: the engine's facts and the rules' switches
// are validated: a typo in the handler's command definition is a usage
// error, not a fact that silently holds nothing (or everything) back.
func TestEventJudgeFlagErrors(t *testing.T) {
	s := newSetup(t)
	ev := []string{"CRITICAL", "HARD", "3", "127.0.0.1", "web1", "Worker"}
	tests := []struct {
		flags []string
		msg   string
	}{
		{[]string{"--host-state", "BOGUS"}, `--host-state "BOGUS": want UP, DOWN or UNREACHABLE`},
		{[]string{"--host-state", "$HOSTSTATE$"}, `--host-state "$HOSTSTATE$": want UP, DOWN or UNREACHABLE`},
		{[]string{"--ack=-1"}, `--ack "-1": want a number, 0 or more`},
		{[]string{"--ack", "yes"}, `--ack "yes": want a number, 0 or more`},
		{[]string{"--service-downtime", "x"}, `--service-downtime "x": want a number, 0 or more`},
		{[]string{"--host-downtime=-2"}, `--host-downtime "-2": want a number, 0 or more`},
		{[]string{"--ignore", "bogus"}, `--ignore "bogus": want one of pause, downtime, ack, host, dependency, breaker`},
		{[]string{"--ignore", "host,acks"}, `--ignore "acks": want one of`},
		{[]string{"--breaker-threshold", "0"}, "breaker threshold 0: must be at least 1"},
		{[]string{"--breaker-window=-1s"}, "breaker window -1s: must be positive"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.flags, " "), func(t *testing.T) {
			o := runBin(t, nil, s.bin, append(s.event(append([]string{"--fault", "7"}, tt.flags...)...), ev...)...)
			if o.code != 3 {
				t.Fatalf("exit %d, want 3: %q %q", o.code, o.stdout, o.stderr)
			}
			if line := oneLine(t, o); !strings.HasPrefix(line, "handle_worker: usage error: ") || !strings.Contains(line, tt.msg) {
				t.Fatalf("line %q does not contain %q", line, tt.msg)
			}
		})
	}
	if s.l.Actions(t) != 0 {
		t.Fatalf("%d actions", s.l.Actions(t))
	}
}

// TestEventJudgeFlags: each fact as Nagios passes it holds the restart
// back (exit 1, no request, one comment); an empty macro is a fact not
// given; --ignore switches the rule off. The first run restarts, so the
// rig is shown to heal.
func TestEventJudgeFlags(t *testing.T) {
	s := newSetup(t, bigBudget)
	ev := []string{"CRITICAL", "HARD", "3", "127.0.0.1", "web1", "Worker"}
	statusFile := filepath.Join(t.TempDir(), "status.dat")
	status := fmt.Sprintf("info {\n\tcreated=%d\n\t}\nservicestatus {\n\thost_name=web1\n\tservice_description=Worker\n\thas_been_checked=1\n\tcurrent_state=2\n\tstate_type=1\n\tproblem_has_been_acknowledged=1\n\t}\n", time.Now().Unix())
	if err := os.WriteFile(statusFile, []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	const prefix = "handle_worker: web1/Worker CRITICAL HARD 3: "
	steps := []struct {
		flags   []string
		code    int
		line    string
		actions int
	}{
		{[]string{"--host-state", "UP", "--service-downtime", "0", "--host-downtime", "0", "--ack", "0"}, 0, "restart demo on " + s.l.Addr() + " ok in", 1},
		{[]string{"--host-state", "DOWN"}, 1, "auto-restart held back (host DOWN): the worker's host is DOWN", 1},
		{[]string{"--host-state", "unreachable"}, 1, "auto-restart held back (host UNREACHABLE)", 1},
		{[]string{"--host-state", "DOWN", "--ignore", "host"}, 0, "ok in", 2},
		{[]string{"--service-downtime", "1"}, 1, "auto-restart held back (downtime): the service is in scheduled downtime", 2},
		{[]string{"--host-downtime", "1"}, 1, "auto-restart held back (downtime): the host is in scheduled downtime", 2},
		{[]string{"--service-downtime", "", "--host-state", "", "--ack", ""}, 0, "ok in", 3},
		{[]string{"--ack", "2"}, 1, "auto-restart held back (acknowledged)", 3},
		{[]string{"--perfdata='critical_self'=0;;;0; 'critical_dependency'=1;;;0;"}, 1, "auto-restart held back (dependency): every critical finding (1) is a dependency's", 3},
		{[]string{"--perfdata='critical_self'=1;;;0; 'critical_dependency'=1;;;0;"}, 0, "ok in", 4},
		{[]string{"--perfdata="}, 0, "ok in", 5},
		{[]string{"--status-file", statusFile}, 1, "auto-restart held back (acknowledged)", 5},
		{[]string{"--status-file", statusFile, "--ack", "0"}, 0, "ok in", 6},
		{[]string{"--status-file", statusFile + ".nope"}, 0, "ok in", 7},
		{[]string{"--service-downtime", "1", "--ack", "1", "--ignore", "downtime,ack"}, 0, "ok in", 8},
	}
	for i, st := range steps {
		// A new fault each step: the agent restarts once per fault.
		o := runBin(t, nil, s.bin, append(s.event(append([]string{"--fault", fmt.Sprint(10 + i)}, st.flags...)...), ev...)...)
		line := oneLine(t, o)
		if o.code != st.code || !strings.HasPrefix(line, prefix) || !strings.Contains(line, st.line) {
			t.Fatalf("step %d %q: exit %d %q; want exit %d and %q", i, st.flags, o.code, line, st.code, st.line)
		}
		if got := s.l.Actions(t); got != st.actions {
			t.Fatalf("step %d %q: %d actions, want %d", i, st.flags, got, st.actions)
		}
		cmds := s.commands()
		if st.code == 1 && (len(cmds) != 1 || !strings.Contains(cmds[0], "] ADD_SVC_COMMENT;web1;Worker;0;handle_worker;auto-restart held back (")) {
			t.Fatalf("step %d: command file %q", i, cmds)
		}
	}
	// The unreadable status file is logged, not fatal.
	if b, _ := os.ReadFile(s.log); !strings.Contains(string(b), "status file unreadable, its facts unused") {
		t.Fatalf("log: %s", b)
	}
}

// TestPauseResumeStatus: pause and resume as on-call types them, the
// event handler honouring the pause, and status showing it.
func TestPauseResumeStatus(t *testing.T) {
	s := newSetup(t)
	ev := []string{"CRITICAL", "HARD", "3", "127.0.0.1", "web1", "Worker"}
	sd := []string{"--state-dir", s.state}

	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"pause", "--service", "Worker", "--reason", "r"}, "--service needs --host"},
		{[]string{"pause", "--for", "0s", "--reason", "r"}, "--for 0s: want more than 0 and at most 168h0m0s"},
		{[]string{"pause", "--for", "169h", "--reason", "r"}, "--for 169h0m0s: want more than 0 and at most 168h0m0s"},
		{[]string{"pause", "--host", "web1"}, "--reason"},
		{[]string{"resume", "--service", "Worker"}, "--service needs --host"},
		{[]string{"status", "--ignore", "bogus"}, `--ignore "bogus"`},
	} {
		o := runBin(t, nil, s.bin, append(tc.args, sd...)...)
		if o.code != 3 || !strings.HasPrefix(o.stdout, "handle_worker: usage error: ") || !strings.Contains(o.stdout, tc.msg) {
			t.Fatalf("%q: exit %d %q; want 3 and %q", tc.args, o.code, o.stdout, tc.msg)
		}
	}

	o := runBin(t, nil, s.bin, append([]string{"status"}, sd...)...)
	if o.code != 0 || o.stdout != "pauses: none\nzone rule: not holding (at most 10 failing services restarted at once; 0 restarts from here not yet seen healed)\nbreaker: closed (0 of at most 10 services needed a restart within 5m0s)\nHOST/SERVICE  LAST ANSWER  AGO  BUDGET  HELD BACK\n" {
		t.Errorf("status, nothing yet: %d %q", o.code, o.stdout) // not fatal: the rest does not depend on it
	}

	o = runBin(t, nil, s.bin, append([]string{"pause", "--host", "web1", "--reason", "kernel patch", "--for", "30m"}, sd...)...)
	m := regexp.MustCompile(`^paused auto-healing for host web1 until (\S+Z) \(30m0s\): kernel patch\n$`).FindStringSubmatch(o.stdout)
	if o.code != 0 || m == nil {
		t.Fatalf("pause: %d %q", o.code, o.stdout)
	}
	until, err := time.Parse(time.RFC3339, m[1])
	if err != nil || time.Until(until) > 30*time.Minute || time.Until(until) < 29*time.Minute {
		t.Fatalf("until %v (%v)", until, err)
	}

	o = runBin(t, nil, s.bin, append(s.event("--fault", "9"), ev...)...)
	if line := oneLine(t, o); o.code != 1 || !regexp.MustCompile(`: auto-healing paused \(host web1\) by .+ until `+m[1]+": kernel patch; `handle_worker resume` lets it heal$").MatchString(line) {
		t.Fatalf("event while paused: %d %q", o.code, line)
	}
	if s.l.Actions(t) != 0 {
		t.Fatal("a paused service was restarted")
	}

	o = runBin(t, nil, s.bin, append([]string{"status"}, sd...)...)
	if o.code != 0 || !regexp.MustCompile(`(?m)^paused: host web1 by .+ until `+m[1]+` \(\S+ left\): kernel patch$`).MatchString(o.stdout) ||
		!regexp.MustCompile(`(?m)^web1/Worker +held +\S+ ago +- +pause since \S+ \(fault 9\)$`).MatchString(o.stdout) {
		t.Fatalf("status while paused: %d\n%s", o.code, o.stdout)
	}

	o = runBin(t, nil, s.bin, append([]string{"resume", "--host", "web1"}, sd...)...)
	if o.code != 0 || o.stdout != "resumed auto-healing for host web1; reevaluate heals what the pause held back\n" {
		t.Fatalf("resume: %d %q", o.code, o.stdout)
	}
	o = runBin(t, nil, s.bin, append([]string{"resume", "--host", "web1"}, sd...)...)
	if o.code != 1 || o.stdout != "no pause for host web1; nothing changed\n" {
		t.Fatalf("resume again: %d %q", o.code, o.stdout)
	}
	o = runBin(t, nil, s.bin, append([]string{"resume"}, sd...)...)
	if o.code != 1 || o.stdout != "no pause for every service on this node; nothing changed\n" {
		t.Fatalf("resume of the node: %d %q", o.code, o.stdout)
	}
	o = runBin(t, nil, s.bin, append(s.event("--fault", "9"), ev...)...)
	if o.code != 0 || !strings.Contains(oneLine(t, o), "ok in") || s.l.Actions(t) != 1 {
		t.Fatalf("after resume: %d %q", o.code, o.stdout)
	}

	// A service's pause, with a comment on it.
	s.commands()
	o = runBin(t, nil, s.bin, append([]string{"pause", "--host", "web1", "--service", "Worker", "--reason", "db migration", "--command-file", s.fifo}, sd...)...)
	if o.code != 0 || !strings.HasPrefix(o.stdout, "paused auto-healing for web1/Worker until ") {
		t.Fatalf("pause a service: %d %q", o.code, o.stdout)
	}
	if c := s.commands(); len(c) != 1 || !regexp.MustCompile(`^\[\d+\] ADD_SVC_COMMENT;web1;Worker;0;handle_worker;auto-healing paused \(web1/Worker\) by .+ until \S+Z: db migration$`).MatchString(c[0]) {
		t.Fatalf("command file %q", c)
	}

	o = runBin(t, nil, s.bin, "status", "--state-dir", filepath.Join(s.state, "nope"))
	if o.code != 1 || !strings.HasPrefix(o.stdout, "handle_worker status: state directory: ") {
		t.Fatalf("status of a missing dir: %d %q", o.code, o.stdout)
	}
}

// TestReevaluateCommand: the plugin as the engine runs it: a fault held
// for a DOWN host is healed once status.dat shows the host UP and the
// fault still HARD CRITICAL.
func TestReevaluateCommand(t *testing.T) {
	s := newSetup(t)
	ev := []string{"CRITICAL", "HARD", "3", "127.0.0.1", "web1", "Worker"}
	statusFile := filepath.Join(t.TempDir(), "status.dat")
	write := func(created time.Time, hostState int) {
		t.Helper()
		b := fmt.Sprintf("info {\n\tcreated=%d\n\t}\nhoststatus {\n\thost_name=web1\n\thas_been_checked=1\n\tcurrent_state=%d\n\t}\n"+
			"servicestatus {\n\thost_name=web1\n\tservice_description=Worker\n\thas_been_checked=1\n\tcurrent_state=2\n\tstate_type=1\n\tcurrent_problem_id=9\n\t}\n",
			created.Unix(), hostState)
		if err := os.WriteFile(statusFile, []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	reeval := func(extra ...string) out {
		return runBin(t, nil, s.bin, append([]string{"reevaluate", "--key-file", s.l.KeyFile, "--status-file", statusFile,
			"--state-dir", s.state, "--command-file", s.fifo, "--log-file", s.log}, extra...)...)
	}
	o := reeval("--ignore", "bogus")
	if o.code != 3 || o.stdout != `UNKNOWN - handle_worker reevaluate: --ignore "bogus": want one of pause, downtime, ack, host, dependency, breaker`+"\n" {
		t.Fatalf("bad --ignore: %d %q", o.code, o.stdout)
	}
	o = reeval("--deadline", "10s", "--per-request", "20s")
	if o.code != 3 || !strings.HasPrefix(o.stdout, "UNKNOWN - handle_worker reevaluate: --deadline and --per-request") {
		t.Fatalf("bad deadlines: %d %q", o.code, o.stdout)
	}

	o = runBin(t, nil, s.bin, append(s.event("--fault", "9", "--host-state", "DOWN"), ev...)...)
	if o.code != 1 || s.l.Actions(t) != 0 {
		t.Fatalf("held: %d %q", o.code, o.stdout)
	}
	write(time.Now().Add(-10*time.Minute), 0)
	o = reeval()
	if o.code != 3 || !strings.HasPrefix(o.stdout, "UNKNOWN - status file is 10m") || s.l.Actions(t) != 0 {
		t.Fatalf("stale status file: %d %q", o.code, o.stdout)
	}
	// The engine writes status.dat after the hold: a second later, so
	// that it is newer than the hold in whole seconds.
	write(time.Now().Add(time.Second), 1)
	o = reeval()
	if o.code != 1 || !strings.HasPrefix(o.stdout, "WARNING - 1 heal(s) held back: web1/Worker (host); 0 healed in this run |held=1 healed=0 failed=0 cleared=0\n"+
		"web1/Worker: held (host): web1/Worker CRITICAL HARD 1: auto-restart held back (host DOWN)") || s.l.Actions(t) != 0 {
		t.Fatalf("host still DOWN: %d %q", o.code, o.stdout)
	}
	write(time.Now().Add(time.Second), 0)
	o = reeval()
	if o.code != 0 || !strings.HasPrefix(o.stdout, "OK - no heal held back; 1 healed in this run |held=0 healed=1 failed=0 cleared=0\n"+
		"web1/Worker: healed (host): web1/Worker CRITICAL HARD 1: restart demo on "+s.l.Addr()+" ok in") || s.l.Actions(t) != 1 {
		t.Fatalf("host UP: %d %q", o.code, o.stdout)
	}
	if o.stderr != "" {
		t.Fatalf("stderr with --log-file: %q", o.stderr)
	}
}
