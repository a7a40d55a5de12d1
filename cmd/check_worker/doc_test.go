package main

import (
	"bytes"
	"flag"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/alecthomas/kong"

	"github.com/selfheal/selfheal/internal/check"
)

var update = flag.Bool("update", false, "rewrite doc.go's copy of the -h flag list")

// TestDocMatchesHelp: doc.go's flag list is check_worker -h's, which kong
// renders from the grammar, so the usage page of go doc cannot drift.
func TestDocMatchesHelp(t *testing.T) {
	t.Setenv("COLUMNS", "80") // kong wraps help to the terminal width
	var stdout bytes.Buffer
	if code := run([]string{"-h"}, &stdout, io.Discard); code != 3 {
		t.Fatalf("-h exited %d", code)
	}
	_, flags, ok := strings.Cut(stdout.String(), "\nFlags:\n")
	if !ok {
		t.Fatalf("no Flags: section in\n%s", stdout.String())
	}
	var want []string
	for _, l := range strings.Split(strings.TrimRight(flags, "\n"), "\n") {
		want = append(want, strings.TrimRight("//\t"+strings.TrimPrefix(l, "  "), " "))
	}

	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	start := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "//\t-h, --help") })
	if start < 0 {
		t.Fatal("doc.go: no flag list starting with -h, --help")
	}
	end := start + slices.Index(lines[start:], "//")
	if end < start {
		t.Fatal("doc.go: the flag list does not end in a // line")
	}
	if got := lines[start:end]; !slices.Equal(got, want) {
		if *update {
			lines = slices.Concat(lines[:start], want, lines[end:])
			if err := os.WriteFile("doc.go", []byte(strings.Join(lines, "\n")), 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		t.Errorf("doc.go's flag list differs from -h (go test ./cmd/check_worker -run TestDocMatchesHelp -update):\ngot\n%s\nwant\n%s",
			strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestFlagTableComplete: docs/check_worker.md's flag table names exactly
// the grammar's flags, each with its short name.
func TestFlagTableComplete(t *testing.T) {
	k, err := kong.New(&check.Flags{}, kong.Vars{"version": "v"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, f := range k.Model.Flags {
		want[f.Name] = ""
		if f.Short != 0 {
			want[f.Name] = string(f.Short)
		}
	}

	md, err := os.ReadFile("../../docs/check_worker.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, _ := strings.Cut(string(md), "\n## Flags\n")
	table, _, _ = strings.Cut(table, "\n## ")
	flagRe := regexp.MustCompile("`(?:-([A-Za-z]), )?--([a-z-]+)")
	got := map[string]string{}
	for _, row := range strings.Split(table, "\n") {
		if !strings.HasPrefix(row, "| `") {
			continue
		}
		cell, _, _ := strings.Cut(row[1:], "|")
		for _, m := range flagRe.FindAllStringSubmatch(cell, -1) {
			got[m[2]] = m[1]
		}
	}
	for name, short := range want {
		if s, ok := got[name]; !ok {
			t.Errorf("docs/check_worker.md: no row for --%s", name)
		} else if s != short {
			t.Errorf("docs/check_worker.md: --%s has short %q, the grammar %q", name, s, short)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("docs/check_worker.md: a row for --%s, which the grammar does not have", name)
		}
	}
}
