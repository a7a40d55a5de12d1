package handler

import (
	"bytes"
	"fmt"
	"github.com/selfheal/selfheal/internal/cli"
	"reflect"
	"strings"
	"testing"
)

func TestParsePort(t *testing.T) {
	for in, want := range map[string]int{"": 5690, " ": 5690, "5690": 5690, "1": 1, "65535": 65535, " 80 ": 80} {
		if got, err := parsePort(in); err != nil || got != want {
			t.Errorf("parsePort(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "65536", "-1", "x", "$_HOSTLISTENER_PORT$"} {
		if _, err := parsePort(in); err == nil || !strings.Contains(err.Error(), "--port") {
			t.Errorf("parsePort(%q): %v, want an error naming --port", in, err)
		}
	}
}

// TestParseOneCommand: a command line that names its subcommand first is
// parsed with kong's model of that subcommand only; what it gives (help,
// errors, the chosen command's values, its name) is what the whole
// grammar gives.
func TestParseOneCommand(t *testing.T) {
	lines := [][]string{
		{"event", "--help"}, {"event", "-V"}, {"send", "--help"}, {"send", "restart", "--help"}, {"check", "--help"},
		{"genkey", "--help"}, {"issue-key", "--help"}, {"reevaluate", "--help"}, {"pause", "--help"},
		{"resume", "--help"}, {"status", "--help"},
		{"event"}, {"event", "--bogus"}, {"event", "--breaker-threshold", "x", "OK", "HARD", "1", "a", "b", "c"},
		{"event", "--key-file", "/k", "--state-dir", "/s", "--target", "w", "--port", "5690", "--agent", "h1",
			"--fault", "17", "--fault-since=17", "--ignore", "pause", "--breaker-threshold", "4", "--perfdata=", "--",
			"CRITICAL", "HARD", "3", "127.0.0.1", "h1", "svc"},
		{"reevaluate", "--key-file", "/k", "--deadline", "40s"},
		{"pause", "--for", "1h", "--reason", "maintenance", "--host", "h1"},
		{"issue-key", "--fleet-key", "/k", "--agent", "h1"},
		{"send", "ping", "--host", "127.0.0.1", "--key-file", "/k"},
		{"status", "--state-dir", "/s"},
	}
	for _, args := range lines {
		var out [2]bytes.Buffer
		var got [2]string
		var gs [2]*Grammar
		for i, one := range []bool{true, false} {
			app := cli.App{Name: "handle_worker", Version: "v", Stdout: &out[i], Stderr: &out[i], InfoExit: 0}
			g, cmd, err := parseArgs(app, args, one)
			got[i] = fmt.Sprintf("cmd %q err %v\n%s", cmd, err, out[i].String())
			gs[i] = g
		}
		if got[0] != got[1] {
			t.Errorf("%q:\none command: %s\nwhole grammar: %s", args, got[0], got[1])
		}
		// The chosen command's values (the whole grammar also fills in
		// the defaults of the commands not chosen, which nothing reads).
		if f, ok := commandField(args[0]); ok && gs[0] != nil && gs[1] != nil {
			a, b := reflect.ValueOf(gs[0]).Elem().FieldByIndex(f.Index).Interface(), reflect.ValueOf(gs[1]).Elem().FieldByIndex(f.Index).Interface()
			if !reflect.DeepEqual(a, b) || gs[0].Version != gs[1].Version {
				t.Errorf("%q: values differ:\n%+v\n%+v", args, a, b)
			}
		} else if (gs[0] == nil) != (gs[1] == nil) {
			t.Errorf("%q: parsed %v, %v", args, gs[0] != nil, gs[1] != nil)
		}
	}
}
