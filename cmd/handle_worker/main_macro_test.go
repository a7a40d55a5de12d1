package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/testutil"
)

// sampleCommandLine is the command_line of the named command in the
// shipped nagios-config/nagios4/commands.cfg.
func sampleCommandLine(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testutil.ModuleRoot(t), "nagios-config", "nagios4", "commands.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)command_name\s+` + regexp.QuoteMeta(name) + `\s*\n\s*command_line\s+([^\n]+)`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("commands.cfg: no %s", name)
	}
	return strings.TrimSpace(m[1])
}

// expandMacros does what Nagios does to a command line: every $NAME$ is
// replaced by its value, verbatim; an unknown macro is a test bug.
func expandMacros(t *testing.T, line string, vals map[string]string) string {
	t.Helper()
	return regexp.MustCompile(`\$[A-Z0-9_]+\$`).ReplaceAllStringFunc(line, func(m string) string {
		v, ok := vals[strings.Trim(m, "$")]
		if !ok {
			t.Fatalf("the sample uses %s, which the test does not know", m)
		}
		return v
	})
}

// TestSampleEmptyMacros runs the shipped event handler command line as
// Nagios runs it (macros expanded, the line through /bin/sh -c, since it
// holds quotes) with each macro empty in turn, as a reload empties
// $STATUSDATAFILE$. An empty optional value heals as if not given; an
// empty required one sends nothing, says which on stdout and on the
// service, and is never a usage error.
func TestSampleEmptyMacros(t *testing.T) {
	s := newSetup(t, bigBudget)
	line := sampleCommandLine(t, "selfheal-handle-worker")
	dir := t.TempDir()
	statusFile, ackedFile := filepath.Join(dir, "status.dat"), filepath.Join(dir, "acked.dat")
	status := func(ack int) string {
		return fmt.Sprintf("info {\n\tcreated=1\n\t}\nservicestatus {\n\thost_name=web1\n\tservice_description=Worker Svc\n\thas_been_checked=1\n"+
			"\tcurrent_state=2\n\tstate_type=1\n\tproblem_has_been_acknowledged=%d\n\t}\n", ack)
	}
	mainCfg := filepath.Join(dir, "nagios.cfg")
	for p, c := range map[string]string{statusFile: status(0), ackedFile: status(1),
		mainCfg: "# a site's nagios.cfg\nstatus_file=" + statusFile + "\ncommand_file=" + s.fifo + "\n"} {
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	given := map[string]string{
		"USER1": filepath.Dir(s.bin), "USER3": s.l.KeyFile, "USER4": s.state, "USER5": s.log, "USER6": rig.DefaultHandlerArgs,
		"COMMANDFILE": s.fifo, "STATUSDATAFILE": statusFile, "MAINCONFIGFILE": mainCfg,
		"_SERVICEWORKER_TARGET": "demo", "_HOSTLISTENER_PORT": itoa(s.l.Port), "SERVICEPROBLEMID": "", "LASTSERVICESTATECHANGE": "",
		"_SERVICEHEAL_RECHECK": "1s", "SERVICEDOWNTIME": "0", "HOSTDOWNTIME": "0", "HOSTSTATE": "UP",
		"SERVICEPERFDATA": "'critical_self'=1;;;0; 'critical_dependency'=0;;;0;",
		"SERVICESTATE":    "CRITICAL", "SERVICESTATETYPE": "HARD", "SERVICEATTEMPT": "3",
		"HOSTADDRESS": "127.0.0.1", "HOSTNAME": "web1", "SERVICEDESC": "Worker Svc",
	}
	const healed, required = "healed", "required"
	cases := []struct {
		macro, want string
		over        map[string]string // more values for this case
		comment     bool              // an empty required value: a comment on the service
	}{
		{"", healed, nil, false}, // the rig heals with every macro given
		{"COMMANDFILE", healed, nil, false},
		{"STATUSDATAFILE", healed, nil, false},
		{"MAINCONFIGFILE", healed, nil, false},
		{"SERVICEPROBLEMID", healed, nil, false},
		{"LASTSERVICESTATECHANGE", healed, nil, false},
		{"_SERVICEHEAL_RECHECK", healed, nil, false},
		{"SERVICEDOWNTIME", healed, nil, false},
		{"HOSTDOWNTIME", healed, nil, false},
		{"HOSTSTATE", healed, nil, false},
		{"SERVICEPERFDATA", healed, nil, false},
		// The status file of nagios.cfg is read: its ack holds the restart.
		{"STATUSDATAFILE", "auto-restart held back (acknowledged)", map[string]string{"STATUSDATAFILE": "", "MAINCONFIGFILE": mainCfg + ".acked"}, false},
		{"SERVICESTATE", required, nil, true},
		{"SERVICESTATETYPE", required, nil, true},
		{"SERVICEATTEMPT", required, nil, true},
		{"HOSTADDRESS", required, nil, true},
		{"_SERVICEWORKER_TARGET", required, nil, true},
		{"HOSTNAME", required, nil, false},
		{"SERVICEDESC", required, nil, false},
	}
	if err := os.WriteFile(mainCfg+".acked", []byte("status_file="+ackedFile+"\ncommand_file="+s.fifo+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The USERn macros are left out: Nagios refuses an empty one. An
	// empty _HOSTLISTENER_PORT is 5690 (TestParsePort): asking there would
	// wait out the deadline on a port no agent of this test holds.
	for i, tc := range cases {
		t.Run(tc.macro, func(t *testing.T) {
			vals := map[string]string{}
			for k, v := range given {
				vals[k] = v
			}
			vals["SERVICEPROBLEMID"] = itoa(100 + i) // a new fault each: the agent restarts once per fault
			vals["LASTSERVICESTATECHANGE"] = strconv.FormatInt(time.Now().Unix(), 10)
			if tc.macro != "" {
				vals[tc.macro] = ""
			}
			for k, v := range tc.over {
				vals[k] = v
			}
			before := s.l.Actions(t)
			s.commands() // drain
			o := runBin(t, nil, "/bin/sh", "-c", expandMacros(t, line, vals))
			got := oneLine(t, o)
			if strings.Contains(got, "usage error") {
				t.Fatalf("exit %d %q: an empty %s is not a usage error", o.code, got, tc.macro)
			}
			acted := s.l.Actions(t) - before
			cmds := strings.Join(s.commands(), "\n")
			switch tc.want {
			case healed:
				if o.code != 0 || !strings.Contains(got, "restart demo on "+s.l.Addr()+" ok in") || acted != 1 {
					t.Fatalf("exit %d %q, %d restarts; want healed", o.code, got, acted)
				}
				if !strings.Contains(cmds, "ADD_SVC_COMMENT;web1;Worker Svc;0;handle_worker;auto-restart ok") {
					t.Fatalf("no success comment in the command file: %q", cmds)
				}
			case required:
				want := "handle_worker: not run: the engine passed an empty " + map[string]string{
					"SERVICESTATE": "STATE", "SERVICESTATETYPE": "STATETYPE", "SERVICEATTEMPT": "ATTEMPT", "HOSTADDRESS": "HOSTADDRESS",
					"HOSTNAME": "HOSTNAME", "SERVICEDESC": "SERVICEDESC", "_SERVICEWORKER_TARGET": "--target"}[tc.macro] + " ($" + tc.macro + "$): nothing was sent"
				if o.code != 3 || got != want || acted != 0 {
					t.Fatalf("exit %d %q, %d restarts; want 3, %q, none", o.code, got, acted, want)
				}
				hasComment := strings.Contains(cmds, "ADD_SVC_COMMENT;web1;Worker Svc;1;handle_worker;auto-healing impossible: the engine passed an empty")
				if hasComment != tc.comment {
					t.Fatalf("comment on the service %v, want %v: %q", hasComment, tc.comment, cmds)
				}
			default:
				if !strings.Contains(got, tc.want) || acted != 0 {
					t.Fatalf("exit %d %q, %d restarts; want %q", o.code, got, acted, tc.want)
				}
			}
		})
	}
	// The fallback says where it read the status file from.
	if b, _ := os.ReadFile(s.log); !strings.Contains(string(b), "--status-file is empty (Nagios expanded $STATUSDATAFILE$ to nothing): using status_file="+statusFile+" from "+mainCfg) {
		t.Fatalf("log: %s", b)
	}
}

// TestSampleReevaluateEmptyStatusFile: the shipped reevaluate command
// line after a reload ($STATUSDATAFILE$ empty) reads the status file that
// nagios.cfg names, and says why when it cannot.
func TestSampleReevaluateEmptyStatusFile(t *testing.T) {
	s := newSetup(t)
	line := sampleCommandLine(t, "selfheal-reevaluate")
	dir := t.TempDir()
	statusFile, mainCfg := filepath.Join(dir, "status.dat"), filepath.Join(dir, "nagios.cfg")
	if err := os.WriteFile(statusFile, []byte(fmt.Sprintf("info {\n\tcreated=%d\n\t}\n", time.Now().Unix())), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mainCfg, []byte("status_file="+statusFile+"\ncommand_file="+s.fifo+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	vals := map[string]string{"USER1": filepath.Dir(s.bin), "USER3": s.l.KeyFile, "USER4": s.state, "USER5": s.log,
		"USER6": rig.DefaultHandlerArgs, "COMMANDFILE": s.fifo, "STATUSDATAFILE": "", "MAINCONFIGFILE": mainCfg}
	o := runBin(t, nil, "/bin/sh", "-c", expandMacros(t, line, vals))
	if o.code != 0 || o.stdout != "OK - no heal held back; 0 healed in this run |held=0 healed=0 failed=0 cleared=0\n" {
		t.Fatalf("exit %d %q", o.code, o.stdout)
	}
	vals["MAINCONFIGFILE"] = mainCfg + ".nope"
	o = runBin(t, nil, "/bin/sh", "-c", expandMacros(t, line, vals))
	want := "UNKNOWN - handle_worker reevaluate: --status-file is empty (Nagios expanded $STATUSDATAFILE$ to nothing, as it does after a reload) and the fallback failed: Nagios main config: open " + mainCfg + ".nope: no such file or directory\n"
	if o.code != 3 || o.stdout != want {
		t.Fatalf("exit %d %q; want 3 %q", o.code, o.stdout, want)
	}
}
