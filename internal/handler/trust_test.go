package handler

import (
	"github.com/selfheal/selfheal/internal/lab/testutil"

	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/nodestate"
	"github.com/selfheal/selfheal/internal/protocol"
)

// The local attacker on the monitoring node: nobody's uid. The handler's
// own user in these tests is nagios, a uid of its own (no account needed).
const (
	attacker = 65534
	nagiosID = 4321
)

var (
	asRoot   = fsutil.Trust{UID: 0, Name: "root"}
	asNagios = fsutil.Trust{UID: nagiosID, Name: "nagios"}
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("files owned by another uid need root")
	}
}

// tree is a root-owned 0755 directory, as /etc and /var/lib are, under
// t.TempDir (whose parents are root's and 0700 or sticky /tmp).
func tree(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

func mkdir(t *testing.T, p string, perm os.FileMode, uid int) string {
	t.Helper()
	if err := os.Mkdir(p, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil {
		t.Fatal(err)
	}
	if uid != os.Geteuid() {
		if err := os.Chown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// fleetKey writes a fleet key with exactly perm, owned by uid.
func fleetKey(t *testing.T, p string, perm os.FileMode, uid int) string {
	t.Helper()
	k, err := protocol.GenerateFleetKey("fleet1")
	if err != nil {
		t.Fatal(err)
	}
	if err := protocol.WriteKeyFile(p, k); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, uid, uid); err != nil {
		t.Fatal(err)
	}
	return p
}

func assertRefused(t *testing.T, err error, what, path string, want ...string) {
	t.Helper()
	var te *nodestate.TrustError
	if !errors.As(err, &te) || te.What != what || te.Path != path {
		t.Fatalf("err = %v, want the %s %s refused by the trust rule", err, what, path)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("refusal %q does not say %q", err, w)
		}
	}
}

func TestLoadKeyTrust(t *testing.T) {
	needRoot(t)
	r := tree(t)
	// The same rig first passes: the refusals below are the rule's.
	good := fleetKey(t, filepath.Join(r, "good.key"), 0o600, 0)
	if _, err := nodestate.LoadKey(asRoot, good); err != nil {
		t.Fatalf("root's 0600 key in root's 0755 tree: %v", err)
	}
	mine := fleetKey(t, filepath.Join(r, "nagios.key"), 0o400, nagiosID)
	if _, err := nodestate.LoadKey(asNagios, mine); err != nil {
		t.Fatalf("nagios' 0400 key: %v", err)
	}

	theirs := fleetKey(t, filepath.Join(r, "theirs.key"), 0o600, attacker)
	_, err := nodestate.LoadKey(asNagios, theirs)
	assertRefused(t, err, "key file", theirs, "owned by uid 65534 (nobody), not by root or nagios (uid 4321)",
		"run chown nagios "+theirs+" && chmod 600 "+theirs)

	loose := fleetKey(t, filepath.Join(r, "loose.key"), 0o640, 0)
	_, err = nodestate.LoadKey(asRoot, loose)
	assertRefused(t, err, "key file", loose, "is open to group or others (mode 0640, want 0600 or 0400)", "run chmod 600 "+loose)

	open := mkdir(t, filepath.Join(r, "open"), 0o775, 0)
	inOpen := fleetKey(t, filepath.Join(open, "k.key"), 0o600, 0)
	_, err = nodestate.LoadKey(asRoot, inOpen)
	assertRefused(t, err, "key file", inOpen, open+": writable by group (mode 0775)", "run chmod go-w "+open)

	// A missing key is reported as it always was.
	if _, err := nodestate.LoadKey(asRoot, filepath.Join(r, "missing.key")); err == nil || !strings.Contains(err.Error(), "key file: open ") ||
		!strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing key: %v", err)
	}
}

func TestStoreTrust(t *testing.T) {
	needRoot(t)
	r := tree(t)
	rec := nodestate.Record{Host: "web1", Service: "w", Result: kindHealed}
	ctx := context.Background()

	// The handler's own 0700 directory, as nagios; root's as root.
	mineDir := mkdir(t, filepath.Join(r, "nagios-state"), 0o700, nagiosID)
	rootDir := mkdir(t, filepath.Join(r, "root-state"), 0o700, 0)
	for _, s := range []nodestate.Store{{Dir: mineDir, Trust: asNagios}, {Dir: rootDir, Trust: asRoot}} {
		if err := s.Write(ctx, rec); err != nil {
			t.Fatalf("%s as %s: %v", s.Dir, s.Trust.Name, err)
		}
		if got, err := s.Read("web1", "w"); err != nil || got == nil || got.Result != kindHealed {
			t.Fatalf("%s as %s: read %+v, %v", s.Dir, s.Trust.Name, got, err)
		}
	}

	tests := []struct {
		name  string
		dir   string
		trust fsutil.Trust
		want  []string
	}{
		{"owned by the attacker", mkdir(t, filepath.Join(r, "theirs"), 0o700, attacker), asNagios,
			[]string{"is owned by uid 65534 (nobody), not by nagios (uid 4321)", "&& chmod 700 "}},
		{"0755", mkdir(t, filepath.Join(r, "open"), 0o755, nagiosID), asNagios,
			[]string{"has mode 0755, not 0700", "run chmod 700 " + filepath.Join(r, "open")}},
		{"root's, as nagios", rootDir, asNagios, []string{"is owned by uid 0 (root), not by nagios (uid 4321)"}},
		{"in a group-writable directory", mkdir(t, filepath.Join(mkdir(t, filepath.Join(r, "gw"), 0o775, 0), "state"), 0o700, nagiosID), asNagios,
			[]string{filepath.Join(r, "gw") + ": writable by group (mode 0775)", "run chmod go-w " + filepath.Join(r, "gw")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := nodestate.Store{Dir: tt.dir, Trust: tt.trust}
			before, _ := os.ReadDir(tt.dir)
			assertRefused(t, s.Write(ctx, rec), "state directory", tt.dir, tt.want...)
			_, err := s.Read("web1", "w")
			assertRefused(t, err, "state directory", tt.dir, tt.want...)
			if after, _ := os.ReadDir(tt.dir); len(after) != len(before) {
				t.Fatalf("something was written in a refused directory: %v", after)
			}
		})
	}
	// A symlink as the state directory itself is not followed either.
	link := filepath.Join(r, "link-state")
	os.Symlink(mineDir, link)
	if err := (nodestate.Store{Dir: link, Trust: asNagios}).Write(ctx, rec); !errors.Is(err, fsutil.ErrSymlink) {
		t.Fatalf("state dir through a symlink: %v", err)
	}
}

// TestStorePlantedSymlinks: a symlink planted as the record, before the
// first write or between two, as the lock or as a temp file, is never
// followed: its target is neither written nor created.
func TestStorePlantedSymlinks(t *testing.T) {
	ctx := context.Background()
	rec := func(result string) nodestate.Record {
		return nodestate.Record{Host: "web1", Service: "w", Result: result}
	}
	name := strings.TrimSuffix(filepath.Base(nodestate.Store{}.Path("web1", "w")), ".json")
	setup := func(t *testing.T) (nodestate.Store, string) {
		t.Helper()
		r := tree(t)
		self := fsutil.User(os.Geteuid())
		return nodestate.Store{Dir: mkdir(t, filepath.Join(r, "state"), 0o700, self.UID), Trust: self}, testutil.Victim(t, r)
	}
	assertRecord := func(t *testing.T, s nodestate.Store, want string) {
		t.Helper()
		fi, err := os.Lstat(s.Path("web1", "w"))
		if err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("the record is not a regular file: %v %v", fi, err)
		}
		if got, err := s.Read("web1", "w"); err != nil || got == nil || got.Result != want {
			t.Fatalf("record %+v, %v; want result %s", got, err, want)
		}
	}

	t.Run("record, before the first write", func(t *testing.T) {
		s, v := setup(t)
		os.Symlink(v, s.Path("web1", "w"))
		// A read (the dry run) shows no other file as the record.
		if _, err := s.Read("web1", "w"); !errors.Is(err, nodestate.ErrStateCorrupt) || !errors.Is(err, fsutil.ErrSymlink) {
			t.Fatalf("read through a planted symlink: %v", err)
		}
		if err := s.Write(ctx, rec("healed")); err != nil {
			t.Fatal(err)
		}
		testutil.AssertVictim(t, v)
		assertRecord(t, s, "healed")
	})
	t.Run("record, between two writes", func(t *testing.T) {
		s, v := setup(t)
		if err := s.Write(ctx, rec("healed")); err != nil {
			t.Fatal(err)
		}
		os.Remove(s.Path("web1", "w"))
		os.Symlink(v, s.Path("web1", "w"))
		if err := s.Write(ctx, rec("already")); err != nil {
			t.Fatal(err)
		}
		testutil.AssertVictim(t, v)
		assertRecord(t, s, "already")
	})
	for _, target := range []string{"existing", "missing"} {
		t.Run("lock to a "+target+" file", func(t *testing.T) {
			s, v := setup(t)
			if target == "missing" {
				v = filepath.Join(filepath.Dir(v), "created-by-the-lock")
			}
			os.Symlink(v, filepath.Join(s.Dir, name+".lock"))
			err := s.Write(ctx, rec("healed"))
			if !errors.Is(err, fsutil.ErrSymlink) || !strings.Contains(err.Error(), "state lock: ") {
				t.Fatalf("lock through a planted symlink: %v", err)
			}
			if target == "missing" {
				if _, err := os.Lstat(v); err == nil {
					t.Fatal("the lock created the symlink's target")
				}
			} else {
				testutil.AssertVictim(t, v)
			}
			if _, err := os.Lstat(s.Path("web1", "w")); err == nil {
				t.Fatal("written without the lock")
			}
		})
	}
	t.Run("temp file", func(t *testing.T) {
		s, v := setup(t)
		tmp := filepath.Join(s.Dir, name+".json.tmp-0")
		os.Symlink(v, tmp)
		if err := s.Write(ctx, rec("healed")); err != nil {
			t.Fatal(err)
		}
		testutil.AssertVictim(t, v)
		if _, err := os.Lstat(tmp); err == nil {
			t.Fatal("the planted temp file was left")
		}
		assertRecord(t, s, "healed")
	})
}

