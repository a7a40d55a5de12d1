package listener

// The trust rule (fsutil.Trust.Check, sshd's StrictModes) for what the
// agent loads and writes: the agent runs as root (it restarts services),
// so whoever can write its config, a key, a TLS file, its state dir, its
// audit log's directory, an action's binary or a script named among an
// action's arguments, or any directory on the way to one, can make root
// run his command. Every such path must be owned by root or the agent's
// own user and writable by no one else; the state dir must be the agent's
// own and 0700. docs/security.md, "A local attacker", has the list.

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/selfheal/selfheal/internal/fsutil"
)

// Finding is one problem the rule found: the Problem (what to fix, why,
// the command that fixes it) and what it stands in the way of ("key file
// /etc/selfheal/keys/fleet1.key"; several when one bad directory holds
// several of them).
type Finding struct {
	For []string
	fsutil.Problem
}

// Error reads "FOR: PROBLEM", FOR left out when it names the problem's
// own path: "audit_log /var/log/selfheal/audit.log: /var/log/selfheal:
// writable by group (mode 0775): run chmod go-w /var/log/selfheal".
func (f Finding) Error() string {
	if len(f.For) == 1 && strings.HasSuffix(f.For[0], " "+fsutil.Quote(f.Path)) {
		return strings.TrimSuffix(f.For[0], fsutil.Quote(f.Path)) + f.Problem.Error()
	}
	return strings.Join(f.For, ", ") + ": " + f.Problem.Error()
}

// TrustError is every Finding of one config, in the order found. Load
// and Parse return it, joined with the config's other errors, so that
// check-config lists the whole repair at once.
type TrustError struct{ Findings []Finding }

// Error lists the findings one a line.
func (e *TrustError) Error() string {
	lines := make([]string, len(e.Findings))
	for i, f := range e.Findings {
		lines[i] = f.Error()
	}
	return strings.Join(lines, "\n")
}

// trustCheck collects the findings of one config.
type trustCheck struct {
	t   fsutil.Trust
	out []Finding
}

// add records ps for what; a problem already found (same path and why)
// gets what added to those it stands in the way of.
func (c *trustCheck) add(what string, ps ...fsutil.Problem) {
	for _, p := range ps {
		i := slices.IndexFunc(c.out, func(f Finding) bool { return f.Path == p.Path && f.Why == p.Why })
		switch {
		case i < 0:
			c.out = append(c.out, Finding{For: []string{what}, Problem: p})
		case !slices.Contains(c.out[i].For, what):
			c.out[i].For = append(c.out[i].For, what)
		}
	}
}

// check judges path for kind as what ("key file", "state_dir") and
// reports whether it passed.
func (c *trustCheck) check(what, path string, kind fsutil.Kind) bool {
	ps := c.t.Check(path, kind)
	c.add(what+" "+fsutil.Quote(path), ps...)
	return len(ps) == 0
}

// noSymlink: the rule judged a symlink's target, but the agent opens the
// name itself with O_NOFOLLOW (state_dir, audit_log), so it would refuse.
func (c *trustCheck) noSymlink(what, path, how string) bool {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		return true
	}
	why := "is a symlink"
	if target, err := os.Readlink(path); err == nil {
		why += " to " + fsutil.Quote(target)
	}
	c.add(what+" "+fsutil.Quote(path), fsutil.Problem{Path: path,
		Why: why + ", which the agent will not follow (it " + how + " with O_NOFOLLOW): give the path of the " + what + " itself"})
	return false
}

// err is the findings as an error, nil when there is none.
func (c *trustCheck) err() error {
	if len(c.out) == 0 {
		return nil
	}
	return &TrustError{Findings: c.out}
}

