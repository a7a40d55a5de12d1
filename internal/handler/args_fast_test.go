package handler

import (
	"flag"
	"io"
	"math/rand"
	"reflect"
	"slices"
	"testing"

	"github.com/alecthomas/kong"

	"github.com/selfheal/selfheal/internal/cli"
	"github.com/selfheal/selfheal/internal/cli/fastgen"
	"github.com/selfheal/selfheal/internal/nodestate"
)

var updateTable = flag.Bool("update-table", false, "rewrite args_gen.go from the grammar")

// TestFastEventGenerated: args_gen.go is what fastgen makes of kong's
// model of event now (-update-table rewrites it).
func TestFastEventGenerated(t *testing.T) {
	var g Grammar
	f, _ := commandField("event")
	k, err := kong.New(&g.Globals, kong.Vars{"state_dir": nodestate.DefaultStateDir, "version": "v"}, judgeHelp,
		kong.DynamicCommand("event", f.Tag.Get("help"), "", &g.Event))
	if err != nil {
		t.Fatal(err)
	}
	how := "go test ./internal/handler -run TestFastEventGenerated -update-table"
	src, err := fastgen.Source(fastgen.Spec{Package: "handler", Type: "eventCmd", Var: "fastEvent", GeneratedBy: how,
		Command: "event", Node: k.Model.Children[0], Target: &g.Event})
	if err != nil {
		t.Fatal(err)
	}
	fastgen.UpToDate(t, "args_gen.go", src, *updateTable, how)
}

// kongEvent is kong's parse of an event command line.
func kongEvent(args []string) (eventCmd, error) {
	g, _, err := parseArgs(cli.App{Name: "handle_worker", Version: "v", Stdout: io.Discard, Stderr: io.Discard}, args, true)
	if err != nil {
		return eventCmd{}, err
	}
	return g.Event, nil
}

// eventBase is the least an event command line has: the command, the
// required flags and the six arguments.
var eventBase = []string{"event", "--key-file", "/k", "--target", "w1", "CRITICAL", "HARD", "1", "10.0.0.5", "h1", "w1"}

// eventLines are the engines' event command lines (the shipped configs'
// arguments with their macros filled in, empty ones too) and odd ones.
var eventLines = [][]string{
	eventBase,
	// nagios-config/nagios4/commands.cfg, templates.cfg's values.
	{"event", "--key-file", "/etc/selfheal/fleet.key", "--state-dir", "/var/lib/selfheal/handler", "--log-file", "/var/log/selfheal/handle_worker.log",
		"--command-file=/var/lib/nagios4/rw/nagios.cmd", "--status-file=/var/lib/nagios4/status.dat", "--nagios-config=/etc/nagios4/nagios.cfg",
		"--target=w1", "--port=5690", "--fault=17", "--fault-since=1765000000", "--recheck-delay=2s", "--deadline", "18s",
		"--service-downtime=0", "--host-downtime=0", "--host-state=UP", "--perfdata=ok=1 critical_deps=0", "--",
		"CRITICAL", "HARD", "3", "10.0.0.5", "h1", "w1"},
	// The same with every macro the engine may leave empty left empty.
	{"event", "--key-file", "/k", "--command-file=", "--status-file=", "--nagios-config=", "--target=", "--port=", "--fault=",
		"--fault-since=", "--recheck-delay=", "--deadline", "18s", "--service-downtime=", "--host-downtime=", "--host-state=",
		"--perfdata=", "--", "", "", "", "", "", ""},
	// nagios-config/icinga2/selfheal.conf, one argv element per value.
	{"event", "--key-file", "/etc/selfheal/fleet.key", "--state-dir", "/var/lib/selfheal/handler", "--log-file", "/var/log/selfheal/handle_worker.log",
		"--icinga-api", "https://127.0.0.1:5665", "--icinga-ca", "/var/lib/icinga2/certs/ca.crt", "--icinga-credentials", "/etc/selfheal/icinga-api.cred",
		"--icinga-server-name", "m1", "--target", "w1", "--port", "5690", "--agent", "h1", "--fault", "1765000000.123", "--fault-since=1765000000.123",
		"--recheck-delay", "2s", "--deadline", "18s", "--service-downtime", "0", "--host-downtime", "0", "--host-state", "0", "--ack", "0",
		"--perfdata=ok=1", "CRITICAL", "SOFT", "2", "10.0.0.5", "h1", "w1"},
	{"event", "--key-file", "/k", "--target", "w1", "--service-downtime", "", "--host-downtime", "", "--ack", "", "--perfdata=",
		"OK", "HARD", "1", "", "h1", "w1"},
	// $USER6$ of commands.cfg: the rules' switches.
	{"event", "--key-file", "/k", "--target", "w1", "--ignore", "pause,ack", "--ignore=breaker", "--breaker-threshold", "4",
		"--breaker-window", "10m", "--breaker-quiet", "90s", "--breaker-zone-window", "30m", "--breaker-verify", "1m30s",
		"--breaker-event-command", "x", "--soft-attempt", "2", "--action", "start", "--dry-run", "--address", "::1",
		"--tls-ca", "a", "--tls-cert", "b", "--tls-key", "c", "--tls-server-name", "d", "--icinga-timeout", "2s",
		"CRITICAL", "HARD", "1", "10.0.0.5", "h1", "w1"},
	// Flags after and between the arguments, --, and "-" as a value.
	{"event", "CRITICAL", "--key-file", "/k", "HARD", "1", "--target", "w1", "a", "b", "c"},
	{"event", "--key-file", "/k", "--target", "w1", "CRITICAL", "HARD", "--", "1", "-", "-h1", "--w1"},
	{"event", "--key-file", "/k", "--target", "w1", "-", "HARD", "1", "a", "b", "c"},
}

