package check

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/alecthomas/kong"

	"github.com/selfheal/selfheal/internal/cli"
	"github.com/selfheal/selfheal/internal/cli/fastgen"
	"github.com/selfheal/selfheal/internal/nagios"
)

func kongParse(args []string) (Flags, error) {
	var g Flags
	app := cli.App{Name: "check_worker", Version: "v", Stdout: io.Discard, Stderr: io.Discard, InfoExit: int(nagios.Unknown)}
	_, err := cli.Parse(app, &g, args)
	return g, err
}

// TestFastParseMatchesKong: whatever the fast path accepts, kong parses to the
// identical grammar; what it declines is left to kong.
func TestFastParseMatchesKong(t *testing.T) {
	corpus := [][]string{
		{},
		{"-H", "127.0.0.1", "-p", "8080"},
		{"--hostname", "w1", "--port=9000", "--path", "/health", "--ssl"},
		{"-H", "w1", "-S", "-t", "5:unknown", "-w", "0.5", "-c", "~:2"},
		{"-u", "http://w1:8080/status", "-v", "-vv", "--verbose"},
		{"--unix-socket", "/run/w.sock", "--plain", "--insecure"},
		{"-H", "w1", "--metric", "queue_depth,warn=100,crit=500", "--metric=lag,crit=@~:0"},
		{"-H", "w1", "--header", "Authorization: Bearer x=y", "--header=X-A: b"},
		{"-H", "w1", "--max-age", "60,300", "--min-uptime", "5m", "--ca-file", "a", "--cert-file", "b", "--key-file", "c"},
		{"-H", "a", "-H", "b"},
		{"-H", "w1", "--path="},
		{"-H", "w1", "-vvv"},
		{"-H", "w1", "-vvvv"},
	}
	declined := [][]string{
		// Declined by the fast path, so kong's answer stands:
		{"-h"}, {"--help"}, {"-V"}, {"--version"}, {"--bogus"}, {"-H"}, {"-H", "-p"}, {"pos"},
		{"-p", "010"}, {"-p", "+1"}, {"-p", "x"}, {"--ssl=true"}, {"-t", "-1"}, {"-Hw1"}, {"--", "-H"},
		{"-w", "-5:"}, {"--verbose=2"}, {"-vV"}, {"-Sv"},
		// A short name is not a long one: kong rejects --H.
		{"--H", "w1"}, {"--p", "80"}, {"--S"}, {"--v"},
		// Not UTF-8: kong's string mapper replaces the bytes.
		{"-H", "w\xe4"},
	}
	for i, args := range append(corpus, declined...) {
		if taken, want := compareParsers(t, args), i < len(corpus); taken != want {
			t.Errorf("%q: taken by the fast path %v, want %v", args, taken, want)
		}
	}
	// Random mixes of valid and odd tokens, fixed seed: reproducible.
	tokens := []string{"-H", "w1", "-p", "80", "--path", "/s", "-S", "--ssl", "-u", "/x", "-t", "3", "-w", "1",
		"-c", "2", "--metric", "m,crit=1", "--header", "A: b", "--plain", "--insecure", "-v", "-vv", "--max-age",
		",5", "--min-uptime", "1s", "--ca-file", "f", "-h", "-V", "--nope", "=", "--port=1", "--hostname=h", "-", "",
		"--H", "--p", "-vvv", "--verbose", "--unix-socket", "--url=http://w1/", "w\xe4", "--path=/\xff"}
	rng := rand.New(rand.NewSource(1))
	took := 0
	for i := 0; i < 3000; i++ {
		args := make([]string, rng.Intn(7))
		for j := range args {
			args[j] = tokens[rng.Intn(len(tokens))]
		}
		if compareParsers(t, args) {
			took++
		}
	}
	if took < 100 {
		t.Errorf("the fast path took only %d of the random lines", took)
	}
}

// compareParsers fails t if the fast path takes args and kong gives other
// Flags or an error; it reports whether the fast path took them.
func compareParsers(t *testing.T, args []string) bool {
	t.Helper()
	taken, err := fastgen.Compare(&fastFlags, kongParse, args)
	if err != nil {
		t.Error(err)
	}
	return taken
}

