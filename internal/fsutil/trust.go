package fsutil

// The trust rule (sshd's StrictModes, extended to sticky directories) for
// every file and directory the agent or the handler loads or writes in.
// It is judged on paths, before use, and lists every problem at once so
// check-config can show an admin the whole repair in one pass; writing is
// then done through a Dir (openat.go), which cannot be led astray by a
// symlink planted after the check.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/selfheal/selfheal/internal/textsafe"
)

// Kind is what a trusted path is for; it decides the rule for the path
// itself. Every directory on the way to it (from "/", through every
// symlink) gets the same rule whatever the kind; see Trust.Check.
type Kind uint

const (
	// ConfigFile is a file read: regular, owned by root or the trusting
	// user, not writable by group or others.
	ConfigFile Kind = iota + 1
	// ExecFile is a file run (an action's binary, its interpreter's
	// script): a ConfigFile with an execute bit.
	ExecFile
	// SecretFile is a key: a ConfigFile that group and others cannot
	// read either (mode & 077 == 0).
	SecretFile
	// DataFile is a file the trusting user writes (the audit log): a
	// ConfigFile whose directory is a DataDir, since whoever can write a
	// directory can replace or pre-create the files in it.
	DataFile
	// DataDir is a directory the trusting user creates files in: owned
	// by root or the trusting user, not writable by group or others, the
	// sticky bit notwithstanding.
	DataDir
	// PrivateDir is a directory only the trusting user uses (state_dir):
	// owned by the trusting user itself and mode exactly 0700.
	PrivateDir
	// AnyPath is a path among an action's arguments, judged by what it
	// is: a regular file as a ConfigFile (an interpreter's script), a
	// directory as one on the way, anything else (/dev/null) by the way
	// to it only. Usually or'ed with Optional.
	AnyPath

	// Optional, or'ed into a Kind, accepts a path that does not exist
	// (yet): nothing is reported for it, unless the deepest directory
	// that does exist lets others create it first (a sticky directory
	// such as /tmp). Without Optional, a missing path is a problem.
	Optional Kind = 1 << 8
)

func (k Kind) isDir() bool { return k&^Optional == DataDir || k&^Optional == PrivateDir }

// Trust is whom a check trusts: root and the user UID (the process's own
// user: the agent's, or nagios for the handler). Groups lists gids whose
// group-write permission is accepted like the owner's (none by default;
// e.g. Ubuntu's /var/log is 0775 root:syslog, refused unless syslog's gid
// is listed).
type Trust struct {
	UID    int
	Name   string // UID's name for messages and fixes; "" shows "uid N"
	Groups []int
}

// Self is the Trust of the running process: root and its effective user.
func Self() Trust {
	uid := os.Geteuid()
	return Trust{UID: uid, Name: userName(uint32(uid))}
}

// Problem is one way a path breaks the rule: Path is what must be fixed
// (the real file or directory, after symlinks), Why says what is wrong
// with it, Via lists the symlinks that led there from the path checked,
// and Fix is the shell command that repairs it ("" when only the admin
// can decide, e.g. for a missing file or one in /tmp; Why says what to
// do then).
type Problem struct {
	Path string
	Why  string
	Via  []Link
	Fix  string
}

// Link is one symlink crossed: Name is the link, Target what it holds.
type Link struct{ Name, Target string }

// Error reads "PATH: WHY (L is a symlink to T): run FIX", each path
// shell-quoted and shown safe for a terminal or log.
func (p Problem) Error() string {
	var b strings.Builder
	b.WriteString(shellQuote(p.Path))
	b.WriteString(": ")
	b.WriteString(textsafe.Line.Clean(p.Why))
	if len(p.Via) > 0 {
		b.WriteString(" (")
		for i, l := range p.Via {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(shellQuote(l.Name) + " is a symlink to " + shellQuote(l.Target))
		}
		b.WriteString(")")
	}
	if p.Fix != "" {
		b.WriteString(": run ")
		b.WriteString(p.Fix)
	}
	return b.String()
}

