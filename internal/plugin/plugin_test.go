package plugin

import (
	"strings"
	"testing"

	"github.com/selfheal/selfheal/internal/nagios"
)

func TestLine(t *testing.T) {
	tests := map[string]string{
		"plain":           "plain",
		"a|b":             "a/b",
		"line\nbreak\r":   "line break",
		"bad\xffutf8":     "bad\uFFFDutf8",
		"  padded  ":      "padded",
		"tab\there\x00":   "tab here",
		"sep\u2028arator": "sep arator",
	}
	for in, want := range tests {
		if got := Line(in, 100); got != want {
			t.Errorf("Line(%q) = %q, want %q", in, got, want)
		}
	}
	if got := Line("ééééé", 7); got != "éé..." {
		t.Errorf("cut inside a rune: %q", got)
	}
}

func TestLabel(t *testing.T) {
	tests := map[string]string{
		"it's = a|b c":           "it_s___a_b_c",
		"''":                     "__",
		"":                       "metric",
		"queue_depth":            "queue_depth",
		"web1/Worker":            "web1/Worker",
		"disk:/var-1.5":          "disk:/var-1.5",
		"é":                      "_",
		strings.Repeat("a", 130): strings.Repeat("a", 128),
	}
	for in, want := range tests {
		if got := Label(in); got != want {
			t.Errorf("Label(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPerfGrammar(t *testing.T) {
	p := Perf{Label: "it's", Value: "0.5", UOM: "s", Warn: "0.5", Crit: "-1:", Min: "0", Max: "10"}
	if got, want := p.String(), "'it_s'=0.5s;0.5;-1:;0;10"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestRender: most severe first on line 1 and in the long output, echoes
// after their state's other findings, Short findings on line 1 only, the
// perfdata on line 1 in the given order.
func TestRender(t *testing.T) {
	a := Answer{Prefix: "TEST", Head: "node: ", OK: "all fine",
		Findings: []Finding{
			{State: nagios.OK, Summary: "disk fine"},
			{State: nagios.Critical, Summary: "echo of db", Echo: true},
			{State: nagios.Warning, Summary: "slow", Detail: "slow: 3 s"},
			{State: nagios.Critical, Summary: "db down|really"},
			{State: nagios.Unknown, Summary: "no metric", Short: true},
		},
		Info: []string{"version 1"},
		Perf: []Perf{{Label: "b", Value: "1"}, {Label: "a", Value: "2"}},
	}
	if a.State() != nagios.Critical {
		t.Fatalf("state %v", a.State())
	}
	want := "TEST CRITICAL - node: db down/really; echo of db; slow; no metric | 'b'=1;;;; 'a'=2;;;;\n" +
		"version 1\n" +
		"[CRITICAL] db down/really\n" +
		"[CRITICAL] echo of db\n" +
		"[WARNING] slow: 3 s\n" +
		"[OK] disk fine\n"
	if got := a.Render(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	ok := Answer{Prefix: "TEST", OK: "all fine"}
	if got := ok.Render(); got != "TEST OK - all fine\n" {
		t.Errorf("no findings, no perfdata: %q", got)
	}
}

// TestRenderBudget: however much there is to say, the answer stays under
// MaxOutput, line 1 and its perfdata stay whole, and the cut is said.
func TestRenderBudget(t *testing.T) {
	a := Answer{Prefix: "TEST", OK: "x", Perf: []Perf{{Label: "kept", Value: "1"}}}
	for i := 0; i < 100; i++ {
		a.Findings = append(a.Findings, Finding{State: nagios.Warning, Summary: strings.Repeat("w", 500)})
	}
	out := a.Render()
	if len(out) > MaxOutput {
		t.Fatalf("%d bytes", len(out))
	}
	first, _, _ := strings.Cut(out, "\n")
	if !strings.HasSuffix(first, " | 'kept'=1;;;;") || len(first) > MaxLine1+len(" | 'kept'=1;;;;") {
		t.Errorf("line 1: %q", first)
	}
	if !strings.HasSuffix(out, "more lines cut (output limit)\n") {
		t.Errorf("no note of the cut: ...%q", out[len(out)-80:])
	}
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n")[1:] {
		if len(l) > MaxLine {
			t.Errorf("long line of %d bytes", len(l))
		}
	}
}
