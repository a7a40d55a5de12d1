package pkgtest

import (
	"reflect"
	"testing"
)

func TestParseContents(t *testing.T) {
	out := `drwxr-xr-x root/root         0 2026-12-01 18:44 ./etc/
-rw-r--r-- root/root       557 2026-12-01 18:44 ./etc/logrotate.d/selfheal agent
lrwxrwxrwx root/root         0 2026-12-01 18:44 ./usr/lib/x -> ../y
`
	es, err := ParseContents(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{Mode: "drwxr-xr-x", Owner: "root/root", Path: "/etc"},
		{Mode: "-rw-r--r--", Owner: "root/root", Size: 557, Path: "/etc/logrotate.d/selfheal agent"},
		{Mode: "lrwxrwxrwx", Owner: "root/root", Path: "/usr/lib/x", Link: "../y"},
	}
	if !reflect.DeepEqual(es, want) {
		t.Fatalf("got %+v", es)
	}
	if _, err := ParseContents("garbage"); err == nil {
		t.Fatal("a short line was accepted")
	}
}

func TestLintian(t *testing.T) {
	errs, warns := Lintian("E: p: statically-linked-binary [usr/sbin/x]\nW: p: some-tag [a]\nI: p: info\nO: p: over\n")
	if len(errs) != 1 || len(warns) != 1 || LintianTag(warns[0]) != "some-tag" {
		t.Fatalf("errs %v warns %v", errs, warns)
	}
}

func TestHelp(t *testing.T) {
	top := `Usage: handle_worker <command> [flags]

Flags:
  -h, --help       Show context-sensitive help.
  -V, --version    Print the version and exit.

Commands:
  event         Handle one Nagios/Icinga state change (what the event_handler
                runs).
  issue-key     Issue an agent's host key.

Run "handle_worker <command> --help" for more information on a command.
`
	if got := HelpCommands(top); !reflect.DeepEqual(got, []string{"event", "issue-key"}) {
		t.Errorf("commands %v", got)
	}
	sub := `Flags:
  -h, --help                    Show context-sensitive help.

      --key-file=FILE           The fleet key (selfheal-fleet-v1, mode
                                0600/0400), or --agent's.
  -t, --timeout=10              Give up.
`
	if got := HelpFlags(sub); !reflect.DeepEqual(got, []string{"help", "key-file", "timeout"}) {
		t.Errorf("flags %v", got)
	}
	if RoffFlag("key-file") != `\-\-key\-file` {
		t.Error(RoffFlag("key-file"))
	}
}
