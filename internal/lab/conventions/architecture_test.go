package conventions

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/selfheal/selfheal/internal/lab/testutil"
)

// architecture returns docs/architecture.md from the section titled
// heading on (to the next section of the same level or the end).
func architecture(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testutil.ModuleRoot(t), "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("docs/architecture.md has no %q section", heading)
	}
	s = s[i+1+len(heading):]
	level := heading[:strings.IndexByte(heading, ' ')+1]
	if j := strings.Index(s, "\n"+level); j >= 0 {
		s = s[:j]
	}
	return s
}

// packages lists the module's packages as paths relative to its root.
func packages(t *testing.T) []string {
	var out []string
	for _, p := range goList(t, "./...") {
		out = append(out, strings.TrimPrefix(strings.TrimPrefix(p, module), "/"))
	}
	return out
}

// TestLayoutNamesEveryPackage: the layout block in docs/architecture.md
// names every package under internal/ and every installed binary, each at
// the start of a line, and nothing that is gone.
func TestLayoutNamesEveryPackage(t *testing.T) {
	sec := architecture(t, "## Code layout")
	start := strings.Index(sec, "```\n")
	end := strings.Index(sec[start+4:], "```")
	if start < 0 || end < 0 {
		t.Fatal("the Code layout section has no code block")
	}
	named := map[string]bool{}
	for _, l := range strings.Split(sec[start+4:start+4+end], "\n") {
		if f := strings.Fields(l); len(f) > 0 && (strings.HasPrefix(f[0], "internal/") || strings.HasPrefix(f[0], "cmd/")) {
			named[strings.TrimSuffix(f[0], "/")] = true
		}
	}
	want := map[string]bool{}
	for _, p := range packages(t) {
		if strings.HasPrefix(p, "internal/") {
			want[p] = true
		}
	}
	for _, b := range installedBinaries(t) {
		want["cmd/"+b] = true
	}
	if len(want) < 20 {
		t.Fatalf("only %d packages and binaries to look for", len(want))
	}
	for p := range want {
		if !named[p] {
			t.Errorf("docs/architecture.md's layout does not name %s", p)
		}
	}
	for p := range named {
		if !want[p] {
			t.Errorf("docs/architecture.md's layout names %s, which is no package of the tree (or no installed binary)", p)
		}
	}
}

// TestNoArrowRunsBackUp: every package stands on one floor of the table in
// docs/architecture.md ("The house"), and no import runs from a floor to a
// higher one. A sideways import (one floor) is allowed.
func TestNoArrowRunsBackUp(t *testing.T) {
	sec := architecture(t, "### The house: floors, and no arrow back up")
	row := regexp.MustCompile(`^\| (\d+) \| ([^|]+) \|`)
	room := regexp.MustCompile("`([^`]+)`")
	type rule struct {
		pattern string // a package path, or a prefix ending in /*
		floor   int
	}
	var rules []rule
	for _, l := range strings.Split(sec, "\n") {
		m := row.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		for _, r := range room.FindAllStringSubmatch(m[2], -1) {
			rules = append(rules, rule{r[1], n})
		}
	}
	if len(rules) < 10 {
		t.Fatalf("the floors table names only %d rooms", len(rules))
	}
	floorOf := func(pkg string) (int, bool) {
		for _, r := range rules {
			if pre, ok := strings.CutSuffix(r.pattern, "/*"); ok && strings.HasPrefix(pkg, pre+"/") || r.pattern == pkg {
				return r.floor, true
			}
		}
		return 0, false
	}
	lines := goList(t, "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...")
	arrows := 0
	for _, l := range lines {
		f := strings.Fields(l)
		pkg := strings.TrimPrefix(f[0], module+"/")
		from, ok := floorOf(pkg)
		if !ok {
			t.Errorf("%s stands on no floor of docs/architecture.md's table", pkg)
			continue
		}
		for _, imp := range f[1:] {
			rel, ours := strings.CutPrefix(imp, module+"/")
			if !ours {
				continue
			}
			arrows++
			if to, ok := floorOf(rel); ok && to > from {
				t.Errorf("%s (floor %d) imports %s (floor %d): an arrow back up", pkg, from, rel, to)
			}
		}
	}
	if arrows < 40 {
		t.Fatalf("only %d imports between our packages; the check would prove little", arrows)
	}
}
