package fsutil

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

// stranger is the local attacker: nobody's uid, as on most systems.
const stranger = 65534

// node is one entry of a test tree, under the test's root: a directory
// (mode has fs.ModeDir), a symlink (Target set) or a file; a FIFO with
// fs.ModeNamedPipe. uid and gid default to root.
type node struct {
	path   string
	mode   fs.FileMode
	uid    int
	gid    int
	target string // for a symlink; "{r}" is the root
}

func dir(path string, mode fs.FileMode, uid int) node {
	return node{path: path, mode: fs.ModeDir | mode, uid: uid}
}
func file(path string, mode fs.FileMode, uid int) node {
	return node{path: path, mode: mode, uid: uid}
}
func link(path, target string, uid int) node {
	return node{path: path, target: target, uid: uid}
}

// build makes the nodes under root, in order, with exactly their modes
// and owners.
func build(t *testing.T, root string, nodes []node) {
	t.Helper()
	for _, n := range nodes {
		p := filepath.Join(root, n.path)
		var err error
		switch {
		case n.target != "":
			err = os.Symlink(strings.ReplaceAll(n.target, "{r}", root), p)
		case n.mode&fs.ModeDir != 0:
			err = os.Mkdir(p, 0o700)
		case n.mode&fs.ModeNamedPipe != 0:
			err = syscall.Mkfifo(p, 0o600)
		default:
			err = os.WriteFile(p, []byte("x\n"), 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(p, n.uid, n.gid); err != nil {
			t.Fatal(err)
		}
		if n.target == "" {
			if err := os.Chmod(p, unixMode(n.mode)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// unixMode reads the low 12 bits as chmod does: 01777 is sticky.
func unixMode(m fs.FileMode) fs.FileMode {
	fm := m & fs.ModePerm
	for bit, mode := range map[fs.FileMode]fs.FileMode{0o1000: fs.ModeSticky, 0o2000: fs.ModeSetgid, 0o4000: fs.ModeSetuid} {
		if m&bit != 0 {
			fm |= mode
		}
	}
	return fm
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("files owned by another uid need root")
	}
}

// want is one expected Problem: Path and Fix exact ("{r}" is the root),
// every string of Why in Problem.Why, Via exact.
type want struct {
	path string
	why  []string
	fix  string
	via  []Link
}

var (
	asRoot   = Trust{UID: 0, Name: "root"}
	asNagios = Trust{UID: 4321, Name: "nagios"}
)

// Root owns a sane skeleton in every case: {r}/etc 0755 with x.yaml 0644.
var base = []node{dir("etc", 0o755, 0), file("etc/x.yaml", 0o644, 0)}

func TestCheck(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name  string
		nodes []node // after base
		trust Trust  // asRoot when zero
		path  string // under {r}; or absolute after "{r}"
		kind  Kind
		want  []want
	}{
		// The happy paths.
		{name: "root's config in root's 0755 tree", path: "etc/x.yaml", kind: ConfigFile},
		{name: "a secret 0600", nodes: []node{file("etc/k", 0o600, 0)}, path: "etc/k", kind: SecretFile},
		{name: "a secret 0400", nodes: []node{file("etc/k", 0o400, 0)}, path: "etc/k", kind: SecretFile},
		{name: "an executable 0755", nodes: []node{file("etc/run", 0o755, 0)}, path: "etc/run", kind: ExecFile},
		{name: "a data file 0640", nodes: []node{file("etc/audit.log", 0o640, 0)}, path: "etc/audit.log", kind: DataFile},
		{name: "a data file not there yet", path: "etc/audit.log", kind: DataFile | Optional},
		{name: "a private dir 0700", nodes: []node{dir("state", 0o700, 0)}, path: "state", kind: PrivateDir},
		{name: "a private dir not there yet", path: "state/listener", kind: PrivateDir | Optional},
		{name: "a data dir 0755", path: "etc", kind: DataDir},
		{name: "a symlink in a good dir to a good file", nodes: []node{link("etc/l.yaml", "x.yaml", stranger)}, path: "etc/l.yaml", kind: ConfigFile},
		{name: "the trusting user's own files", trust: asNagios,
			nodes: []node{dir("etc/n", 0o755, 4321), file("etc/n/k", 0o600, 4321), dir("etc/n/state", 0o700, 4321)},
			path:  "etc/n/k", kind: SecretFile},
		{name: "kernel semantics of .. after a symlink: a/l/.. is evil/, not a/",
			nodes: []node{dir("evil", 0o755, stranger), dir("evil/sub", 0o755, 0), file("evil/x.yaml", 0o644, 0), link("etc/l", "{r}/evil/sub", 0)},
			path:  "etc/l/../x.yaml", kind: ConfigFile,
			want: []want{{path: "{r}/evil", why: []string{"owned by uid 65534", "not by root"}, fix: "chown root:root {r}/evil && chmod go-w {r}/evil",
				via: []Link{{"{r}/etc/l", "{r}/evil/sub"}}}}},

		// The file itself.
		{name: "config owned by a stranger", nodes: []node{file("etc/s.yaml", 0o644, stranger)}, path: "etc/s.yaml", kind: ConfigFile,
			want: []want{{path: "{r}/etc/s.yaml", why: []string{"owned by uid 65534", "not by root"}, fix: "chown root:root {r}/etc/s.yaml && chmod go-w {r}/etc/s.yaml"}}},
		{name: "config 0664", nodes: []node{file("etc/s.yaml", 0o664, 0)}, path: "etc/s.yaml", kind: ConfigFile,
			want: []want{{path: "{r}/etc/s.yaml", why: []string{"writable by group (mode 0664)"}, fix: "chmod go-w {r}/etc/s.yaml"}}},
		{name: "config 0646", nodes: []node{file("etc/s.yaml", 0o646, 0)}, path: "etc/s.yaml", kind: ConfigFile,
			want: []want{{path: "{r}/etc/s.yaml", why: []string{"writable by others (mode 0646)"}, fix: "chmod go-w {r}/etc/s.yaml"}}},
		{name: "config 0666 of a stranger: one problem, both causes", nodes: []node{file("etc/s.yaml", 0o666, stranger)}, path: "etc/s.yaml", kind: ConfigFile,
			want: []want{{path: "{r}/etc/s.yaml", why: []string{"owned by uid 65534", "writable by group and others (mode 0666)"}, fix: "chown root:root {r}/etc/s.yaml && chmod go-w {r}/etc/s.yaml"}}},
		{name: "group write by a trusted group", nodes: []node{{path: "etc/g.yaml", mode: 0o664, gid: 4242}}, trust: Trust{Name: "root", Groups: []int{4242}},
			path: "etc/g.yaml", kind: ConfigFile},
		{name: "group write by another group", nodes: []node{{path: "etc/g.yaml", mode: 0o664, gid: 4243}}, trust: Trust{Name: "root", Groups: []int{4242}},
			path: "etc/g.yaml", kind: ConfigFile,
			want: []want{{path: "{r}/etc/g.yaml", why: []string{"writable by group (mode 0664)"}, fix: "chmod go-w {r}/etc/g.yaml"}}},
		{name: "a writable interpreter script", nodes: []node{file("etc/restart.sh", 0o775, 0)}, path: "etc/restart.sh", kind: ExecFile,
			want: []want{{path: "{r}/etc/restart.sh", why: []string{"writable by group (mode 0775)"}, fix: "chmod go-w {r}/etc/restart.sh"}}},
		{name: "an executable without x", nodes: []node{file("etc/run", 0o644, 0)}, path: "etc/run", kind: ExecFile,
			want: []want{{path: "{r}/etc/run", why: []string{"is not executable (mode 0644)"}, fix: "chmod 755 {r}/etc/run"}}},
		{name: "a secret 0640", nodes: []node{file("etc/k", 0o640, 0)}, path: "etc/k", kind: SecretFile,
			want: []want{{path: "{r}/etc/k", why: []string{"open to group or others (mode 0640"}, fix: "chmod 600 {r}/etc/k"}}},
		{name: "a secret of a stranger", nodes: []node{file("etc/k", 0o600, stranger)}, path: "etc/k", kind: SecretFile,
			want: []want{{path: "{r}/etc/k", why: []string{"owned by uid 65534"}, fix: "chown root:root {r}/etc/k && chmod 600 {r}/etc/k"}}},
		{name: "the handler's secret of a stranger: the fix gives it to nagios", trust: asNagios,
			nodes: []node{file("etc/k", 0o600, stranger)}, path: "etc/k", kind: SecretFile,
			want: []want{{path: "{r}/etc/k", why: []string{"owned by uid 65534", "not by root or nagios (uid 4321)"}, fix: "chown nagios {r}/etc/k && chmod 600 {r}/etc/k"}}},
		{name: "a FIFO for a config", nodes: []node{file("etc/fifo", fs.ModeNamedPipe|0o644, 0)}, path: "etc/fifo", kind: ConfigFile,
			want: []want{{path: "{r}/etc/fifo", why: []string{"is not a regular file (a FIFO)"}}}},
		{name: "a directory for a config", path: "etc", kind: ConfigFile,
			want: []want{{path: "{r}/etc", why: []string{"is not a regular file (a directory)"}}}},
		{name: "missing", path: "etc/none.yaml", kind: ConfigFile,
			want: []want{{path: "{r}/etc/none.yaml", why: []string{"does not exist"}}}},
		{name: "missing directory on the way", path: "etc/no/none.yaml", kind: ConfigFile,
			want: []want{{path: "{r}/etc/no/none.yaml", why: []string{"does not exist ({r}/etc/no does not)"}}}},
		{name: "missing but optional", path: "etc/none.yaml", kind: ConfigFile | Optional},

		// The directories on the way.
		{name: "a world-writable parent", nodes: []node{dir("w", 0o777, 0), file("w/x.yaml", 0o644, 0)}, path: "w/x.yaml", kind: ConfigFile,
			want: []want{{path: "{r}/w", why: []string{"writable by group and others (mode 0777)"}, fix: "chmod go-w {r}/w"}}},
		{name: "a group-writable parent", nodes: []node{dir("w", 0o775, 0), file("w/x.yaml", 0o644, 0)}, path: "w/x.yaml", kind: ConfigFile,
			want: []want{{path: "{r}/w", why: []string{"writable by group (mode 0775)"}, fix: "chmod go-w {r}/w"}}},
		{name: "a parent owned by a stranger", nodes: []node{dir("w", 0o755, stranger), file("w/x.yaml", 0o644, 0)}, path: "w/x.yaml", kind: ConfigFile,
			want: []want{{path: "{r}/w", why: []string{"owned by uid 65534"}, fix: "chown root:root {r}/w && chmod go-w {r}/w"}}},
		{name: "every problem at once, from / down",
			nodes: []node{dir("w", 0o777, stranger), dir("w/v", 0o775, 0), file("w/v/x.yaml", 0o666, stranger)}, path: "w/v/x.yaml", kind: ConfigFile,
			want: []want{
				{path: "{r}/w", why: []string{"owned by uid 65534", "writable by group and others (mode 0777)"}, fix: "chown root:root {r}/w && chmod go-w {r}/w"},
				{path: "{r}/w/v", why: []string{"writable by group (mode 0775)"}, fix: "chmod go-w {r}/w/v"},
				{path: "{r}/w/v/x.yaml", why: []string{"owned by uid 65534", "writable by group and others (mode 0666)"}, fix: "chown root:root {r}/w/v/x.yaml && chmod go-w {r}/w/v/x.yaml"},
			}},
		{name: "a file on the way", path: "etc/x.yaml/y", kind: ConfigFile,
			want: []want{{path: "{r}/etc/x.yaml", why: []string{"is not a directory"}}}},

		// Symlinks: the link's directory and the target's are both judged.
		{name: "a symlink into a stranger's directory",
			nodes: []node{dir("evil", 0o755, stranger), file("evil/x.yaml", 0o644, 0), link("etc/l.yaml", "../evil/x.yaml", 0)},
			path:  "etc/l.yaml", kind: ConfigFile,
			want: []want{{path: "{r}/evil", why: []string{"owned by uid 65534"}, fix: "chown root:root {r}/evil && chmod go-w {r}/evil",
				via: []Link{{"{r}/etc/l.yaml", "../evil/x.yaml"}}}}},
		{name: "a symlink to a stranger's file",
			nodes: []node{file("etc/s.yaml", 0o644, stranger), link("etc/l.yaml", "{r}/etc/s.yaml", 0)},
			path:  "etc/l.yaml", kind: ConfigFile,
			want: []want{{path: "{r}/etc/s.yaml", why: []string{"owned by uid 65534"}, fix: "chown root:root {r}/etc/s.yaml && chmod go-w {r}/etc/s.yaml",
				via: []Link{{"{r}/etc/l.yaml", "{r}/etc/s.yaml"}}}}},
		{name: "a symlinked directory on the way, into a writable one",
			nodes: []node{dir("w", 0o777, 0), file("w/x.yaml", 0o644, 0), link("etc/conf", "../w", 0)},
			path:  "etc/conf/x.yaml", kind: ConfigFile,
			want: []want{{path: "{r}/w", why: []string{"writable by group and others (mode 0777)"}, fix: "chmod go-w {r}/w",
				via: []Link{{"{r}/etc/conf", "../w"}}}}},
		{name: "a good symlink in a writable directory",
			nodes: []node{dir("w", 0o777, 0), link("w/l.yaml", "{r}/etc/x.yaml", 0)},
			path:  "w/l.yaml", kind: ConfigFile,
			want: []want{{path: "{r}/w", why: []string{"writable by group and others (mode 0777)"}, fix: "chmod go-w {r}/w"}}},
		{name: "a dangling symlink", nodes: []node{link("etc/l.yaml", "gone.yaml", 0)}, path: "etc/l.yaml", kind: ConfigFile,
			want: []want{{path: "{r}/etc/l.yaml", why: []string{"does not exist ({r}/etc/gone.yaml does not)"}, via: []Link{{"{r}/etc/l.yaml", "gone.yaml"}}}}},
		{name: "a symlink loop", nodes: []node{link("etc/a", "b", 0), link("etc/b", "a", 0)}, path: "etc/a", kind: ConfigFile,
			want: []want{{path: "{r}/etc/a", why: []string{"too many levels of symbolic links"}, via: loop("{r}/etc/a", "{r}/etc/b")}}},

		// Sticky directories, /tmp style.
		{name: "root's file in a sticky root dir", nodes: []node{dir("tmp", 0o1777, 0), file("tmp/x.yaml", 0o644, 0)}, path: "tmp/x.yaml", kind: ConfigFile},
		{name: "a stranger's file in a sticky root dir", nodes: []node{dir("tmp", 0o1777, 0), file("tmp/x.yaml", 0o644, stranger)}, path: "tmp/x.yaml", kind: ConfigFile,
			want: []want{{path: "{r}/tmp/x.yaml", why: []string{"owned by uid 65534"}, fix: "chown root:root {r}/tmp/x.yaml && chmod go-w {r}/tmp/x.yaml"}}},
		{name: "a stranger's directory in a sticky root dir", nodes: []node{dir("tmp", 0o1777, 0), dir("tmp/d", 0o755, stranger), file("tmp/d/x.yaml", 0o644, 0)},
			path: "tmp/d/x.yaml", kind: ConfigFile,
			want: []want{{path: "{r}/tmp/d", why: []string{"owned by uid 65534"}, fix: "chown root:root {r}/tmp/d && chmod go-w {r}/tmp/d"}}},
		{name: "a stranger's symlink in a sticky root dir", nodes: []node{dir("tmp", 0o1777, 0), link("tmp/l.yaml", "{r}/etc/x.yaml", stranger)},
			path: "tmp/l.yaml", kind: ConfigFile,
			want: []want{{path: "{r}/tmp/l.yaml", why: []string{"is a symlink owned by uid 65534", "in the sticky directory {r}/tmp, who can replace it"}, fix: "chown -h root:root {r}/tmp/l.yaml"}}},
		{name: "a sticky dir owned by a stranger", nodes: []node{dir("tmp", 0o1777, stranger), file("tmp/x.yaml", 0o644, 0)}, path: "tmp/x.yaml", kind: ConfigFile,
			want: []want{{path: "{r}/tmp", why: []string{"owned by uid 65534", "writable by group and others (mode 1777)"}, fix: "chown root:root {r}/tmp"}}},
		{name: "a sticky group-writable dir", nodes: []node{dir("tmp", 0o1775, 0), file("tmp/x.yaml", 0o644, 0)}, path: "tmp/x.yaml", kind: ConfigFile},
		{name: "a missing optional file in a sticky dir: others can create it first", nodes: []node{dir("tmp", 0o1777, 0)}, path: "tmp/x.yaml", kind: ConfigFile | Optional,
			want: []want{{path: "{r}/tmp/x.yaml", why: []string{"does not exist, and {r}/tmp (mode 1777) lets others create it first: create it, or use a directory only root can write"}}}},
		{name: "a data file in a sticky dir", nodes: []node{dir("tmp", 0o1777, 0), file("tmp/audit.log", 0o640, 0)}, path: "tmp/audit.log", kind: DataFile,
			want: []want{{path: "{r}/tmp", why: []string{"holds {r}/tmp/audit.log, which is written", "writable by group and others (mode 1777)", "move it to a directory only root can write"}}}},
		{name: "a sticky dir as a data dir", nodes: []node{dir("tmp", 0o1777, 0)}, path: "tmp", kind: DataDir,
			want: []want{{path: "{r}/tmp", why: []string{"writable by group and others (mode 1777)"}, fix: "chmod go-w {r}/tmp"}}},

		// An action's arguments.
		{name: "an argument: root's script", nodes: []node{file("etc/restart.sh", 0o644, 0)}, path: "etc/restart.sh", kind: AnyPath | Optional},
		{name: "an argument: a writable script", nodes: []node{file("etc/restart.sh", 0o666, 0)}, path: "etc/restart.sh", kind: AnyPath | Optional,
			want: []want{{path: "{r}/etc/restart.sh", why: []string{"writable by group and others (mode 0666)"}, fix: "chmod go-w {r}/etc/restart.sh"}}},
		{name: "an argument: a sticky root dir", nodes: []node{dir("tmp", 0o1777, 0)}, path: "tmp", kind: AnyPath | Optional},
		{name: "an argument: a writable dir", nodes: []node{dir("w", 0o777, 0)}, path: "w", kind: AnyPath | Optional,
			want: []want{{path: "{r}/w", why: []string{"writable by group and others (mode 0777)"}, fix: "chmod go-w {r}/w"}}},
		{name: "an argument: a device-like 0666 FIFO", nodes: []node{file("etc/null", fs.ModeNamedPipe|0o666, 0)}, path: "etc/null", kind: AnyPath | Optional},
		{name: "an argument: a FIFO in a writable dir", nodes: []node{dir("w", 0o777, 0), file("w/null", fs.ModeNamedPipe|0o666, 0)}, path: "w/null", kind: AnyPath | Optional,
			want: []want{{path: "{r}/w", why: []string{"writable by group and others (mode 0777)"}, fix: "chmod go-w {r}/w"}}},
		{name: "an argument not there", path: "etc/none.sh", kind: AnyPath | Optional},

		// Directories as such.
		{name: "a data dir of a stranger", nodes: []node{dir("d", 0o755, stranger)}, path: "d", kind: DataDir,
			want: []want{{path: "{r}/d", why: []string{"owned by uid 65534"}, fix: "chown root:root {r}/d && chmod go-w {r}/d"}}},
		{name: "a file for a data dir", path: "etc/x.yaml", kind: DataDir,
			want: []want{{path: "{r}/etc/x.yaml", why: []string{"is not a directory (a regular file)"}}}},
		{name: "a private dir 0755", nodes: []node{dir("state", 0o755, 0)}, path: "state", kind: PrivateDir,
			want: []want{{path: "{r}/state", why: []string{"has mode 0755, not 0700"}, fix: "chmod 700 {r}/state"}}},
		{name: "a private dir 2700", nodes: []node{dir("state", 0o2700, 0)}, path: "state", kind: PrivateDir,
			want: []want{{path: "{r}/state", why: []string{"has mode 2700, not 0700"}, fix: "chmod 700 {r}/state"}}},
		{name: "a private dir of a stranger", nodes: []node{dir("state", 0o700, stranger)}, path: "state", kind: PrivateDir,
			want: []want{{path: "{r}/state", why: []string{"is owned by uid 65534", "not by root (uid 0)"}, fix: "chown root:root {r}/state && chmod 700 {r}/state"}}},
		{name: "the handler's private dir owned by root", trust: asNagios, nodes: []node{dir("state", 0o700, 0)}, path: "state", kind: PrivateDir,
			want: []want{{path: "{r}/state", why: []string{"is owned by uid 0 (root), not by nagios (uid 4321)"}, fix: "chown nagios {r}/state && chmod 700 {r}/state"}}},
		{name: "a private dir to create in a sticky dir", nodes: []node{dir("tmp", 0o1777, 0)}, path: "tmp/state", kind: PrivateDir | Optional,
			want: []want{{path: "{r}/tmp/state", why: []string{"lets others create it first"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := t.TempDir()
			build(t, r, append(slicesClone(base), tt.nodes...))
			trust := tt.trust
			if trust.Name == "" {
				trust = asRoot
			}
			got := trust.Check(r+"/"+tt.path, tt.kind) // not Join: it would Clean ".."
			assertProblems(t, r, got, tt.want)
		})
	}
}

func slicesClone(ns []node) []node { return append([]node(nil), ns...) }

// loop is the Via of a two-link loop, cut after maxLinks links.
func loop(a, b string) []Link {
	var l []Link
	for i := range maxLinks {
		if i%2 == 0 {
			l = append(l, Link{a, "b"})
		} else {
			l = append(l, Link{b, "a"})
		}
	}
	return l
}

func assertProblems(t *testing.T, r string, got Problems, wants []want) {
	t.Helper()
	sub := func(s string) string { return strings.ReplaceAll(s, "{r}", r) }
	if len(got) != len(wants) {
		t.Fatalf("got %d problems, want %d:\n%v", len(got), len(wants), got)
	}
	for i, w := range wants {
		p := got[i]
		if p.Path != sub(w.path) {
			t.Errorf("problem %d: Path %q, want %q (%v)", i, p.Path, sub(w.path), p)
		}
		for _, why := range w.why {
			if !strings.Contains(p.Why, sub(why)) {
				t.Errorf("problem %d: Why %q does not say %q", i, p.Why, sub(why))
			}
		}
		if p.Fix != sub(w.fix) {
			t.Errorf("problem %d: Fix %q, want %q", i, p.Fix, sub(w.fix))
		}
		var via []Link
		for _, l := range w.via {
			via = append(via, Link{sub(l.Name), sub(l.Target)})
		}
		if !reflect.DeepEqual(p.Via, via) {
			t.Errorf("problem %d: Via %v, want %v", i, p.Via, via)
		}
	}
}

func TestCheckRelative(t *testing.T) {
	needRoot(t)
	r := t.TempDir()
	build(t, r, []node{dir("w", 0o777, 0), file("w/x.yaml", 0o644, 0)})
	t.Chdir(r)
	assertProblems(t, r, asRoot.Check("w/x.yaml", ConfigFile),
		[]want{{path: "{r}/w", why: []string{"writable by group and others (mode 0777)"}, fix: "chmod go-w {r}/w"}})
}

// TestCheckInstalledTree: what the shipped samples become once installed
// (install's modes: 0755 directories, 0644 files, 0755 scripts, 0600 keys,
// a 0700 state dir) passes, so the rule never blocks a normal install.
func TestCheckInstalledTree(t *testing.T) {
	r := t.TempDir()
	self := Self()
	mkdir := func(p string, perm fs.FileMode) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(r, p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(r, p), perm); err != nil {
			t.Fatal(err)
		}
	}
	put := func(p string, b []byte, perm fs.FileMode) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(r, p), b, perm); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(r, p), perm); err != nil {
			t.Fatal(err)
		}
	}
	type check struct {
		path string
		kind Kind
	}
	var checks []check
	// Every shipped sample, as install puts it.
	src := filepath.Join("..", "..", "nagios-config")
	err := filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		dst := filepath.Join("usr/share/selfheal", rel)
		if e.IsDir() {
			mkdir(dst, 0o755)
			checks = append(checks, check{dst, DataDir})
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, _ := e.Info()
		perm, kind := fs.FileMode(0o644), ConfigFile
		if fi.Mode().Perm()&0o111 != 0 {
			perm, kind = 0o755, ExecFile
		}
		put(dst, b, perm)
		checks = append(checks, check{dst, kind})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(checks) < 10 {
		t.Fatalf("found only %d samples under %s", len(checks), src)
	}
	// The layout of the sample config and the systemd units.
	sample, err := os.ReadFile(filepath.Join(src, "listener", "worker_listener.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	mkdir("etc/selfheal/keys", 0o755)
	put("etc/selfheal/worker_listener.yaml", sample, 0o644)
	put("etc/selfheal/keys/nagios1.key", []byte("k\n"), 0o600)
	mkdir("var/lib/selfheal/listener", 0o700) // StateDirectory=, StateDirectoryMode=0700
	mkdir("var/log/selfheal", 0o755)          // LogsDirectory=
	mkdir("usr/local/sbin", 0o755)
	put("usr/local/sbin/worker_listener", []byte("\x7fELF"), 0o755)
	checks = append(checks,
		check{"etc/selfheal/worker_listener.yaml", ConfigFile},
		check{"etc/selfheal/keys/nagios1.key", SecretFile},
		check{"var/lib/selfheal/listener", PrivateDir},
		check{"var/log/selfheal", DataDir},
		check{"var/log/selfheal/audit.log", DataFile | Optional},
		check{"usr/local/sbin/worker_listener", ExecFile},
	)
	var all Problems
	for _, c := range checks {
		all = all.Add(self.Check(filepath.Join(r, c.path), c.kind)...)
	}
	if len(all) > 0 {
		t.Fatalf("a normal install is refused:\n%v", all)
	}
}

func TestProblemError(t *testing.T) {
	p := Problem{
		Path: "/etc/selfheal/x.yaml",
		Why:  "owned by uid 65534 (nobody), not by root",
		Via:  []Link{{"/etc/selfheal/l.yaml", "x.yaml"}},
		Fix:  "chown root:root /etc/selfheal/x.yaml && chmod go-w /etc/selfheal/x.yaml",
	}
	want := "/etc/selfheal/x.yaml: owned by uid 65534 (nobody), not by root (/etc/selfheal/l.yaml is a symlink to x.yaml): run chown root:root /etc/selfheal/x.yaml && chmod go-w /etc/selfheal/x.yaml"
	if got := p.Error(); got != want {
		t.Errorf("Error() =\n%s\nwant\n%s", got, want)
	}
	if got := (Problem{Path: "/x", Why: "does not exist"}).Error(); got != "/x: does not exist" {
		t.Errorf("no fix: %q", got)
	}
	ps := Problems{p, {Path: "/x", Why: "does not exist"}}
	if got := ps.Error(); got != want+"\n/x: does not exist" {
		t.Errorf("Problems.Error() = %q", got)
	}
	if ps.Err() == nil || Problems(nil).Err() != nil {
		t.Error("Err: want non-nil for problems, nil for none")
	}
	if got := ps.Add(Problem{Path: "/x", Why: "does not exist"}, Problem{Path: "/y", Why: "w"}); len(got) != 3 {
		t.Errorf("Add did not drop the duplicate: %v", got)
	}
}

// TestCheckHostilePath: a file name crafted to run a command or drive the
// terminal when an admin pastes or reads the fix.
func TestCheckHostilePath(t *testing.T) {
	needRoot(t)
	r := t.TempDir()
	name := "x; rm -rf ~ '\n\x1b[2J\u202e.yaml"
	build(t, r, []node{file(name, 0o666, 0)})
	ps := asRoot.Check(filepath.Join(r, name), ConfigFile)
	if len(ps) != 1 {
		t.Fatalf("got %v", ps)
	}
	want := `chmod go-w $'` + r + `/x; rm -rf ~ \'\x0a\x1b[2J\xe2\x80\xae.yaml'`
	if ps[0].Fix != want {
		t.Errorf("Fix = %q, want %q", ps[0].Fix, want)
	}
	if msg := ps[0].Error(); strings.ContainsAny(msg, "\n\x1b\u202e") {
		t.Errorf("Error() passes control characters: %q", msg)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/etc/selfheal/x.yaml": "/etc/selfheal/x.yaml",
		"/a b":                 "'/a b'",
		"/it's":                `'/it'\''s'`,
		"/a\nb":                `$'/a\x0ab'`,
		"/\xff":                `$'/\xff'`,
		"/$(id)'\t":            `$'/$(id)\'\x09'`,
		"":                     "''",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