// sameAsKong fails unless the fast path takes args and gives exactly
// kong's Flags.
func sameAsKong(t *testing.T, args []string) (fast, slow Flags) {
	t.Helper()
	if !fastFlags.Parse(args, &fast) {
		t.Errorf("%q: the fast path declines it", args)
	}
	slow, err := kongParse(args)
	if err != nil {
		t.Errorf("%q: kong rejects it: %v", args, err)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Errorf("%q:\nfast %+v\nkong %+v", args, fast, slow)
	}
	return fast, slow
}

var updateTable = flag.Bool("update-table", false, "rewrite args_gen.go from the grammar")

// TestFastTableGenerated: args_gen.go is what fastgen makes of kong's
// model of Flags now (-update-table rewrites it).
func TestFastTableGenerated(t *testing.T) {
	var g Flags
	k, err := kong.New(&g, kong.Vars{"version": "v"})
	if err != nil {
		t.Fatal(err)
	}
	how := "go test ./internal/check -run TestFastTableGenerated -update-table"
	src, err := fastgen.Source(fastgen.Spec{Package: "check", Type: "Flags", Var: "fastFlags", GeneratedBy: how, Node: k.Model.Node, Target: &g})
	if err != nil {
		t.Fatal(err)
	}
	fastgen.UpToDate(t, "args_gen.go", src, *updateTable, how)
	// Every field but --version is on the fast path.
	if n := len(fastFlags.Flags) + 1; n != reflect.TypeFor[Flags]().NumField() {
		t.Errorf("%d of the %d fields of Flags on the fast path", n-1, reflect.TypeFor[Flags]().NumField())
	}
}

// TestEveryFlagTakesFastPath: each flag, in each plain form, takes the
// fast path and lands where kong puts it. A fast path that declined
// everything would pass TestFastParseMatchesKong; it fails here.
func TestEveryFlagTakesFastPath(t *testing.T) {
	for _, args := range fastgen.Forms(&fastFlags, nil) {
		fast, _ := sameAsKong(t, args)
		if reflect.DeepEqual(fast, mustKong(t, nil)) {
			t.Errorf("%q: parsed to the defaults, the flag went nowhere", args)
		}
	}
}

func mustKong(t *testing.T, args []string) Flags {
	t.Helper()
	f, err := kongParse(args)
	if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	return f
}