// checkAction judges what an action runs: its binary as an ExecFile, the
// interpreter of its "#!" line if it has one, and every absolute argument
// that exists as what it is (an interpreter's
// script: [/bin/sh, /opt/x/restart.sh] runs restart.sh as root as surely
// as its binary). Relative arguments name nothing the rule can judge.
func (c *trustCheck) checkAction(what string, argv []string) bool {
	ok := c.check(what+": argv[0]", argv[0], fsutil.ExecFile)
	// A script's "#!" interpreter is run by the kernel as the script's
	// user, as surely as the script: it is judged too, and its own, down
	// to the kernel's depth. Read only once its file has passed.
	label, prog := "argv[0]", argv[0]
	for range fsutil.MaxInterpreters {
		if !ok {
			break
		}
		interp, err := fsutil.Interpreter(prog)
		if err != nil {
			c.add(what+": "+label+" "+fsutil.Quote(prog), fsutil.Problem{Path: prog, Why: "cannot read its #! line: " + err.Error()})
			return false
		}
		if interp == "" {
			break
		}
		label = "interpreter of " + label
		if !filepath.IsAbs(interp) {
			c.add(what+": "+label+" "+fsutil.Quote(interp), fsutil.Problem{Path: prog,
				Why: "names a relative interpreter " + fsutil.Quote(interp) + " in its #! line, which the kernel looks up from the action's dir: name it by absolute path"})
			return false
		}
		ok = c.check(what+": "+label, interp, fsutil.ExecFile)
		prog = interp
	}
	for i, a := range argv[1:] {
		if filepath.IsAbs(a) && !strings.ContainsRune(a, 0) {
			ok = c.check(what+": argv["+strconv.Itoa(i+1)+"]", a, fsutil.AnyPath|fsutil.Optional) && ok
		}
	}
	return ok
}

// judgeAction is checkAction at exec time, for what (a service's action):
// the rule is judged again before every run, because the files may have
// changed hands since the config was loaded (a script handed to a user,
// who then appends a line). The findings come as one line each, joined
// by "; ", for the audit log.
func judgeAction(t fsutil.Trust, what string, argv []string) error {
	c := trustCheck{t: t}
	if c.checkAction(what, argv) {
		return nil
	}
	lines := make([]string, len(c.out))
	for i, f := range c.out {
		lines[i] = f.Error()
	}
	return errors.New(strings.Join(lines, "; "))
}

// openStateDir creates state_dir (0700) if it is missing and opens it as
// the agent's private directory: what the agent writes there (nonces,
// lock, service records) goes through the Dir, never through a symlink.
func openStateDir(path string) (*fsutil.Dir, error) {
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(path, 0o700); err != nil {
			return nil, stateDirError(path, err)
		}
	}
	d, err := fsutil.Self().OpenDir(path, fsutil.PrivateDir)
	if err != nil {
		return nil, stateDirError(path, err)
	}
	return d, nil
}

// stateDirError names state_dir in an OpenDir error, the rule's findings
// one a line.
func stateDirError(path string, err error) error {
	var ps fsutil.Problems
	if errors.As(err, &ps) {
		c := trustCheck{}
		c.add("state_dir "+fsutil.Quote(path), ps...)
		return c.err()
	}
	return &os.PathError{Op: "state_dir", Path: path, Err: err}
}

// openAppend opens path, the what ("audit_log"), for appending (created
// 0640) once the rule passes it as a DataFile, through its checked
// directory: never through a symlink, only a regular file.
func openAppend(what, path string) (*os.File, error) {
	t := fsutil.Self()
	c := trustCheck{t: t}
	if !c.check(what, path, fsutil.DataFile|fsutil.Optional) {
		return nil, c.err()
	}
	dir := filepath.Dir(path)
	d, err := t.OpenDir(dir, fsutil.DataDir)
	if err != nil {
		var ps fsutil.Problems
		if errors.As(err, &ps) {
			c.add(what+" "+fsutil.Quote(path), ps...)
			return nil, c.err()
		}
		return nil, err
	}
	defer d.Close()
	return d.OpenFile(filepath.Base(path), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
}

// OpenLog opens inetd's --log-file as the audit log is opened.
func OpenLog(path string) (*os.File, error) { return openAppend("log file", path) }
