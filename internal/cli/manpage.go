package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/alecthomas/kong"
)

// ManFlag is the hidden argument that makes any binary of the suite print
// its own man page (roff) and exit 0: `make man` runs it on each built
// binary, so the page is rendered from the very grammar the binary parses
// with and cannot drift from it. kong ships no man page writer; this one
// is small, and a library (go-md2man, cobra's) would want Markdown or
// another CLI model in between.
const ManFlag = "--help-man"

// manSections: where each installed binary's page belongs. worker_listener
// is a daemon in /usr/sbin (8); the rest are commands (1).
var manSections = map[string]string{"worker_listener": "8"}

// ManSection is the man section of the binary called name.
func ManSection(name string) string {
	if s, ok := manSections[name]; ok {
		return s
	}
	return "1"
}

// WriteMan renders the man page of parser's grammar for app.
func WriteMan(w io.Writer, app App, parser *kong.Kong) error {
	m := &manWriter{}
	root := parser.Model.Node
	name := app.Name
	m.line(".TH %s %s \"\" %s \"selfheal\"", quote(strings.ToUpper(name)), ManSection(name), quote(app.Version))
	m.line(".SH NAME")
	m.line("%s \\- %s", esc(name), esc(app.Description))

	m.line(".SH SYNOPSIS")
	cmds := commands(root)
	if len(cmds) == 0 {
		m.line(".B %s", esc(name))
		m.line("%s", esc(synopsisTail(root)))
	}
	for _, c := range cmds {
		m.line(".B %s %s", esc(name), esc(c.Path()))
		m.line("%s", esc(synopsisTail(c)))
		m.line(".br")
	}

	m.line(".SH DESCRIPTION")
	m.text(app.Description)
	if app.InfoExit == 3 {
		m.text("This is a monitoring plugin: it prints one line of status (and performance data) on standard output and exits with the state.")
	}

	if flags := visible(root.Flags); len(flags) > 0 {
		m.line(".SH OPTIONS")
		m.flags(flags)
	}

	if len(cmds) > 0 {
		m.line(".SH COMMANDS")
		for _, c := range cmds {
			m.line(".SS %s", quote(name+" "+c.Path()+synopsisArgs(c)))
			m.text(c.Help)
			if c.Detail != "" {
				m.text(c.Detail)
			}
			if def := root.DefaultCmd; def == c {
				m.text("This is the default command: it runs when no command is named.")
			}
			for _, p := range c.Positional {
				m.line(".TP")
				m.line("\\fI%s\\fR", esc(p.Name))
				m.body(valueHelp(p))
			}
			m.flags(visible(c.Flags))
		}
	}

	m.line(".SH EXIT STATUS")
	if app.InfoExit == 3 {
		m.text("0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, as Nagios and Icinga read them. A usage error, --help and --version exit 3 (UNKNOWN), never CRITICAL.")
	} else {
		m.text("0 on success; --help and --version exit 0. Any other code is a failure, described on standard error.")
	}

	m.line(".SH SEE ALSO")
	var see []string
	for _, b := range []string{"check_worker", "handle_worker", "worker_listener"} {
		if b != name {
			see = append(see, fmt.Sprintf("\\fB%s\\fR(%s)", esc(b), ManSection(b)))
		}
	}
	m.line("%s", strings.Join(see, ", "))
	m.text("The full documentation: /usr/share/doc/selfheal-node and /usr/share/doc/selfheal-agent, or docs/ in the source.")
	_, err := io.WriteString(w, m.b.String())
	return err
}

// commands lists every visible command, depth first, as kong's help does.
func commands(n *kong.Node) []*kong.Node {
	var out []*kong.Node
	for _, c := range n.Children {
		if c.Hidden || c.Type != kong.CommandNode {
			continue
		}
		out = append(out, c)
		out = append(out, commands(c)...)
	}
	return out
}

func visible(flags []*kong.Flag) []*kong.Flag {
	var out []*kong.Flag
	for _, f := range flags {
		if !f.Hidden {
			out = append(out, f)
		}
	}
	return out
}

func synopsisArgs(n *kong.Node) string {
	var b strings.Builder
	for _, p := range n.Positional {
		b.WriteString(" ")
		b.WriteString(p.Summary())
	}
	return b.String()
}

func synopsisTail(n *kong.Node) string {
	s := synopsisArgs(n)
	if len(visible(n.Flags)) > 0 || (n.Parent != nil && len(visible(n.Parent.Flags)) > 0) {
		s = " [flags]" + s
	}
	return strings.TrimSpace(s)
}

// valueHelp is a flag's or argument's help with its default and choices.
func valueHelp(v *kong.Value) string {
	s := v.Help
	var extra []string
	if v.HasDefault && v.Default != "" {
		extra = append(extra, "default: "+v.Default)
	}
	if v.Enum != "" {
		e := v.EnumSlice()
		sort.Strings(e)
		extra = append(extra, "one of: "+strings.Join(e, ", "))
	}
	if v.Required {
		extra = append(extra, "required")
	}
	if len(extra) > 0 {
		s += " (" + strings.Join(extra, "; ") + ")"
	}
	return s
}

type manWriter struct{ b strings.Builder }

func (m *manWriter) line(format string, a ...any) {
	fmt.Fprintf(&m.b, format, a...)
	m.b.WriteByte('\n')
}

// text writes s as a paragraph of running text.
func (m *manWriter) text(s string) {
	if s = strings.TrimSpace(s); s != "" {
		m.line(".PP")
		m.body(s)
	}
}

// body writes s as running text in the current paragraph (a .TP's body).
func (m *manWriter) body(s string) {
	for _, l := range strings.Split(s, "\n") {
		m.line("%s", esc(l))
	}
}

func (m *manWriter) flags(flags []*kong.Flag) {
	for _, f := range flags {
		m.line(".TP")
		var head string
		if f.Short != 0 {
			head = fmt.Sprintf("\\fB\\-%s\\fR, ", esc(string(f.Short)))
		}
		head += "\\fB\\-\\-" + esc(f.Name) + "\\fR"
		if !f.IsBool() && !f.IsCounter() {
			head += "=\\fI" + esc(f.FormatPlaceHolder()) + "\\fR"
		}
		m.line("%s", head)
		m.body(valueHelp(f.Value))
	}
}

// esc makes s safe as roff text: backslashes escaped, hyphens and a
// leading control character neutralised.
func esc(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// quote is a roff macro argument: escaped, in double quotes.
func quote(s string) string {
	return `"` + strings.ReplaceAll(esc(s), `"`, `""`) + `"`
}