// documented lists every check_worker command line the docs and the
// shipped configs show (doc is the line as written there, after
// "check_worker "), with its macros and placeholders filled in as a
// Nagios or Icinga 2 would (the values of nagios-config/nagios4/
// templates.cfg and icinga2/selfheal.conf). TestDocumentedFormsListed
// keeps this list complete.
var documented = []struct {
	doc  string
	args []string
}{
	// cmd/check_worker/doc.go, usage; with and without the optional parts.
	{"-H HOST -p PORT [--path /status] [--ssl]", []string{"-H", "w1.example.com", "-p", "8443", "--path", "/status", "--ssl"}},
	{"-H HOST -p PORT [--path /status] [--ssl]", []string{"-H", "w1.example.com", "-p", "8080"}},
	{"-u http://HOST:PORT/status", []string{"-u", "http://w1.example.com:8080/status"}},
	{"--unix-socket /run/worker.sock [--path /status]", []string{"--unix-socket", "/run/worker.sock", "--path", "/status"}},
	{"--unix-socket /run/worker.sock [--path /status]", []string{"--unix-socket", "/run/worker.sock"}},
	// doc.go's and docs/check_worker.md's (and the README's) examples.
	{"-H 127.0.0.1 -p 8080 --max-age 60,300 --metric 'queue_depth,warn=100,crit=500'",
		[]string{"-H", "127.0.0.1", "-p", "8080", "--max-age", "60,300", "--metric", "queue_depth,warn=100,crit=500"}},
	{"-H 127.0.0.1 -p 8080 -t 2", []string{"-H", "127.0.0.1", "-p", "8080", "-t", "2"}},
	{"-H 127.0.0.1 -p 8080", []string{"-H", "127.0.0.1", "-p", "8080"}},
	{"-H $HOSTADDRESS$ -p $ARG1$ -t 10 --max-age 60,300 --min-uptime 5m",
		[]string{"-H", "10.0.0.5", "-p", "8080", "-t", "10", "--max-age", "60,300", "--min-uptime", "5m"}},
	// nagios-config/nagios4/commands.cfg with templates.cfg's values.
	// Its quotes are the shell's: one argument each, empty when the macro is.
	{"--hostname=$HOSTADDRESS$ --port=$_SERVICEWORKER_PORT$ --path=$_SERVICEWORKER_PATH$ --timeout=$_SERVICEWORKER_TIMEOUT$ $_SERVICEWORKER_CHECK_ARGS$",
		[]string{"--hostname=10.0.0.5", "--port=8080", "--path=/status", "--timeout=10", "--max-age", "60s,120s"}},
	// nagios-config/icinga2/selfheal.conf: one argv element per value.
	{"-H $address$ -p $worker_port$ --path $worker_path$ -t $worker_timeout$ --max-age $worker_max_age$",
		[]string{"-H", "10.0.0.5", "-p", "8080", "--path", "/status", "-t", "10", "--max-age", "60s,120s"}},
	// docs/operations.md, docs/benchmarks.md.
	{"-H 10.0.0.5 -p 8080 --max-age 60s,120s -v", []string{"-H", "10.0.0.5", "-p", "8080", "--max-age", "60s,120s", "-v"}},
	{"-H 127.0.0.1 -p PORT -t 5", []string{"-H", "127.0.0.1", "-p", "33331", "-t", "5"}},
	// docs/check_worker.md's flag table and prose.
	{"-t 10:unknown", []string{"-H", "w1", "-t", "10:unknown"}},
	{"--metric 'workers_alive,crit=1:'", []string{"-H", "w1", "--metric", "workers_alive,crit=1:"}},
	{"--metric 'lag_s,warn=~:30'", []string{"-H", "w1", "--metric", "lag_s,warn=~:30"}},
	{"-vvv", []string{"-u", "http://w1:8080/status", "-vvv"}},
	{"-w RANGE -c RANGE", []string{"-H", "w1", "-w", "0.5", "-c", "2"}},
	{"-u /PATH", []string{"-H", "w1", "-p", "81", "-u", "/health?full=1"}},
	{"--plain --header 'NAME: VALUE'", []string{"-H", "w1", "--plain", "--header", "Authorization: Bearer t0k3n", "--header", "Host: w1.internal"}},
	{"--ca-file FILE --cert-file FILE --key-file FILE", []string{"-H", "w1", "-S", "--ca-file", "/etc/ca.pem", "--cert-file", "/etc/c.pem", "--key-file", "/etc/k.pem"}},
	{"--insecure", []string{"-H", "w1", "--ssl", "--insecure"}},
	{"--unix-socket PATH -H HOST", []string{"--unix-socket", "/run/w.sock", "-H", "w1.internal"}},
}

// TestDocumentedFormsTakeFastPath: every documented form takes the fast
// path, and fast and kong parses give the same Flags and the same Config.
func TestDocumentedFormsTakeFastPath(t *testing.T) {
	for _, d := range documented {
		fast, slow := sameAsKong(t, d.args)
		fc, ft, ferr := fast.Config("ua")
		kc, kt, kerr := slow.Config("ua")
		if ferr != nil || kerr != nil {
			t.Errorf("%s %q: not a valid check: %v / %v", d.doc, d.args, ferr, kerr)
			continue
		}
		if !reflect.DeepEqual(fc, kc) || ft != kt {
			t.Errorf("%q: different Config\nfast %+v %+v\nkong %+v %+v", d.args, fc, ft, kc, kt)
		}
	}
}

// TestDocumentedFormsListed: every check_worker command line in the docs
// and shipped configs is in documented, so a new one cannot skip
// TestDocumentedFormsTakeFastPath.
func TestDocumentedFormsListed(t *testing.T) {
	listed := map[string]bool{}
	for _, d := range documented {
		listed[d.doc] = true
	}
	root := filepath.Join("..", "..")
	files := []string{"cmd/check_worker/doc.go", "docs/check_worker.md", "docs/operations.md", "docs/benchmarks.md",
		"nagios-config/nagios4/commands.cfg", "nagios-config/icinga2/selfheal.conf"}
	total := 0
	for _, name := range files {
		forms := commandLines(t, filepath.Join(root, name))
		if len(forms) == 0 {
			t.Errorf("%s: no check_worker command line found; has the file changed shape?", name)
		}
		for _, f := range forms {
			total++
			if !listed[f] {
				t.Errorf("%s shows `check_worker %s`: add it to documented", name, f)
			}
		}
	}
	if total < 10 {
		t.Errorf("found only %d documented command lines", total)
	}
}