func TestOpenLogTrust(t *testing.T) {
	needRoot(t)
	r := tree(t)
	logDir := mkdir(t, filepath.Join(r, "log"), 0o755, nagiosID)
	// Created 0640 the first time, appended to after.
	p := filepath.Join(logDir, "hw.log")
	for _, line := range []string{"one\n", "two\n"} {
		f, err := OpenLog(asNagios, p)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(line)
		f.Close()
	}
	if b, _ := os.ReadFile(p); string(b) != "one\ntwo\n" {
		t.Fatalf("log %q", b)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
		t.Fatalf("log mode %v, want 0640", fi.Mode().Perm())
	}

	// A symlink planted as the log file is not followed, whatever it
	// points at: the log goes elsewhere (stderr), its target is untouched.
	v := testutil.Victim(t, logDir)
	link := filepath.Join(logDir, "link.log")
	os.Symlink(v, link)
	if f, err := OpenLog(asNagios, link); !errors.Is(err, fsutil.ErrSymlink) {
		if f != nil {
			f.Close()
		}
		t.Fatalf("log through a planted symlink: %v", err)
	}
	testutil.AssertVictim(t, v)

	theirs := mkdir(t, filepath.Join(r, "theirs"), 0o755, attacker)
	_, err := OpenLog(asNagios, filepath.Join(theirs, "hw.log"))
	assertRefused(t, err, "log file", filepath.Join(theirs, "hw.log"), "owned by uid 65534 (nobody)", "run chown root:root "+theirs)
	gw := mkdir(t, filepath.Join(r, "gw"), 0o775, 0)
	_, err = OpenLog(asNagios, filepath.Join(gw, "hw.log"))
	assertRefused(t, err, "log file", filepath.Join(gw, "hw.log"), "writable by group (mode 0775)", "run chmod go-w "+gw)
	if _, err := os.Lstat(filepath.Join(gw, "hw.log")); err == nil {
		t.Fatal("a refused log file was created")
	}
}