// Problems is every problem of one or several checks, in the order found.
type Problems []Problem

// Error lists the problems one a line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Err is ps as an error, nil when there is none (a nil Problems in an
// error interface would not be nil).
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// Add appends each of more not already in ps (same Path and Why), so two
// files under the same bad directory report it once.
func (ps Problems) Add(more ...Problem) Problems {
	for _, p := range more {
		if !slices.ContainsFunc(ps, func(q Problem) bool { return q.Path == p.Path && q.Why == p.Why }) {
			ps = append(ps, p)
		}
	}
	return ps
}

// maxLinks is the kernel's limit on symlinks in one lookup (MAXSYMLINKS).
const maxLinks = 40

// Check judges path for kind and returns every problem found (nil when
// it passes). The rule, as sshd's StrictModes (safe_path in OpenSSH's
// misc.c) applies it, with sticky directories judged as the kernel
// protects them:
//
//   - path is resolved from "/" one component at a time, the way the
//     kernel does; every directory passed, including those reached
//     through a symlink, must be owned by root or the trusting user and
//     not writable by group or others (unless Trust.Groups lists its
//     group, for group write). A group- or world-writable directory
//     passes only with the sticky bit and a trusted owner, and then the
//     entry passed below it must have a trusted owner too (even a
//     symlink): only the owner of an entry, or of the directory, can
//     rename or remove it there.
//   - A symlink is never followed silently: its own directory is judged
//     as above, then its target; a problem found beyond it names the
//     links that led there (Problem.Via).
//   - The path itself must exist (see Optional), be of the kind's type
//     and follow the kind's rule (see the Kind constants).
//
// Fixes chown to root:root, except for what the trusting user must write
// or read alone (SecretFile, DataFile, DataDir, PrivateDir), which go to
// the trusting user (root:root when that is root). A relative path is
// taken from the working directory.
func (t Trust) Check(path string, kind Kind) Problems {
	w := &walker{t: t, seen: map[string]bool{}}
	optional := kind&Optional != 0
	kind &^= Optional
	if path == "" {
		return Problems{{Path: path, Why: "no path given"}}
	}
	abs := path
	if !filepath.IsAbs(path) {
		wd, err := os.Getwd()
		if err != nil {
			return Problems{{Path: path, Why: "cannot resolve a relative path: " + errText(err)}}
		}
		abs = wd + "/" + path // not Join: Clean would take ".." before symlinks are known
	}
	end, ok := w.walk(path, abs)
	switch {
	case !ok:
	case end.fi == nil && !optional:
		why := "does not exist"
		if end.missing != filepath.Clean(abs) {
			why += " (" + shellQuote(end.missing) + " does not)"
		}
		w.add(Problem{Path: path, Why: why})
	case end.fi == nil:
		// It will be created later, by us or by someone else: if others
		// can create entries where it is missing, the first may be theirs.
		// (A directory others can write without the sticky bit, or owned by
		// a stranger, was refused on the way already.)
		if stickyOpen(end.dirFi, t.Groups) && t.trusted(uidOf(end.dirFi)) {
			w.add(Problem{Path: end.missing, Why: fmt.Sprintf("does not exist, and %s (mode %s) lets others create it first: create it, or use a directory only %s can write",
				shellQuote(end.dir), modeText(end.dirFi), t.who())})
		}
	default:
		w.final(end, kind)
	}
	return w.problems
}

// who names the trusted owners in a message.
func (t Trust) who() string {
	if t.UID == 0 {
		return "root"
	}
	return "root or " + t.describe()
}

// describe names the trusting user: "nagios (uid 110)".
func (t Trust) describe() string {
	if t.Name == "" {
		return "uid " + strconv.Itoa(t.UID)
	}
	return t.Name + " (uid " + strconv.Itoa(t.UID) + ")"
}

