package cli

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

type manGrammar struct {
	Version kong.VersionFlag `short:"V" help:"Print the version and exit."`
	Serve   struct {
		Config string `short:"c" required:"" help:"Config file (YAML)."`
		Mode   string `default:"fast" enum:"fast,slow" help:"How."`
		Secret string `hidden:"" help:"Not for the page."`
	} `cmd:"" default:"withargs" help:"Run the daemon."`
	IssueKey struct {
		Agent string `arg:"" help:"The agent."`
		Out   string `placeholder:"FILE" help:".dot first, and a back\\slash."`
	} `cmd:"" name:"issue-key" help:"Issue a key."`
}

func TestManPage(t *testing.T) {
	var out bytes.Buffer
	var g manGrammar
	app := App{Name: "worker_listener", Description: "The agent.", Version: "worker_listener 1.2", Stdout: &out, Stderr: &out}
	_, err := Parse(app, &g, []string{ManFlag})
	var er *ExitRequest
	if !errors.As(err, &er) || er.Code != 0 {
		t.Fatalf("Parse(%s): %v, want an exit 0", ManFlag, err)
	}
	page := out.String()
	for _, want := range []string{
		`.TH "WORKER_LISTENER" 8 "" "worker_listener 1.2" "selfheal"`,
		"worker_listener \\- The agent.",
		`.SS "worker_listener serve"`,
		`.SS "worker_listener issue\-key <agent>"`,
		`\fB\-c\fR, \fB\-\-config\fR=\fISTRING\fR`,
		"(default: fast; one of: fast, slow)",
		"This is the default command",
		`\fB\-V\fR, \fB\-\-version\fR`,
		`\fIagent\fR`,
		"\\&.dot first, and a back\\eslash.",
		`\fBcheck_worker\fR(1), \fBhandle_worker\fR(1)`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q:\n%s", want, page)
		}
	}
	if strings.Contains(page, "secret") {
		t.Error("a hidden flag is on the page")
	}
	// Every line a roff request or text that cannot start one.
	for _, l := range strings.Split(strings.TrimSpace(page), "\n") {
		if l == "" || (l[0] == '\'') {
			t.Errorf("line %q would confuse roff", l)
		}
	}
}

func TestManSection(t *testing.T) {
	if ManSection("worker_listener") != "8" || ManSection("check_worker") != "1" {
		t.Fatal("sections")
	}
}

// A plugin's page says how Nagios reads its exit codes; --help-man is
// recognised only alone, so a real argument of that spelling still errs.
func TestManPagePlugin(t *testing.T) {
	var out bytes.Buffer
	var g struct {
		Host string `short:"H" help:"Host."`
	}
	app := App{Name: "check_worker", Description: "A plugin.", Stdout: &out, Stderr: &out, InfoExit: 3}
	if _, err := Parse(app, &g, []string{ManFlag}); err == nil {
		t.Fatal("no exit request")
	}
	if !strings.Contains(out.String(), "0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN") {
		t.Errorf("plugin page:\n%s", out.String())
	}
	out.Reset()
	var ue *UsageError
	if _, err := Parse(app, &g, []string{"-H", "x", ManFlag}); !errors.As(err, &ue) {
		t.Fatalf("%s among other arguments: %v, want a usage error", ManFlag, err)
	}
}