var icingaArg = regexp.MustCompile(`^\s*"(-[^"]+)" = "([^"]*)"`)

// commandLines returns what follows "check_worker " on each command line
// in a file: in code blocks of Markdown and Go doc comments, in the
// non-comment lines of a Nagios config, and from the arguments of
// Icinga 2's selfheal-check-worker CheckCommand.
func commandLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var forms, icinga []string
	inFence, inCommand := false, false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasSuffix(path, ".conf"):
			if strings.HasPrefix(line, `object CheckCommand "selfheal-check-worker"`) {
				inCommand = true
			} else if line == "}" {
				inCommand = false
			} else if m := icingaArg.FindStringSubmatch(line); inCommand && m != nil {
				icinga = append(icinga, m[1], m[2])
			}
			continue
		case strings.HasSuffix(path, ".md"):
			if strings.HasPrefix(line, "```") {
				inFence = !inFence
			}
			if !inFence {
				continue
			}
		case strings.HasSuffix(path, ".go"):
			if !strings.HasPrefix(line, "//\t") {
				continue
			}
		case strings.HasPrefix(strings.TrimSpace(line), "#"):
			continue
		default:
			// A Nagios command_line quotes each "--flag=$MACRO$" for the shell.
			line = strings.ReplaceAll(line, `"`, "")
		}
		if _, rest, ok := strings.Cut(line, "check_worker -"); ok {
			rest, _, _ = strings.Cut("-"+rest, "; ")
			forms = append(forms, strings.TrimSpace(rest))
		}
	}
	if len(icinga) > 0 {
		forms = append(forms, strings.Join(icinga, " "))
	}
	return forms
}

// TestParseArgs: the fast path's answer, and kong's for all it declines.
func TestParseArgs(t *testing.T) {
	var out bytes.Buffer
	app := cli.App{Name: "check_worker", Version: "check_worker v9", Stdout: &out, Stderr: io.Discard, InfoExit: int(nagios.Unknown)}
	f, err := ParseArgs(app, []string{"-H", "w1", "-p", "80", "-vv"})
	if err != nil || f.Hostname != "w1" || f.Port != 80 || f.Path != "/status" || f.Timeout != "10" || f.Verbose != 2 {
		t.Errorf("%+v %v", f, err)
	}
	f, err = ParseArgs(app, []string{"-H", "w1", "-p", "010"})
	if want := mustKong(t, []string{"-H", "w1", "-p", "010"}); err != nil || !reflect.DeepEqual(f, want) {
		t.Errorf("kong's parse of -p 010: %+v %v, want %+v", f, err, want)
	}
	var er *cli.ExitRequest
	if _, err := ParseArgs(app, []string{"-V"}); !errors.As(err, &er) || er.Code != 3 || !strings.Contains(out.String(), "check_worker v9") {
		t.Errorf("-V: %v, printed %q", err, out.String())
	}
	var ue *cli.UsageError
	if _, err := ParseArgs(app, []string{"-H", "w1", "--bogus"}); !errors.As(err, &ue) || !strings.Contains(err.Error(), "unknown flag --bogus") {
		t.Errorf("--bogus: %v", err)
	}
}

// The fast path's cost against kong's, for the shipped Nagios command.
func BenchmarkParse(b *testing.B) {
	var args []string
	for _, d := range documented {
		if strings.Contains(d.doc, "$_SERVICEWORKER_CHECK_ARGS$") {
			args = d.args
		}
	}
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			var f Flags
			if !fastFlags.Parse(args, &f) {
				b.Fatal("declined")
			}
		}
	})
	b.Run("kong", func(b *testing.B) {
		for b.Loop() {
			if _, err := kongParse(args); err != nil {
				b.Fatal(err)
			}
		}
	})
}