// owner is the chown argument that makes the trusting user the owner.
func (t Trust) owner() string {
	switch {
	case t.UID == 0:
		return "root:root"
	case t.Name != "":
		return t.Name
	}
	return strconv.Itoa(t.UID)
}

func (t Trust) trusted(uid uint32) bool { return uid == 0 || int(uid) == t.UID }

// walker is one Check: what it found and which directories it judged.
type walker struct {
	t        Trust
	seen     map[string]bool
	via      []Link
	problems Problems
}

func (w *walker) add(p Problem) {
	if p.Via == nil && len(w.via) > 0 {
		p.Via = slices.Clone(w.via)
	}
	w.problems = w.problems.Add(p)
}

// end is where a walk stopped: the real path and its Lstat, or, when it
// does not exist, the first component that does not (missing, fi nil);
// and the real directory holding either, with its Lstat.
type end struct {
	path, missing string
	fi            os.FileInfo
	dir           string
	dirFi         os.FileInfo
}

// walk resolves abs from "/" as the kernel would, judging each directory
// passed (and each entry passed under a sticky one). ok is false when it
// could not go on; the problem is then recorded. cur is always a real
// path (no symlink in it), which is what makes a lexical ".." right.
func (w *walker) walk(path, abs string) (e end, ok bool) {
	cur := "/"
	curFi, err := os.Lstat(cur)
	if err != nil {
		w.add(Problem{Path: cur, Why: "cannot be examined: " + errText(err)})
		return e, false
	}
	rest := components(abs)
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		if c == ".." {
			cur = filepath.Dir(cur)
			if curFi, err = os.Lstat(cur); err != nil {
				w.add(Problem{Path: cur, Why: "cannot be examined: " + errText(err)})
				return e, false
			}
			continue
		}
		// The directory holding next is judged before next is used.
		if !w.seen[cur] {
			w.seen[cur] = true
			w.onTheWay(cur, curFi)
		}
		next := filepath.Join(cur, c)
		fi, err := os.Lstat(next)
		if errors.Is(err, fs.ErrNotExist) {
			return end{missing: next, dir: cur, dirFi: curFi}, true
		}
		if err != nil {
			w.add(Problem{Path: next, Why: "cannot be examined: " + errText(err)})
			return e, false
		}
		if stickyOpen(curFi, w.t.Groups) && !w.t.trusted(uidOf(fi)) && fi.Mode()&fs.ModeSymlink != 0 {
			// A file or directory with a foreign owner is refused for that
			// anyway; a symlink's owner matters only here.
			w.add(Problem{Path: next, Why: fmt.Sprintf("is a symlink owned by %s in the sticky directory %s, who can replace it", ownerText(fi), shellQuote(cur)),
				Fix: "chown -h root:root " + shellQuote(next)})
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if links++; links > maxLinks {
				w.add(Problem{Path: path, Why: "too many levels of symbolic links"})
				return e, false
			}
			target, err := os.Readlink(next)
			if err != nil {
				w.add(Problem{Path: next, Why: "cannot read the symlink: " + errText(err)})
				return e, false
			}
			w.via = append(w.via, Link{Name: next, Target: target})
			if filepath.IsAbs(target) {
				cur = "/"
				if curFi, err = os.Lstat(cur); err != nil {
					w.add(Problem{Path: cur, Why: "cannot be examined: " + errText(err)})
					return e, false
				}
			}
			rest = append(components(target), rest...)
			continue
		}
		if len(rest) > 0 && !fi.IsDir() {
			w.add(Problem{Path: next, Why: "is not a directory"})
			return e, false
		}
		if len(rest) == 0 {
			return end{path: next, fi: fi, dir: cur, dirFi: curFi}, true
		}
		cur, curFi = next, fi
	}
	// The path ends in "/" itself or in "..": its holder is its parent.
	dir := filepath.Dir(cur)
	dirFi, err := os.Lstat(dir)
	if err != nil {
		w.add(Problem{Path: dir, Why: "cannot be examined: " + errText(err)})
		return e, false
	}
	return end{path: cur, fi: curFi, dir: dir, dirFi: dirFi}, true
}