// eventDeclined are lines the fast path leaves to kong: kong's answer
// (an error, the help, or a value the fast path would not give) stands.
var eventDeclined = [][]string{
	{"event", "--help"}, {"event", "-h"}, {"event", "-V"}, {"event", "--version"}, {"event"}, {"event", "--bogus"},
	{"event", "--breaker-threshold", "x", "OK", "HARD", "1", "a", "b", "c"},
	{"event", "--key-file", "/k", "CRITICAL", "HARD", "1", "a", "b", "c"},                        // no --target
	{"event", "--key-file", "/k", "--target", "w1", "CRITICAL", "HARD", "1", "a", "b"},           // five arguments
	{"event", "--key-file", "/k", "--target", "w1", "CRITICAL", "HARD", "1", "a", "b", "c", "d"}, // seven
	{"event", "--key-file", "/k", "--target", "w1", "--action", "stop", "CRITICAL", "HARD", "1", "a", "b", "c"},
	{"event", "--key-file", "/k", "--target", "w1", "--deadline", "18", "CRITICAL", "HARD", "1", "a", "b", "c"},
	{"event", "--key-file", "/k", "--target", "w1", "--ignore", `a\,b`, "CRITICAL", "HARD", "1", "a", "b", "c"},
	{"event", "--key-file", "/k", "--target", "w1", "--ignore=", "CRITICAL", "HARD", "1", "a", "b", "c"},
	{"event", "--key-file", "/k", "--target", "w1", "--soft-attempt", "-1", "CRITICAL", "HARD", "1", "a", "b", "c"},
	{"event", "--key-file", "/k", "--target", "w1", "--dry-run=true", "CRITICAL", "HARD", "1", "a", "b", "c"},
	{"event", "--key-file", "--target", "w1", "CRITICAL", "HARD", "1", "a", "b", "c"},
	{"send", "ping", "--host", "h", "--key-file", "/k", "--target", "w1"},
	{"--key-file", "/k", "--target", "w1", "CRITICAL", "HARD", "1", "a", "b", "c"},
	// kong drops an empty piece of a list and replaces bytes that are not
	// UTF-8: the fast path would give other values.
	{"event", "--key-file", "/k", "--target", "w1", "--ignore=pause,", "CRITICAL", "HARD", "1", "a", "b", "c"},
	{"event", "--key-file", "/k", "--target", "w1", "--ignore", ",pause", "CRITICAL", "HARD", "1", "a", "b", "c"},
	{"event", "--key-file", "/k", "--target", "w1", "--ignore", "pause,,ack", "CRITICAL", "HARD", "1", "a", "b", "c"},
	{"event", "--key-file", "/k", "--target", "w1", "CRITICAL", "HARD", "1", "a", "h1", "W\xe4rme"},
	{"event", "--key-file", "/k", "--target", "w1", "--perfdata=\xff", "CRITICAL", "HARD", "1", "a", "h1", "w1"},
}

