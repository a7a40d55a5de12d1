// Package install holds what the system install test beside it reads: the
// README's tagged command blocks (the one place the install commands live,
// so the docs and the test cannot drift), and the heal it looks for in
// Nagios' log.
package install

import (
	"fmt"
	"strings"
	"time"

	"github.com/selfheal/selfheal/internal/lab/engine"
)

// Blocks returns the commands of each fenced block whose info string is
// "sh TAG" (```sh install), by tag, in the order the README lists them.
// A command is one logical line: a trailing backslash continues it, and
// blank and comment-only lines are not commands. A tag used twice, an
// unclosed block or a here-document (which would make one command of
// several lines that a reader cannot count) is an error.
func Blocks(readme string) (map[string][]string, error) {
	out := map[string][]string{}
	var tag string
	in := false
	var cur []string
	var pending string
	for i, l := range strings.Split(readme, "\n") {
		fence := strings.HasPrefix(strings.TrimSpace(l), "```")
		switch {
		case !in && fence:
			info := strings.Fields(strings.TrimPrefix(strings.TrimSpace(l), "```"))
			in, tag, cur = true, "", nil
			if len(info) == 2 && info[0] == "sh" {
				tag = info[1]
				if _, dup := out[tag]; dup {
					return nil, fmt.Errorf("line %d: block %q twice", i+1, tag)
				}
			}
		case in && fence:
			if pending != "" {
				return nil, fmt.Errorf("line %d: block %q ends inside a continued line", i+1, tag)
			}
			if tag != "" {
				out[tag] = cur
			}
			in = false
		case in && tag != "":
			t := strings.TrimSpace(l)
			if pending == "" && (t == "" || strings.HasPrefix(t, "#")) {
				continue
			}
			if strings.Contains(t, "<<") {
				return nil, fmt.Errorf("line %d: block %q: no here-documents, one command a line", i+1, tag)
			}
			if c, ok := strings.CutSuffix(t, `\`); ok {
				pending += c + " "
				continue
			}
			cur = append(cur, pending+t)
			pending = ""
		}
	}
	if in {
		return nil, fmt.Errorf("a block (%q) is not closed", tag)
	}
	return out, nil
}

// Heal is one kill-to-OK episode of a service in Nagios' log.
type Heal struct {
	Hard, Handler, OK time.Time // HARD CRITICAL, its event handler, HARD OK
}

// FindHeal looks in log entries from since on for a HARD CRITICAL of
// host/service, then its HARD CRITICAL event handler, then a HARD OK, in
// that order; ok is false until all three are there.
func FindHeal(log []engine.LogEntry, since time.Time, host, service string) (Heal, bool) {
	var h Heal
	steps := []struct {
		match func(engine.LogEntry) bool
		at    *time.Time
	}{
		{engine.Alert(host, service, "CRITICAL", "HARD"), &h.Hard},
		{engine.EventHandler(host, service, "CRITICAL", "HARD"), &h.Handler},
		{engine.Alert(host, service, "OK", "HARD"), &h.OK},
	}
	n := 0
	for _, e := range log {
		if e.Time.Before(since) {
			continue
		}
		if n < len(steps) && steps[n].match(e) {
			*steps[n].at = e.Time
			n++
		}
	}
	return h, n == len(steps)
}