// onTheWay judges a directory passed on the way to the checked path.
func (w *walker) onTheWay(path string, fi os.FileInfo) {
	var why []string
	foreign := !w.t.trusted(uidOf(fi))
	if foreign {
		why = append(why, w.ownedBy(fi))
	}
	sticky := fi.Mode()&fs.ModeSticky != 0
	if writable(fi, w.t.Groups) && !(sticky && !foreign) {
		why = append(why, writableText(fi))
	}
	if len(why) == 0 {
		return
	}
	fix := "chmod go-w " + shellQuote(path)
	if foreign {
		fix = "chown root:root " + shellQuote(path)
		if !sticky { // a sticky directory owned by root is fine open
			fix += " && chmod go-w " + shellQuote(path)
		}
	}
	w.add(Problem{Path: path, Why: strings.Join(why, ", "), Fix: fix})
}

// final judges the checked path itself by kind.
func (w *walker) final(e end, kind Kind) {
	t := w.t
	fi := e.fi
	q := shellQuote(e.path)
	if kind == AnyPath {
		switch {
		case fi.IsDir():
			if !w.seen[e.path] {
				w.seen[e.path] = true
				w.onTheWay(e.path, fi)
			}
			return
		case !fi.Mode().IsRegular():
			return
		}
		kind = ConfigFile
	}
	switch {
	case kind.isDir() && !fi.IsDir():
		w.add(Problem{Path: e.path, Why: "is not a directory (" + typeText(fi) + ")"})
		return
	case !kind.isDir() && !fi.Mode().IsRegular():
		w.add(Problem{Path: e.path, Why: "is not a regular file (" + typeText(fi) + ")"})
		return
	}
	var why []string
	owner := "root:root" // who gets it in the fix
	chmod := "go-w"
	switch kind {
	case ConfigFile, ExecFile:
		if kind == ExecFile && fi.Mode().Perm()&0o111 == 0 {
			why = append(why, "is not executable (mode "+modeText(fi)+")")
			chmod = "755"
		}
	case SecretFile:
		owner = t.owner()
		chmod = "600"
		if fi.Mode().Perm()&0o077 != 0 {
			why = append(why, "is open to group or others (mode "+modeText(fi)+", want 0600 or 0400)")
		}
	case DataFile, DataDir:
		owner = t.owner()
	case PrivateDir:
		owner = t.owner()
		chmod = "700"
		if uidOf(fi) != uint32(t.UID) {
			why = append(why, fmt.Sprintf("is owned by %s, not by %s: a private directory must be its user's own", ownerText(fi), t.describe()))
		}
		if fi.Mode()&(fs.ModePerm|fs.ModeSticky|fs.ModeSetuid|fs.ModeSetgid) != 0o700 {
			why = append(why, "has mode "+modeText(fi)+", not 0700")
		}
	}
	foreign := !t.trusted(uidOf(fi))
	if foreign && kind != PrivateDir {
		why = append([]string{w.ownedBy(fi)}, why...)
	}
	if kind != SecretFile && kind != PrivateDir && writable(fi, t.Groups) {
		why = append(why, writableText(fi))
	}
	if len(why) > 0 {
		fix := "chmod " + chmod + " " + q
		if foreign || (kind == PrivateDir && uidOf(fi) != uint32(t.UID)) {
			fix = "chown " + owner + " " + q + " && " + fix
		}
		w.add(Problem{Path: e.path, Why: strings.Join(why, ", "), Fix: fix})
	}
	// What we write in a directory others can write they can remove,
	// replace or create first, the sticky bit notwithstanding (such a
	// directory passed on the way only because it has one).
	if kind == DataFile && stickyOpen(e.dirFi, t.Groups) && t.trusted(uidOf(e.dirFi)) {
		w.add(Problem{Path: e.dir, Why: "holds " + q + ", which is written, and is " + writableText(e.dirFi) +
			": they can replace or create it; move it to a directory only " + t.who() + " can write"})
	}
}

