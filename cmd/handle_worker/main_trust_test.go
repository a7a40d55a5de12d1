package main

import (
	"github.com/selfheal/selfheal/internal/lab/testutil"

	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/nodestate"
)

// The trust rule, tried as a local attacker on the monitoring node would:
// files owned by another uid (nobody's), group-writable modes and
// directories, symlinks planted before a run and between two.

const attacker = 65534

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("files owned by another uid need root")
	}
}

// sharedDir is a root-owned 0755 temp dir that another user can enter
// (t.TempDir's parents are 0700).
func sharedDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "hw-trust-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(d, 0o755)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// put makes a directory (perm has fs.ModeDir) or copies from into a
// file, with exactly perm and owner uid.
func put(t *testing.T, p string, perm os.FileMode, uid int, from string) string {
	t.Helper()
	var err error
	if perm.IsDir() {
		err = os.Mkdir(p, perm.Perm())
	} else {
		copyFile(t, from, p, perm)
	}
	if err == nil {
		err = os.Chmod(p, perm.Perm())
	}
	if err == nil {
		err = os.Chown(p, uid, uid)
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEventKeyTrust: a key file another user owns or could replace is
// refused like a broken key: exit 3, no request (nothing restarts), and
// on a CRITICAL a persistent comment that names the file, why, and the
// fix. The same rig restarts with the key in order, before and after.
func TestEventKeyTrust(t *testing.T) {
	needRoot(t)
	s := newSetup(t, rig.Budget{Max: 10, Window: "1h", MinGap: "0s"})
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	run := func(key, fault string) out {
		return runBin(t, nil, s.bin, "event", "--key-file", key, "--target", "demo", "--port", itoa(s.l.Port),
			"--state-dir", s.state, "--command-file", s.fifo, "--fault", fault, "CRITICAL", "HARD", "3", "127.0.0.1", "web1", "Worker")
	}
	good := put(t, filepath.Join(dir, "good.key"), 0o600, 0, s.l.KeyFile)
	if o := run(good, "1"); o.code != 0 || !strings.Contains(oneLine(t, o), "ok in") || s.l.Actions(t) != 1 {
		t.Fatalf("the right key: exit %d %q, %d actions", o.code, o.stdout, s.l.Actions(t))
	}
	s.commands()

	gw := put(t, filepath.Join(dir, "gw"), os.ModeDir|0o775, 0, "")
	theirs := put(t, filepath.Join(dir, "theirs.key"), 0o600, attacker, s.l.KeyFile)
	loose := put(t, filepath.Join(dir, "loose.key"), 0o640, 0, s.l.KeyFile)
	inGW := put(t, filepath.Join(gw, "fleet1.key"), 0o600, 0, s.l.KeyFile)
	for i, tt := range []struct{ name, key, want string }{
		{"owned by another user", theirs, theirs + ": owned by uid 65534 (nobody), not by root: run chown root:root " + theirs + " && chmod 600 " + theirs},
		{"open to the group", loose, loose + ": is open to group or others (mode 0640, want 0600 or 0400): run chmod 600 " + loose},
		{"in a group-writable directory", inGW, gw + ": writable by group (mode 0775): run chmod go-w " + gw},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := run(tt.key, fmt.Sprint(10+i))
			line := oneLine(t, o)
			if o.code != 3 || line != "handle_worker: usage error: key file "+tt.key+" refused: "+tt.want {
				t.Fatalf("exit %d %q\nwant the refusal %q", o.code, line, tt.want)
			}
			c := s.commands()
			if len(c) != 1 || !strings.Contains(c[0], "] ADD_SVC_COMMENT;web1;Worker;1;handle_worker;auto-healing impossible: handle_worker configuration error: key file "+
				tt.key+" refused: "+tt.want+"; a human must look") {
				t.Fatalf("command file: %q", c)
			}
			if s.l.Actions(t) != 1 {
				t.Fatalf("%d actions with a refused key, want still 1", s.l.Actions(t))
			}
		})
	}
	if o := run(good, "2"); o.code != 0 || s.l.Actions(t) != 2 {
		t.Fatalf("the right key again: exit %d %q, %d actions", o.code, o.stdout, s.l.Actions(t))
	}
}

