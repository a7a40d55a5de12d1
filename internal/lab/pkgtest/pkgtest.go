// Package pkgtest reads what Debian's tools say about the packages that
// `make package` builds (dpkg-deb -c, lintian) and what a binary's kong help
// lists (its commands and flags), for the packaging tests beside it.
package pkgtest

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Entry is one line of `dpkg-deb -c`.
type Entry struct {
	Mode  string // e.g. -rwxr-xr-x, drwxr-xr-x, lrwxrwxrwx
	Owner string // user/group
	Size  int64
	Path  string // absolute, without the leading "."
	Link  string // a symlink's target
}

// ParseContents parses `dpkg-deb -c` output (tar's verbose listing).
func ParseContents(out string) ([]Entry, error) {
	var es []Entry
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 {
			return nil, fmt.Errorf("dpkg-deb -c: unreadable line %q", l)
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("dpkg-deb -c: size in %q: %v", l, err)
		}
		e := Entry{Mode: f[0], Owner: f[1], Size: size}
		rest := strings.Join(f[5:], " ")
		if p, target, ok := strings.Cut(rest, " -> "); ok {
			rest, e.Link = p, target
		}
		e.Path = strings.TrimSuffix(strings.TrimPrefix(rest, "."), "/")
		if e.Path == "" {
			e.Path = "/"
		}
		es = append(es, e)
	}
	return es, nil
}

// Lintian splits lintian's output into its error and warning lines.
func Lintian(out string) (errs, warns []string) {
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, "E: "):
			errs = append(errs, l)
		case strings.HasPrefix(l, "W: "):
			warns = append(warns, l)
		}
	}
	return errs, warns
}

// LintianTag is the tag of a lintian line ("W: pkg: tag [path]" -> tag).
func LintianTag(line string) string {
	f := strings.Fields(line)
	if len(f) < 3 {
		return ""
	}
	return f[2]
}

var (
	helpCommand = regexp.MustCompile(`^  ([a-z][a-z0-9-]*)(\s|$)`)
	helpFlag    = regexp.MustCompile(`^\s+(?:-[A-Za-z], )?--([a-z][a-z0-9-]*)`)
)

// HelpCommands lists the commands of kong's help text (its Commands:
// section).
func HelpCommands(help string) []string {
	var cmds []string
	in := false
	for _, l := range strings.Split(help, "\n") {
		switch {
		case l == "Commands:":
			in = true
		case in && l != "" && !strings.HasPrefix(l, " "):
			in = false
		case in:
			if m := helpCommand.FindStringSubmatch(l); m != nil {
				cmds = append(cmds, m[1])
			}
		}
	}
	return cmds
}

// HelpFlags lists the long flags of kong's help text (its Flags: section).
func HelpFlags(help string) []string {
	var flags []string
	in := false
	for _, l := range strings.Split(help, "\n") {
		switch {
		case l == "Flags:":
			in = true
		case in && l != "" && !strings.HasPrefix(l, " "):
			in = false
		case in:
			if m := helpFlag.FindStringSubmatch(l); m != nil {
				flags = append(flags, m[1])
			}
		}
	}
	return flags
}

// RoffFlag is how a man page from cli.WriteMan spells --name.
func RoffFlag(name string) string {
	return `\-\-` + strings.ReplaceAll(name, "-", `\-`)
}