func (w *walker) ownedBy(fi os.FileInfo) string {
	return "owned by " + ownerText(fi) + ", not by " + w.t.who()
}

// components splits a path into its elements, dropping empty ones and ".".
func components(p string) []string {
	var cs []string
	for c := range strings.SplitSeq(p, "/") {
		if c != "" && c != "." {
			cs = append(cs, c)
		}
	}
	return cs
}

func uidOf(fi os.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid
	}
	return 0
}

func gidOf(fi os.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Gid
	}
	return 0
}

// writable reports write permission for others, or for a group not in
// groups.
func writable(fi os.FileInfo, groups []int) bool {
	perm := fi.Mode().Perm()
	if perm&0o002 != 0 {
		return true
	}
	return perm&0o020 != 0 && !slices.Contains(groups, int(gidOf(fi)))
}

// stickyOpen is a directory others can write whose sticky bit keeps them
// from renaming or removing entries they do not own.
func stickyOpen(fi os.FileInfo, groups []int) bool {
	return fi.Mode()&fs.ModeSticky != 0 && writable(fi, groups)
}

func writableText(fi os.FileInfo) string {
	who := "group"
	switch perm := fi.Mode().Perm(); {
	case perm&0o022 == 0o022:
		who = "group and others"
	case perm&0o002 != 0:
		who = "others"
	}
	return "writable by " + who + " (mode " + modeText(fi) + ")"
}

// modeText is the octal mode as chmod takes it, special bits included.
func modeText(fi os.FileInfo) string {
	m := uint32(fi.Mode().Perm())
	if fi.Mode()&fs.ModeSetuid != 0 {
		m |= 0o4000
	}
	if fi.Mode()&fs.ModeSetgid != 0 {
		m |= 0o2000
	}
	if fi.Mode()&fs.ModeSticky != 0 {
		m |= 0o1000
	}
	return fmt.Sprintf("%04o", m)
}

func typeText(fi os.FileInfo) string {
	switch m := fi.Mode(); {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m.IsRegular():
		return "a regular file"
	}
	return "type " + fi.Mode().Type().String()
}

func ownerText(fi os.FileInfo) string {
	uid := uidOf(fi)
	s := "uid " + strconv.FormatUint(uint64(uid), 10)
	if n := userName(uid); n != "" {
		s += " (" + n + ")"
	}
	return s
}

// userName is uid's login name, "" if it has none.
func userName(uid uint32) string {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return ""
	}
	return u.Username
}

// errText is an Lstat error without the path, which the Problem has.
func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// shellQuote makes p one shell word that an admin can paste: as is when
// it is plain, else in single quotes, else (control characters, invalid
// UTF-8, bidi controls) in bash's $'...' with those bytes escaped, so a
// crafted file name can neither run a command nor drive the terminal.
func shellQuote(p string) string {
	if p != "" && strings.Trim(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._+,:=@%-") == "" {
		return p
	}
	if utf8.ValidString(p) && !strings.ContainsFunc(p, textsafe.Unsafe) {
		return "'" + strings.ReplaceAll(p, "'", `'\''`) + "'"
	}
	var b strings.Builder
	b.WriteString("$'")
	for i := 0; i < len(p); {
		r, n := utf8.DecodeRuneInString(p[i:])
		switch {
		case r == '\'' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case (r == utf8.RuneError && n == 1) || textsafe.Unsafe(r):
			for _, c := range []byte(p[i : i+n]) {
				fmt.Fprintf(&b, `\x%02x`, c)
			}
		default:
			b.WriteString(p[i : i+n])
		}
		i += n
	}
	b.WriteString("'")
	return b.String()
}