// TestEventStateDirTrust: a state dir another user owns, or that is not
// 0700, gets no record (the dry run could show his), and the log says
// which and the fix; healing still happens, as the record is advisory.
func TestEventStateDirTrust(t *testing.T) {
	needRoot(t)
	s := newSetup(t, rig.Budget{Max: 10, Window: "1h", MinGap: "0s"})
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	for i, tt := range []struct {
		name  string
		state string
		want  string
	}{
		{"the right one", s.state, ""},
		{"owned by another user", put(t, filepath.Join(dir, "theirs"), os.ModeDir|0o700, attacker, ""),
			"is owned by uid 65534 (nobody), not by root (uid 0): a private directory must be its user's own: run chown root:root "},
		{"0755", put(t, filepath.Join(dir, "open"), os.ModeDir|0o755, 0, ""), "has mode 0755, not 0700: run chmod 700 "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := runBin(t, nil, s.bin, "event", "--key-file", s.l.KeyFile, "--target", "demo", "--port", itoa(s.l.Port),
				"--state-dir", tt.state, "--fault", fmt.Sprint(20+i), "CRITICAL", "HARD", "3", "127.0.0.1", "web1", "Worker")
			if o.code != 0 || !strings.Contains(oneLine(t, o), "ok in") || s.l.Actions(t) != i+1 {
				t.Fatalf("exit %d %q, %d actions", o.code, o.stdout, s.l.Actions(t))
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(strings.TrimSpace(o.stderr)), &m); err != nil {
				t.Fatalf("stderr %q: %v", o.stderr, err)
			}
			rec := filepath.Join(tt.state, "web1,Worker.json")
			if tt.want == "" {
				if m["record_error"] != nil {
					t.Fatalf("record_error %v", m["record_error"])
				}
				if _, err := os.Stat(rec); err != nil {
					t.Fatal(err)
				}
				return
			}
			if e := fmt.Sprint(m["record_error"]); !strings.HasPrefix(e, "state directory "+tt.state+" refused: ") || !strings.Contains(e, tt.want) {
				t.Fatalf("record_error %q, want %q", e, tt.want)
			}
			if left, _ := os.ReadDir(tt.state); len(left) != 0 {
				t.Fatalf("written in a refused state dir: %v", left)
			}
		})
	}
}

