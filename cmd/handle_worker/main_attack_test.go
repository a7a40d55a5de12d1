package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/testutil"
)

// TestHostileWorkerThroughShippedLines: a worker (or whoever answers on
// its port) that says CRITICAL with metric names, units and check names
// full of shell syntax. The real check_worker renders it; its perfdata is
// passed to the shipped event handler command line as Nagios would pass
// $SERVICEPERFDATA$ with illegal_macro_output_chars unset (nothing
// stripped), through /bin/sh -c. No command of the worker's runs, the
// handler heals (the worker cannot fake critical_self=0 to hold it), and
// exactly one restart runs.
func TestHostileWorkerThroughShippedLines(t *testing.T) {
	s := newSetup(t, bigBudget)
	pwn, err := os.MkdirTemp("", "pw") // short: names are at most 128 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pwn) })
	sh := func(n int) []string {
		p := filepath.Join(pwn, fmt.Sprint("p", n))
		return []string{"$(touch " + p + ")", "`touch " + p + "`", "\"; touch " + p + "; \"", "'; touch " + p + "; '", "\\\"$(touch " + p + ")", "ok | x=1 \"$(touch " + p + ")\"\n| `touch " + p + "`"}
	}
	var metrics, checks []string
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	for i, v := range sh(1) {
		if !strings.Contains(v, "\n") { // a name with a newline breaks the contract: UNKNOWN, nothing to pass on
			metrics = append(metrics, fmt.Sprintf(`{"name": %s, "value": %d, "uom": %s}`, q(v), i, q(v)))
		}
		checks = append(checks, fmt.Sprintf(`{"name": %s, "status": "critical", "message": %s}`, q(sh(2)[i]), q(sh(3)[i])))
	}
	metrics = append(metrics, `{"name": "critical_self", "value": 0}`, `{"name": "CRITICAL_SELF", "value": 0}`,
		`{"name": "critical_dependency", "value": 99}`)
	doc := `{"status": "critical", "message": "fine | x=1 $(touch ` + filepath.Join(pwn, "p4") + `)", "checks": [` + strings.Join(checks, ",") +
		`], "metrics": [` + strings.Join(metrics, ",") + `]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(doc))
	}))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	o := runBin(t, nil, testutil.Binary(t, "check_worker"), "--hostname=127.0.0.1", fmt.Sprintf("--port=%d", port), "--path=/status", "--timeout=5")
	if o.code != 2 {
		t.Fatalf("check_worker exit %d, want CRITICAL:\n%s\n%s", o.code, o.stdout, o.stderr)
	}
	// $SERVICEPERFDATA$ is the perfdata of the first line and of every
	// later line after a '|'.
	var perf []string
	for i, l := range strings.Split(strings.TrimRight(o.stdout, "\n"), "\n") {
		if j := strings.Index(l, "|"); j >= 0 {
			perf = append(perf, strings.TrimSpace(l[j+1:]))
		} else if i > 0 && len(perf) > 1 {
			perf = append(perf, l)
		}
	}
	perfdata := strings.Join(perf, " ")
	t.Logf("perfdata: %s", perfdata)
	statusFile := filepath.Join(t.TempDir(), "status.dat")
	os.WriteFile(statusFile, []byte("info {\n\tcreated=1\n\t}\n"), 0o644)
	vals := map[string]string{
		"USER1": filepath.Dir(s.bin), "USER3": s.l.KeyFile, "USER4": s.state, "USER5": s.log, "USER6": rig.DefaultHandlerArgs,
		"COMMANDFILE": s.fifo, "STATUSDATAFILE": statusFile, "MAINCONFIGFILE": "",
		"_SERVICEWORKER_TARGET": "demo", "_HOSTLISTENER_PORT": itoa(s.l.Port), "SERVICEPROBLEMID": "77",
		"_SERVICEHEAL_RECHECK": "1s", "SERVICEDOWNTIME": "0", "HOSTDOWNTIME": "0", "HOSTSTATE": "UP",
		"LASTSERVICESTATECHANGE": "", "SERVICEPERFDATA": perfdata, "SERVICESTATE": "CRITICAL", "SERVICESTATETYPE": "HARD", "SERVICEATTEMPT": "3",
		"HOSTADDRESS": "127.0.0.1", "HOSTNAME": "web1", "SERVICEDESC": "Worker Svc",
	}
	before := s.l.Actions(t)
	o = runBin(t, nil, "/bin/sh", "-c", expandMacros(t, sampleCommandLine(t, "selfheal-handle-worker"), vals))
	got := oneLine(t, o)
	if ents, _ := os.ReadDir(pwn); len(ents) > 0 {
		t.Fatalf("the worker's command ran through the handler's command line: %v", ents)
	}
	if o.code != 0 || !strings.Contains(got, "restart demo on "+s.l.Addr()+" ok in") || s.l.Actions(t)-before != 1 {
		t.Fatalf("exit %d %q, %d restarts; want healed once", o.code, got, s.l.Actions(t)-before)
	}
}

// TestOddNamesThroughShippedLine: service descriptions Nagios accepts
// (illegal_object_name_chars as Debian ships it forbids `~!$%^&*|'"<>?,()=;
// ';' starts a comment in its object files, and a trailing '\' leaves the
// description empty, which nagios4 -v refuses) through the shipped event
// handler line and /bin/sh -c: each heals once, and the comment names the
// service as Nagios knows it.
func TestOddNamesThroughShippedLine(t *testing.T) {
	s := newSetup(t, bigBudget)
	statusFile := filepath.Join(t.TempDir(), "status.dat")
	os.WriteFile(statusFile, []byte("info {\n\tcreated=1\n\t}\n"), 0o644)
	for i, desc := range []string{"Worker #1", `Worker\n`, `C:\ x`, "Worker {x} [y]", "Wörker ü", "-h", "--target=evil"} {
		t.Run(desc, func(t *testing.T) {
			vals := map[string]string{
				"USER1": filepath.Dir(s.bin), "USER3": s.l.KeyFile, "USER4": s.state, "USER5": s.log, "USER6": rig.DefaultHandlerArgs,
				"COMMANDFILE": s.fifo, "STATUSDATAFILE": statusFile, "MAINCONFIGFILE": "",
				"_SERVICEWORKER_TARGET": "demo", "_HOSTLISTENER_PORT": itoa(s.l.Port), "SERVICEPROBLEMID": itoa(200 + i), "LASTSERVICESTATECHANGE": "",
				"_SERVICEHEAL_RECHECK": "1s", "SERVICEDOWNTIME": "0", "HOSTDOWNTIME": "0", "HOSTSTATE": "UP",
				"SERVICEPERFDATA": "'critical_self'=1;;;0; 'critical_dependency'=0;;;0;", "SERVICESTATE": "CRITICAL", "SERVICESTATETYPE": "HARD",
				"SERVICEATTEMPT": "3", "HOSTADDRESS": "127.0.0.1", "HOSTNAME": "web1", "SERVICEDESC": desc,
			}
			before := s.l.Actions(t)
			s.commands()
			o := runBin(t, nil, "/bin/sh", "-c", expandMacros(t, sampleCommandLine(t, "selfheal-handle-worker"), vals))
			if o.code != 0 || !strings.Contains(o.stdout, "restart demo on "+s.l.Addr()+" ok in") || s.l.Actions(t)-before != 1 {
				t.Fatalf("exit %d %q %q, %d restarts; want healed once", o.code, o.stdout, o.stderr, s.l.Actions(t)-before)
			}
			if cmds := strings.Join(s.commands(), "\n"); !strings.Contains(cmds, ";web1;"+desc+";0;handle_worker;auto-restart ok") {
				t.Fatalf("comment: %q", cmds)
			}
		})
	}
}

// TestNewFaultInsideMinGapNotHealed: issue 17. The worker was restarted
// for fault 7, recovered, and crashed again a minute later (fault 8, a
// new one: Nagios saw OK in between). No restart covers fault 8, so the
// handler must not tell Nagios "auto-restart ok".
func TestNewFaultInsideMinGapNotHealed(t *testing.T) {
	s := newSetup(t, rig.Budget{Max: 3, Window: "1h", MinGap: "2m"})
	ev := []string{"CRITICAL", "HARD", "3", "127.0.0.1", "web1", "Worker Svc"}
	if o := runBin(t, nil, s.bin, append(s.event("--fault", "7"), ev...)...); o.code != 0 || s.l.Actions(t) != 1 {
		t.Fatalf("first fault: %d %q", o.code, o.stdout)
	}
	if o := runBin(t, nil, s.bin, append(s.event("--fault", "0"), "OK", "HARD", "3", "127.0.0.1", "web1", "Worker Svc")...); o.code != 0 {
		t.Fatalf("recovery: %d %q", o.code, o.stdout)
	}
	s.commands()
	o := runBin(t, nil, s.bin, append(s.event("--fault", "8"), ev...)...)
	cmds := strings.Join(s.commands(), "\n")
	if s.l.Actions(t) == 1 && strings.Contains(cmds, "auto-restart ok") {
		t.Fatalf("a new fault no restart covered is reported healed: %q, comment %q", o.stdout, cmds)
	}
}