// TestCheckInstalledTree: what the docs tell an admin to create passes,
// as the nagios user; the same tree as root passes too with root's files.
func TestCheckInstalledTree(t *testing.T) {
	needRoot(t)
	r := tree(t)
	etc := mkdir(t, filepath.Join(r, "etc"), 0o755, 0)
	conf := mkdir(t, filepath.Join(etc, "selfheal"), 0o700, nagiosID) // install -d -o nagios -m 0700
	varLib := mkdir(t, filepath.Join(r, "var-lib"), 0o755, 0)
	state := mkdir(t, filepath.Join(varLib, "selfheal"), 0o700, nagiosID)
	logDir := mkdir(t, filepath.Join(r, "log"), 0o755, nagiosID)
	rw := mkdir(t, filepath.Join(r, "rw"), 0o775, nagiosID) // as Nagios' install-commandmode: group-writable
	fifo := filepath.Join(rw, "nagios.cmd")
	if err := syscall.Mkfifo(fifo, 0o660); err != nil {
		t.Fatal(err)
	}
	files := Files{KeyFile: fleetKey(t, filepath.Join(conf, "fleet1.key"), 0o600, nagiosID), StateDir: state,
		LogFile: filepath.Join(logDir, "handle_worker.log"), CommandFile: fifo}
	if found := CheckFiles(asNagios, files); len(found) > 0 {
		t.Fatalf("a normal install is refused: %v", found)
	}
	rootState := mkdir(t, filepath.Join(varLib, "root"), 0o700, 0)
	rootFiles := Files{KeyFile: fleetKey(t, filepath.Join(etc, "root.key"), 0o600, 0), StateDir: rootState,
		LogFile: filepath.Join(etc, "hw.log"), CommandFile: fifo}
	if found := CheckFiles(asRoot, rootFiles); len(found) > 0 {
		t.Fatalf("root's install is refused: %v", found)
	}
}