// TestEventPlantedSymlinks: symlinks planted in the handler's state dir
// (as a record, before the first run and between two, and as a lock), as
// its log file and as the command file are never followed: their targets
// stay as they were, and the handler still heals.
func TestEventPlantedSymlinks(t *testing.T) {
	s := newSetup(t, rig.Budget{Max: 10, Window: "1h", MinGap: "0s"})
	victim := testutil.Victim(t, t.TempDir())
	record, lock := filepath.Join(s.state, "web1,Worker.json"), filepath.Join(s.state, "web1,Worker.lock")
	event := func(fault string, extra ...string) out {
		t.Helper()
		args := append([]string{"event", "--key-file", s.l.KeyFile, "--target", "demo", "--port", itoa(s.l.Port),
			"--state-dir", s.state, "--fault", fault}, extra...)
		return runBin(t, nil, s.bin, append(args, "CRITICAL", "HARD", "3", "127.0.0.1", "web1", "Worker")...)
	}
	recordError := func(o out) string {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal([]byte(strings.TrimSpace(o.stderr)), &m); err != nil {
			t.Fatalf("stderr %q: %v", o.stderr, err)
		}
		if m["record_error"] == nil {
			return ""
		}
		return fmt.Sprint(m["record_error"])
	}
	assertRecord := func(fault string) {
		t.Helper()
		if fi, err := os.Lstat(record); err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("the record is not a regular file: %v %v", fi, err)
		}
		if rec, err := (nodestate.Store{Dir: s.state}).Read("web1", "Worker"); err != nil || rec == nil || rec.Fault != fault {
			t.Fatalf("record %+v, %v; want fault %s", rec, err, fault)
		}
	}
	plant := func(name string) {
		t.Helper()
		os.Remove(name)
		if err := os.Symlink(victim, name); err != nil {
			t.Fatal(err)
		}
	}

	// Before the first run: the dry run reads no other file as the record
	// and writes nothing (no lock either); the run replaces the symlink.
	plant(record)
	o := event("1", "--dry-run")
	if line, _, _ := strings.Cut(o.stdout, "\n"); o.code != 0 || !strings.Contains(line, "the record of earlier answers is unreadable: state file corrupt: "+record+" is a symlink: refusing to follow it") {
		t.Fatalf("dry-run: exit %d %q", o.code, line)
	}
	if left, _ := os.ReadDir(s.state); len(left) != 1 {
		t.Fatalf("dry-run wrote in the state dir: %v", left)
	}
	if o := event("1"); o.code != 0 || recordError(o) != "" || s.l.Actions(t) != 1 {
		t.Fatalf("run: exit %d %q %q", o.code, o.stdout, o.stderr)
	}
	testutil.AssertVictim(t, victim)
	assertRecord("1")

	// Between two runs.
	plant(record)
	if o := event("2"); o.code != 0 || recordError(o) != "" || s.l.Actions(t) != 2 {
		t.Fatalf("run: exit %d %q %q", o.code, o.stdout, o.stderr)
	}
	testutil.AssertVictim(t, victim)
	assertRecord("2")

	// As the lock: refused, so no record; the restart still happens.
	plant(lock)
	o = event("3")
	if e := recordError(o); o.code != 0 || e != "state lock: "+lock+" is a symlink: refusing to follow it" || s.l.Actions(t) != 3 {
		t.Fatalf("run: exit %d %q %q", o.code, o.stdout, e)
	}
	testutil.AssertVictim(t, victim)
	assertRecord("2")
	os.Remove(lock)

	// As the log file: it logs to stderr instead and says why.
	logLink := filepath.Join(filepath.Dir(s.log), "link.log")
	plant(logLink)
	o = event("4", "--log-file", logLink)
	if o.code != 0 || !strings.Contains(o.stderr, `"log_file_error":"`+logLink+` is a symlink: refusing to follow it"`) ||
		!strings.Contains(o.stderr, "cannot open --log-file, logging to stderr") || s.l.Actions(t) != 4 {
		t.Fatalf("log file symlink: exit %d %q %q", o.code, o.stdout, o.stderr)
	}
	testutil.AssertVictim(t, victim)

	// As the command file, to Nagios' FIFO itself: Nagios is not told
	// through it, and the line says so.
	cmdLink := filepath.Join(filepath.Dir(s.fifo), "link.cmd")
	if err := os.Symlink(s.fifo, cmdLink); err != nil {
		t.Fatal(err)
	}
	o = event("5", "--command-file", cmdLink)
	if line := oneLine(t, o); o.code != 0 || !strings.HasSuffix(line, "; engine not told (the command file): command file "+cmdLink+" is a symlink: refusing to follow it (pass Nagios' command_file itself)") {
		t.Fatalf("command file symlink: exit %d %q", o.code, line)
	}
	if c := s.commands(); len(c) != 0 {
		t.Fatalf("written through a symlinked command file: %q", c)
	}
	// The same rig tells Nagios with the FIFO's own path.
	if o := event("6", "--command-file", s.fifo); o.code != 0 || len(s.commands()) != 2 {
		t.Fatalf("command file: exit %d %q", o.code, o.stdout)
	}
}

