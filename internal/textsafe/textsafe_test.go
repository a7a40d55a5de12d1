package textsafe

import "testing"

func TestUnsafe(t *testing.T) {
	for _, r := range []rune{0, '\n', '\r', '\t', 0x1b, 0x7f, 0x85, 0x9f, 0x2028, 0x2029,
		0x061c, 0x200e, 0x200f, 0x202a, 0x202e, 0x2066, 0x2069} {
		if !Unsafe(r) {
			t.Errorf("U+%04X should be unsafe", r)
		}
	}
	for _, r := range []rune{' ', 'a', '|', ';', 0xa0, 0xe9, 0x200b, 0x202f, 0x2070, 0x4e2d, 0x1f600} {
		if Unsafe(r) {
			t.Errorf("U+%04X should be safe", r)
		}
	}
}

func TestClean(t *testing.T) {
	custom := Rule{Keep: "\t", Unsafe: "<>", Invalid: "#"}
	for _, tc := range []struct {
		name string
		rule Rule
		in   string
		want string
	}{
		{"line: clean text is untouched", Line, "WORKER OK - ünïcode ✓ | 5", "WORKER OK - ünïcode ✓ | 5"},
		{"line: controls become spaces", Line, "a\r\nb\tc\x1b[31md\x00", "a  b c [31md "},
		{"line: separators and bidi", Line, "x\u2028y\u0085z\u202eq\u2066w", "x y z q w"},
		{"line: each bad byte is one U+FFFD", Line, "bad \xff\xfe utf8 \xe2\x82", "bad \uFFFD\uFFFD utf8 \uFFFD\uFFFD"},
		{"line: a real U+FFFD stays", Line, "a\uFFFDb", "a\uFFFDb"},
		{"text: newlines and tabs stay", Text, "line 1\n\tline 2\n", "line 1\n\tline 2\n"},
		{"text: escape, NUL, CR", Text, "a\x1b[31mb nul\x00cr\rend", "a?[31mb nul?cr?end"},
		{"text: bad bytes", Text, "bad \xff\xfe utf8", "bad ?? utf8"},
		{"text: separators and bidi", Text, "line\u2028sep\u0085x rlo\u202eevil\u2066x", "line?sep?x rlo?evil?x"},
		{"zero rule deletes", Rule{}, "a\nb\xffc\u202ed", "abcd"},
		{"custom keep and multi-byte replacements", custom, "\ta\nb\xff", "\ta<>b#"},
		{"empty", Line, "", ""},
		{"only unsafe", Text, "\x00\x01", "??"},
	} {
		if got := tc.rule.Clean(tc.in); got != tc.want {
			t.Errorf("%s: Clean(%q) = %q, want %q", tc.name, tc.in, got, tc.want)
		}
	}
}

// TestCleanNoAlloc: check_worker cleans every worker string it prints;
// text that is already safe must cost no allocation.
func TestCleanNoAlloc(t *testing.T) {
	s := "processed 120 jobs in the last minute, ünïcode ✓"
	if n := testing.AllocsPerRun(100, func() { _ = Line.Clean(s) }); n != 0 {
		t.Fatalf("Clean of safe text allocates %v times", n)
	}
}

func TestOneLine(t *testing.T) {
	for in, want := range map[string]string{
		"  plain  ":            "plain",
		"two\nlines\r\n":       "two lines",
		"perf | data":          "perf / data",
		"esc\x1b[31mred":       "esc [31mred",
		"bidi \u202eevil":      "bidi  evil",
		"bad \xff byte":        "bad \uFFFD byte",
		"tab\tand nul\x00 end": "tab and nul  end",
		"":                     "",
	} {
		if got := OneLine(in); got != want {
			t.Errorf("OneLine(%q) = %q, want %q", in, got, want)
		}
	}
}