// TestCheckListsEveryProblem: one pass shows every file's problems with
// their fixes; a problem shared by two files is listed once, for both.
func TestCheckListsEveryProblem(t *testing.T) {
	needRoot(t)
	r := tree(t)
	conf := mkdir(t, filepath.Join(r, "conf"), 0o775, 0)
	key := fleetKey(t, filepath.Join(conf, "fleet1.key"), 0o640, attacker)
	state := mkdir(t, filepath.Join(conf, "state"), 0o755, attacker)
	logDir := mkdir(t, filepath.Join(r, "log"), 0o777, nagiosID)
	fifo := filepath.Join(r, "nagios.cmd")
	syscall.Mkfifo(fifo, 0o660)
	cmdLink := filepath.Join(r, "cmd-link")
	os.Symlink(fifo, cmdLink)
	found := CheckFiles(asNagios, Files{KeyFile: key, StateDir: state, LogFile: filepath.Join(logDir, "hw.log"), CommandFile: cmdLink})
	want := []struct{ what, path, why, fix string }{
		{"key file, state directory", conf, "writable by group (mode 0775)", "chmod go-w " + conf},
		{"key file", key, "owned by uid 65534 (nobody), not by root or nagios (uid 4321), is open to group or others (mode 0640, want 0600 or 0400)", "chown nagios " + key + " && chmod 600 " + key},
		{"state directory", state, "is owned by uid 65534 (nobody), not by nagios (uid 4321): a private directory must be its user's own, has mode 0755, not 0700", "chown nagios " + state + " && chmod 700 " + state},
		{"log file", logDir, "writable by group and others (mode 0777)", "chmod go-w " + logDir},
		{"command file", cmdLink, "is a symlink to " + fifo + ", which the handler will not follow", ""},
	}
	if len(found) != len(want) {
		t.Fatalf("%d findings, want %d: %v", len(found), len(want), found)
	}
	for i, w := range want {
		f := found[i]
		if f.What != w.what || f.Path != w.path || !strings.HasPrefix(f.Why, w.why) || f.Fix != w.fix {
			t.Errorf("finding %d: %q %q %q %q\nwant      %q %q %q %q", i, f.What, f.Path, f.Why, f.Fix, w.what, w.path, w.why, w.fix)
		}
	}

	// What stops a file being used, though the rule passes it.
	r2 := tree(t)
	bad := filepath.Join(r2, "bad.key")
	os.WriteFile(bad, []byte("not a key\n"), 0o600)
	regular := filepath.Join(r2, "nagios.cmd")
	os.WriteFile(regular, nil, 0o600)
	found = CheckFiles(asRoot, Files{KeyFile: bad, StateDir: filepath.Join(r2, "missing"), CommandFile: regular})
	if len(found) != 3 || !strings.Contains(found[0].Why, "cannot be used: ") ||
		found[1].Fix != "install -d -m 0700 -o root "+filepath.Join(r2, "missing") || !strings.Contains(found[2].Why, "is not a FIFO") {
		t.Fatalf("findings %v", found)
	}
}

// TestCommandFileSymlink: a symlink planted as the command file is
// refused, whether it points at Nagios' FIFO or at a file nagios can
// write; neither gets a byte.
func TestCommandFileSymlink(t *testing.T) {
	fifo, r := fifoReader(t)
	dir := filepath.Dir(fifo)
	// The same rig first works.
	if err := (CommandFile{Path: fifo}).Write(time.Now(), ScheduleForcedSvcCheck("h", "s", time.Now())); err != nil {
		t.Fatal(err)
	}
	readAvailable(t, r)
	v := testutil.Victim(t, dir)
	for _, target := range []string{fifo, v} {
		link := filepath.Join(dir, "link-"+filepath.Base(target))
		os.Symlink(target, link)
		err := CommandFile{Path: link}.Write(time.Now(), ScheduleForcedSvcCheck("h", "s", time.Now()))
		if !errors.Is(err, fsutil.ErrSymlink) || !strings.Contains(err.Error(), "command file "+link+" is a symlink: refusing to follow it") {
			t.Fatalf("command file through a symlink to %s: %v", target, err)
		}
	}
	testutil.AssertVictim(t, v)
	buf := make([]byte, 10)
	if n, _ := syscall.Read(int(r.Fd()), buf); n > 0 {
		t.Fatal("written to the FIFO through a symlink")
	}
}