// TestCheckCommand: `handle_worker check` lists every problem at once,
// one a line with its fix, and exits 3; a tree installed as documented
// passes as the nagios user (a uid of its own here), whose handler then
// heals with it.
func TestCheckCommand(t *testing.T) {
	needRoot(t)
	s := newSetup(t)
	if o := runBin(t, nil, s.bin, "--help"); !strings.Contains(o.stdout, "check") {
		t.Fatalf("--help does not list check: %q", o.stdout)
	}

	bad := sharedDir(t)
	gw := put(t, filepath.Join(bad, "conf"), os.ModeDir|0o775, 0, "")
	key := put(t, filepath.Join(gw, "fleet1.key"), 0o640, attacker, s.l.KeyFile)
	state := put(t, filepath.Join(bad, "state"), os.ModeDir|0o755, attacker, "")
	logDir := put(t, filepath.Join(bad, "log"), os.ModeDir|0o777, 0, "")
	cmdLink := filepath.Join(bad, "nagios.cmd")
	os.Symlink(s.fifo, cmdLink)
	o := runBin(t, nil, s.bin, "check", "--key-file", key, "--state-dir", state, "--log-file", filepath.Join(logDir, "hw.log"), "--command-file", cmdLink)
	want := []string{
		"handle_worker check: 5 problem(s) as root; fix them all, then run it again:",
		"key file: " + gw + ": writable by group (mode 0775): run chmod go-w " + gw,
		"key file: " + key + ": owned by uid 65534 (nobody), not by root, is open to group or others (mode 0640, want 0600 or 0400): run chown root:root " + key + " && chmod 600 " + key,
		"state directory: " + state + ": is owned by uid 65534 (nobody), not by root (uid 0): a private directory must be its user's own, has mode 0755, not 0700: run chown root:root " + state + " && chmod 700 " + state,
		"log file: " + logDir + ": writable by group and others (mode 0777): run chmod go-w " + logDir,
		"command file: " + cmdLink + ": is a symlink to " + s.fifo + ", which the handler will not follow (it writes to the command file with O_NOFOLLOW): give the path of the file itself",
	}
	if got := strings.Split(strings.TrimSuffix(o.stdout, "\n"), "\n"); o.code != 3 || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("check: exit %d\n%s\nwant\n%s", o.code, o.stdout, strings.Join(want, "\n"))
	}

	// As installed: root's 0755 directories, nagios' own 0700 key
	// directory and state dir, its log directory, Nagios' rw/ (group-
	// writable, as its install-commandmode makes it) with the FIFO.
	const nagios = 4321
	r := sharedDir(t)
	bin := put(t, filepath.Join(r, "handle_worker"), 0o755, 0, s.bin)
	etc := put(t, filepath.Join(r, "etc"), os.ModeDir|0o755, 0, "")
	conf := put(t, filepath.Join(etc, "selfheal"), os.ModeDir|0o700, nagios, "")
	key = put(t, filepath.Join(conf, "fleet1.key"), 0o600, nagios, s.l.KeyFile)
	state = put(t, filepath.Join(r, "state"), os.ModeDir|0o700, nagios, "")
	logDir = put(t, filepath.Join(r, "log"), os.ModeDir|0o755, nagios, "")
	rw := put(t, filepath.Join(r, "rw"), os.ModeDir|0o775, nagios, "")
	fifo := filepath.Join(rw, "nagios.cmd")
	if err := syscall.Mkfifo(fifo, 0o660); err != nil {
		t.Fatal(err)
	}
	os.Chown(fifo, nagios, nagios)
	fd, err := syscall.Open(fifo, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	files := []string{"--key-file", key, "--state-dir", state, "--log-file", filepath.Join(logDir, "handle_worker.log"), "--command-file", fifo}
	asNagios := &syscall.Credential{Uid: nagios, Gid: nagios}
	if o := runBin(t, asNagios, bin, append([]string{"check"}, files...)...); o.code != 0 || o.stdout != "handle_worker check: ok: the files pass as uid 4321\n" {
		t.Fatalf("check of an installed tree: exit %d %q %q", o.code, o.stdout, o.stderr)
	}
	o = runBin(t, asNagios, bin, append(append([]string{"event", "--target", "demo", "--port", itoa(s.l.Port), "--fault", "1"}, files...),
		"CRITICAL", "HARD", "3", "127.0.0.1", "web1", "Worker")...)
	if o.code != 0 || !strings.Contains(oneLine(t, o), "ok in") || o.stderr != "" || s.l.Actions(t) != 1 {
		t.Fatalf("event as nagios: exit %d %q %q", o.code, o.stdout, o.stderr)
	}
	if fi, err := os.Stat(filepath.Join(state, "web1,Worker.json")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != nagios {
		t.Fatalf("record as nagios: %v %v", fi, err)
	}
	buf := make([]byte, 4096)
	if n, _ := syscall.Read(fd, buf); n <= 0 || !strings.Contains(string(buf[:n]), "auto-restart ok in") {
		t.Fatalf("command file: %q", buf[:max(n, 0)])
	}
}
