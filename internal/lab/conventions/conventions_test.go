// Package conventions keeps the tree's layout honest: what ships is apart
// from what demos and tests it, every installed binary is held to that with
// no exception, each core is one hop from its main, and test files say which
// file they test. It reads the tree with `go list`, so it
// fails the moment an import or a file breaks a rule.
package conventions

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/selfheal/selfheal/internal/lab/testutil"
)

const module = "github.com/selfheal/selfheal"

// cores are the installed binaries and the core each one is a thin main
// around. demo_worker is installed too (selfheal-agent ships it), so it is
// held to the same rules, except that its core is the demo worker.
var cores = map[string]string{
	"check_worker":    "internal/check",
	"handle_worker":   "internal/handler",
	"worker_listener": "internal/listener",
	"check_selfheal":  "internal/healercheck",
	"demo_worker":     "internal/demo/worker",
}

// demoBinary is the one installed binary that may link demo code.
const demoBinary = "demo_worker"

const (
	demoTree = module + "/internal/demo"
	labTree  = module + "/internal/lab"
)

func under(pkg, tree string) bool { return pkg == tree || strings.HasPrefix(pkg, tree+"/") }

// installedBinaries are the binaries the Debian packages install: every
// `src: ${BINDIR}/NAME` in packaging/*.yaml. Reading them from the packaging
// means a new installed binary is covered without anyone editing this test.
func installedBinaries(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testutil.ModuleRoot(t), "packaging", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no packaging/*.yaml: %v", err)
	}
	var bins []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if _, name, ok := strings.Cut(l, "src: ${BINDIR}/"); ok {
				bins = append(bins, strings.TrimSpace(name))
			}
		}
	}
	sort.Strings(bins)
	if len(bins) < 4 {
		t.Fatalf("packaging installs only %v; the checks would prove little", bins)
	}
	return bins
}

// TestEveryCommandIsInstalled: cmd/ holds the installed binaries and
// nothing else (the lab's own commands live under internal/lab), and each
// has a core named above.
func TestEveryCommandIsInstalled(t *testing.T) {
	installed := map[string]bool{}
	for _, b := range installedBinaries(t) {
		installed[b] = true
		if _, ok := cores[b]; !ok {
			t.Errorf("%s is installed but has no core in this test's table", b)
		}
	}
	entries, err := os.ReadDir(filepath.Join(testutil.ModuleRoot(t), "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if e.IsDir() {
			seen[e.Name()] = true
			if !installed[e.Name()] {
				t.Errorf("cmd/%s is not installed by packaging/*.yaml: an uninstalled command belongs under internal/lab", e.Name())
			}
		}
	}
	for b := range installed {
		if !seen[b] {
			t.Errorf("packaging installs %s but there is no cmd/%s", b, b)
		}
	}
}

// goList runs `go list` in the module root and returns its lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = testutil.ModuleRoot(t)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// TestInstalledBinariesLinkNoScaffolding: no installed binary links lab
// code, and none but demo_worker links demo code.
func TestInstalledBinariesLinkNoScaffolding(t *testing.T) {
	for _, bin := range installedBinaries(t) {
		deps := goList(t, "-deps", "./cmd/"+bin)
		if len(deps) < 10 {
			t.Fatalf("%s: go list -deps gave %d packages; the check would prove nothing", bin, len(deps))
		}
		for _, d := range deps {
			if under(d, labTree) {
				t.Errorf("%s links %s: installed binaries must not link lab code", bin, d)
			}
			if under(d, demoTree) && bin != demoBinary {
				t.Errorf("%s links %s: only %s may link demo code", bin, d, demoBinary)
			}
		}
	}
}

// TestImportsRunDownward: outside tests, nothing imports the lab but the
// lab, and nothing imports the demo but the demo, demo_worker and the lab.
func TestImportsRunDownward(t *testing.T) {
	lines := goList(t, "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...")
	checked := 0
	for _, l := range lines {
		f := strings.Fields(l)
		pkg := f[0]
		if under(pkg, labTree) {
			continue
		}
		checked++
		demoOK := under(pkg, demoTree) || pkg == module+"/cmd/"+demoBinary
		for _, imp := range f[1:] {
			if under(imp, labTree) || (under(imp, demoTree) && !demoOK) {
				t.Errorf("%s imports %s", pkg, imp)
			}
		}
	}
	if checked < len(cores) {
		t.Fatalf("only %d product packages listed", checked)
	}
}

func TestInternalTopLevelIsTheProduct(t *testing.T) {
	// Every folder directly under internal/ other than demo and lab is
	// linked by at least one installed binary other than demo_worker: `ls
	// internal/` reads as the product.
	linked := map[string]bool{}
	for _, bin := range installedBinaries(t) {
		if bin == demoBinary {
			continue
		}
		for _, d := range goList(t, "-deps", "./cmd/"+bin) {
			if rest, ok := strings.CutPrefix(d, module+"/internal/"); ok {
				linked[strings.SplitN(rest, "/", 2)[0]] = true
			}
		}
	}
	entries, err := os.ReadDir(filepath.Join(testutil.ModuleRoot(t), "internal"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() || e.Name() == "demo" || e.Name() == "lab" {
			continue
		}
		if !linked[e.Name()] {
			t.Errorf("internal/%s is linked by no installed binary: move it under internal/demo or internal/lab", e.Name())
		}
	}
}

func TestCoresAreOneHopFromTheirMain(t *testing.T) {
	for bin, core := range cores {
		imports := goList(t, "-f", `{{join .Imports "\n"}}`, "./cmd/"+bin)
		found := false
		for _, imp := range imports {
			if imp == module+"/"+core {
				found = true
			}
		}
		if !found {
			t.Errorf("cmd/%s does not import %s directly: %v", bin, core, imports)
		}
	}
}

// TestTestFilesNameTheirSubject: in a package with code, a test file is
// named after the file it tests (x_test.go or x_aspect_test.go beside x.go);
// helpers_test.go holds what several test files share. Packages that are
// only tests (the e2e suite) are free.
func TestTestFilesNameTheirSubject(t *testing.T) {
	lines := goList(t, "-f", `{{.Dir}}|{{join .GoFiles " "}}|{{join .TestGoFiles " "}} {{join .XTestGoFiles " "}}`, "./...")
	var bad []string
	tests := 0
	for _, l := range lines {
		parts := strings.SplitN(l, "|", 3)
		dir, srcs, testFiles := parts[0], strings.Fields(parts[1]), strings.Fields(parts[2])
		if len(srcs) == 0 {
			continue
		}
		for _, tf := range testFiles {
			tests++
			if tf == "helpers_test.go" || namesSource(strings.TrimSuffix(tf, "_test.go"), srcs) {
				continue
			}
			rel, _ := filepath.Rel(testutil.ModuleRoot(t), filepath.Join(dir, tf))
			bad = append(bad, rel)
		}
	}
	if tests < 20 {
		t.Fatalf("only %d test files seen; the check would prove nothing", tests)
	}
	sort.Strings(bad)
	for _, b := range bad {
		t.Errorf("%s names no file beside it (want x_test.go or x_aspect_test.go for x.go, or helpers_test.go)", b)
	}
}

func namesSource(stem string, srcs []string) bool {
	for _, s := range srcs {
		base := strings.TrimSuffix(s, ".go")
		if stem == base || strings.HasPrefix(stem, base+"_") {
			return true
		}
	}
	return false
}

func TestNamesSource(t *testing.T) {
	srcs := []string{"server.go", "config.go"}
	for stem, want := range map[string]bool{
		"server": true, "server_hostile": true, "config": true,
		"serverx": false, "review": false, "hostile": false, "": false,
	} {
		if got := namesSource(stem, srcs); got != want {
			t.Errorf("namesSource(%q) = %v, want %v", stem, got, want)
		}
	}
}
