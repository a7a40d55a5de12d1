package install

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/engine"
	"github.com/selfheal/selfheal/internal/lab/testutil"
)

func TestBlocks(t *testing.T) {
	md := "text\n```sh one\n# a comment\napt-get install -y \\\n  ./a.deb\n\nls | wc -l   # counted once\n```\n" +
		"```sh\nnot tagged\n```\n```\nplain\n```\n```sh two\nrunuser -u nagios -- true\n```\n"
	got, err := Blocks(md)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"one": {"apt-get install -y  ./a.deb", "ls | wc -l   # counted once"},
		"two": {"runuser -u nagios -- true"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	for name, bad := range map[string]string{
		"duplicate tag": "```sh a\nx\n```\n```sh a\ny\n```\n",
		"unclosed":      "```sh a\nx\n",
		"heredoc":       "```sh a\ncat <<EOF\n```\n",
		"continued":     "```sh a\nx \\\n```\n",
	} {
		if _, err := Blocks(bad); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// The README holds every block the install test runs, each non-empty.
func TestREADMEBlocks(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testutil.ModuleRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := Blocks(string(b))
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range runOrder {
		if len(blocks[tag]) == 0 {
			t.Errorf("README.md has no commands in a ```sh %s block", tag)
		}
	}
	// The blocks name binaries by their full paths: runuser's and sudo's
	// PATH has no plugin dir.
	for tag, cmds := range blocks {
		for _, c := range cmds {
			for _, bin := range []string{"handle_worker", "worker_listener", "demo_worker"} {
				if strings.Contains(c, " "+bin+" ") {
					t.Errorf("%s: %s without its path: %s", tag, bin, c)
				}
			}
		}
	}
}

func TestFindHeal(t *testing.T) {
	lines := []string{
		"[100] SERVICE ALERT: worker1;worker;CRITICAL;HARD;3;old fault",
		"[200] SERVICE ALERT: worker1;worker;CRITICAL;SOFT;1;WORKER CRITICAL",
		"[215] SERVICE ALERT: worker1;worker;CRITICAL;HARD;3;WORKER CRITICAL",
		"[215] SERVICE EVENT HANDLER: other;worker;CRITICAL;HARD;3;selfheal-handle-worker",
		"[215] SERVICE EVENT HANDLER: worker1;worker;CRITICAL;HARD;3;selfheal-handle-worker",
		"[218] SERVICE ALERT: worker1;worker;OK;HARD;3;WORKER OK",
	}
	var log []engine.LogEntry
	for _, l := range lines {
		e, ok := engine.ParseLogLine(l)
		if !ok {
			t.Fatal(l)
		}
		log = append(log, e)
	}
	h, ok := FindHeal(log, time.Unix(150, 0), "worker1", "worker")
	if !ok || h.Hard.Unix() != 215 || h.Handler.Unix() != 215 || h.OK.Unix() != 218 {
		t.Fatalf("%v %+v", ok, h)
	}
	// Without the recovery, or before the handler ran, no heal.
	if _, ok := FindHeal(log[:5], time.Unix(150, 0), "worker1", "worker"); ok {
		t.Fatal("a heal without OK")
	}
	swapped := []engine.LogEntry{log[2], log[5], log[4]}
	if _, ok := FindHeal(swapped, time.Unix(150, 0), "worker1", "worker"); ok {
		t.Fatal("OK before the handler counted as a heal")
	}
	// A HARD CRITICAL alone, then a SOFT one, is no heal.
	if _, ok := FindHeal(log[:2], time.Unix(0, 0), "worker1", "worker"); ok {
		t.Fatal("a HARD CRITICAL alone counted as a heal")
	}
}