// TestFastEventMatchesKong: whatever the fast path takes, kong parses to
// the identical eventCmd; what it declines is left to kong. The engines'
// own lines must take it.
func TestFastEventMatchesKong(t *testing.T) {
	for i, args := range append(slices.Clone(eventLines), eventDeclined...) {
		taken, err := fastgen.Compare(&fastEvent, kongEvent, args)
		if err != nil {
			t.Error(err)
		}
		if want := i < len(eventLines); taken != want {
			t.Errorf("%q: taken by the fast path %v, want %v", args, taken, want)
		}
		// ParseArgs, fast or not, answers as kong does.
		app := cli.App{Name: "handle_worker", Version: "v", Stdout: io.Discard, Stderr: io.Discard}
		g, cmd, err := ParseArgs(app, args)
		kg, kcmd, kerr := parseArgs(app, args, true)
		if cmd != kcmd || (err == nil) != (kerr == nil) || (g == nil) != (kg == nil) || g != nil && !reflect.DeepEqual(g.Event, kg.Event) {
			t.Errorf("%q: ParseArgs %q %v, kong %q %v", args, cmd, err, kcmd, kerr)
		}
	}
	// Random mixes of valid and odd tokens, fixed seed: reproducible.
	tokens := []string{"--key-file", "/k", "--target", "w1", "--port", "5690", "--port=", "--fault", "17", "--perfdata=",
		"--perfdata", "--ignore", "pause,ack", "--ignore=", "--action", "start", "stop", "--deadline", "18s", "18", "--dry-run",
		"--soft-attempt", "2", "-1", "--breaker-threshold", "x", "--", "-", "", "CRITICAL", "HARD", "1", "h1", "-h", "-V",
		"--nope", "=", "--key-file=/k2", "--target=w2", "--status-file=", "--command-file", "--recheck-delay=2s",
		"pause,", ",", "W\xe4rme", "--ignore=,ack"}
	rng := rand.New(rand.NewSource(1))
	took := 0
	for range 4000 {
		args := append([]string{"event"}, make([]string, rng.Intn(14))...)
		for j := 1; j < len(args); j++ {
			args[j] = tokens[rng.Intn(len(tokens))]
		}
		if rng.Intn(2) == 0 {
			args = append(args, eventBase[1:]...)
		}
		taken, err := fastgen.Compare(&fastEvent, kongEvent, args)
		if err != nil {
			t.Error(err)
		}
		if taken {
			took++
		}
	}
	if took < 100 {
		t.Errorf("the fast path took only %d of the random lines", took)
	}
}

// TestEveryEventFlagTakesFastPath: each flag, in each plain form, takes
// the fast path and lands where kong puts it.
func TestEveryEventFlagTakesFastPath(t *testing.T) {
	base, err := kongEvent(eventBase)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range fastgen.Forms(&fastEvent, eventBase) {
		taken, err := fastgen.Compare(&fastEvent, kongEvent, args)
		if err != nil || !taken {
			t.Errorf("%q: taken %v, %v", args, taken, err)
			continue
		}
		var f eventCmd
		fastEvent.Parse(args, &f)
		if reflect.DeepEqual(f, base) {
			t.Errorf("%q: parsed to the base line, the flag went nowhere", args)
		}
	}
	if n := len(fastEvent.Flags); n < 35 {
		t.Errorf("only %d flags on the fast path", n)
	}
}
