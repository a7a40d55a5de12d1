package main

// A local attacker on the worker host (uid 65534, files he owns or can
// write, symlinks he plants) against the agent running as root: every
// case is refused, saying which file, why and the fix, and nothing runs
// (the action would write a mark file; it never exists).

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/testutil"
	"github.com/selfheal/selfheal/internal/protocol"
)

// stranger is the attacker's uid: nobody on most systems.
const stranger = 65534

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the files must belong to another user (os.Chown)")
	}
}

func chown(t *testing.T, path string, uid int) {
	t.Helper()
	if err := os.Lchown(path, uid, uid); err != nil {
		t.Fatal(err)
	}
}

// runAgent runs worker_listener with args (bounded: an agent that starts
// serving is killed after 20 s and its output then lacks the refusal).
func runAgent(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, testutil.Binary(t, "worker_listener"), args...).CombinedOutput()
	return string(out), err
}

// refused asserts that check-config and serve both refuse e's config,
// each output holding every want, and that no action ran.
func refused(t *testing.T, e *env, want ...string) string {
	t.Helper()
	var last string
	for _, cmd := range []string{"check-config", "serve"} {
		out, err := runAgent(t, cmd, "--config", e.cfg)
		if err == nil {
			t.Fatalf("%s accepted the config:\n%s", cmd, out)
		}
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Fatalf("%s: %v, want exit 1:\n%s", cmd, err, out)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s output lacks %q:\n%s", cmd, w, out)
			}
		}
		if strings.Contains(out, "config OK") {
			t.Errorf("%s said config OK:\n%s", cmd, out)
		}
		last = out
	}
	if e.marks("mark") != 0 {
		t.Fatal("an action ran")
	}
	return last
}

// attackerScript writes evil.sh: what the attacker wants root to run. It
// leaves a mark (evil-mark) that no test may ever find.
func attackerScript(t *testing.T, e *env) string {
	t.Helper()
	p := filepath.Join(e.dir, "evil.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\nid >> \""+filepath.Join(e.dir, "evil-mark")+"\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func noEvil(t *testing.T, e *env) {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join(e.dir, "evil-mark")); err == nil {
		t.Fatalf("the attacker's command ran: %s", b)
	}
}

// TestTrustConfigOwnedByStranger: a config another user owns is refused at
// start, with the fix.
func TestTrustConfigOwnedByStranger(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	chown(t, e.cfg, stranger)
	refused(t, e, "config file "+e.cfg+": owned by uid 65534", "not by root: run chown root:root "+e.cfg+" && chmod go-w "+e.cfg)
}

// TestTrustReloadAfterStrangerEdit: the attack of issue 10: a user who can
// write the config points restart at his script and waits for a SIGHUP.
// The reload is refused, and a restart still runs the old argv.
func TestTrustReloadAfterStrangerEdit(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	evil := attackerScript(t, e)
	d := startServe(t, e, false)
	if rep, err := do(t, d.Addr, e.key, protocol.VerbRestart, "demo"); err != nil || rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("restart: %+v %v", rep, err)
	}
	c := e.config(e.keyPath)
	a := c.Services[0].Actions["restart"]
	a.Argv = []string{evil}
	c.Services[0].Actions["restart"] = a
	if err := c.Write(e.cfg); err != nil {
		t.Fatal(err)
	}
	chown(t, e.cfg, stranger) // his file now: he could have written it
	d.Signal(syscall.SIGHUP)
	waitLog(t, d, "reload refused, keeping the running config", 1)
	if !strings.Contains(d.Logs(), "config file "+e.cfg+": owned by uid 65534") {
		t.Fatalf("the refusal does not say why:\n%s", d.Logs())
	}
	if rep, err := do(t, d.Addr, e.key, protocol.VerbRestart, "demo"); err != nil || rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("restart after the refused reload: %+v %v", rep, err)
	}
	if e.marks("mark") != 2 {
		t.Fatalf("the old argv ran %d times, want 2", e.marks("mark"))
	}
	noEvil(t, e)
}

// TestTrustStateDir: a state_dir another user owns, or that others can
// read into, is refused.
func TestTrustStateDir(t *testing.T) {
	requireRoot(t)
	state := func(e *env) string { return filepath.Join(e.dir, "state") }
	t.Run("owned by a stranger", func(t *testing.T) {
		e := newEnv(t)
		chown(t, state(e), stranger)
		refused(t, e, "state_dir "+state(e)+": is owned by uid 65534", "a private directory must be its user's own: run chown root:root "+state(e)+" && chmod 700 "+state(e))
	})
	t.Run("mode 0755", func(t *testing.T) {
		e := newEnv(t)
		if err := os.Chmod(state(e), 0o755); err != nil {
			t.Fatal(err)
		}
		refused(t, e, "state_dir "+state(e)+": has mode 0755, not 0700: run chmod 700 "+state(e))
	})
}

// TestTrustSymlinkInStateDir: a symlink planted in state_dir before the
// start, as the nonce file or the lock, is not followed: the agent refuses
// to start and the target is untouched (not created, not written).
func TestTrustSymlinkInStateDir(t *testing.T) {
	requireRoot(t)
	for _, name := range []string{"nonces", "lock"} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			target := filepath.Join(e.dir, "precious")
			if err := os.WriteFile(target, []byte("precious\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			absent := filepath.Join(e.dir, "not-created")
			link := filepath.Join(e.dir, "state", name)
			for _, to := range []string{target, absent} {
				os.Remove(link)
				if err := os.Symlink(to, link); err != nil {
					t.Fatal(err)
				}
				out, err := runAgent(t, "serve", "--config", e.cfg)
				if err == nil || !strings.Contains(out, link+" is a symlink: refusing to follow it") {
					t.Fatalf("serve with %s -> %s: %v\n%s", link, to, err, out)
				}
			}
			if b, _ := os.ReadFile(target); string(b) != "precious\n" {
				t.Fatalf("the target was written: %q", b)
			}
			if _, err := os.Lstat(absent); !os.IsNotExist(err) {
				t.Fatalf("the agent created the symlink's target: %v", err)
			}
		})
	}
}

// TestTrustInterpreterScript: [/bin/sh, SCRIPT] runs SCRIPT as root as
// surely as a binary: a script another user owns, one others can write,
// or one in a directory he owns is refused. The same script, root's, is
// accepted.
func TestTrustInterpreterScript(t *testing.T) {
	requireRoot(t)
	setup := func(t *testing.T) (*env, string) {
		e := newEnv(t)
		script := filepath.Join(e.dir, "scripts", "restart.sh")
		if err := os.MkdirAll(filepath.Dir(script), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(script, []byte("#!/bin/sh\necho ran >> \"$MARK\"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		c := e.config(e.keyPath)
		a := c.Services[0].Actions["restart"]
		a.Argv = []string{"/bin/sh", script}
		c.Services[0].Actions["restart"] = a
		if err := c.Write(e.cfg); err != nil {
			t.Fatal(err)
		}
		return e, script
	}
	t.Run("root's script passes", func(t *testing.T) {
		e, _ := setup(t)
		if out, err := runAgent(t, "check-config", "--config", e.cfg); err != nil || !strings.Contains(out, "config OK") {
			t.Fatalf("check-config: %v\n%s", err, out)
		}
	})
	t.Run("owned by a stranger", func(t *testing.T) {
		e, script := setup(t)
		chown(t, script, stranger)
		refused(t, e, "service demo action restart: argv[1] "+script+": owned by uid 65534", "run chown root:root "+script+" && chmod go-w "+script)
	})
	t.Run("writable by others", func(t *testing.T) {
		e, script := setup(t)
		if err := os.Chmod(script, 0o666); err != nil {
			t.Fatal(err)
		}
		refused(t, e, "argv[1] "+script+": writable by group and others (mode 0666): run chmod go-w "+script)
	})
	t.Run("in a directory a stranger owns", func(t *testing.T) {
		e, script := setup(t)
		dir := filepath.Dir(script)
		chown(t, dir, stranger)
		refused(t, e, "argv[1] "+script+": "+dir+": owned by uid 65534", "run chown root:root "+dir+" && chmod go-w "+dir)
	})
}

// TestTrustKeyFileOwnedByStranger: a key file another user owns is
// refused even with mode 0600: he could rewrite it with a key he knows.
func TestTrustKeyFileOwnedByStranger(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	chown(t, e.keyPath, stranger)
	refused(t, e, "key file "+e.keyPath+": owned by uid 65534", "run chown root:root "+e.keyPath+" && chmod 600 "+e.keyPath)
}

// TestTrustWritableParent: a directory on the way to a file, writable by
// others, lets them replace the file: refused, naming the directory.
func TestTrustWritableParent(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	keys := filepath.Join(e.dir, "keys")
	if err := os.Mkdir(keys, 0o755); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(keys, "fleet1.key")
	if err := os.Rename(e.keyPath, key); err != nil {
		t.Fatal(err)
	}
	e.writeConfig(key)
	if out, err := runAgent(t, "check-config", "--config", e.cfg); err != nil {
		t.Fatalf("check-config before the chmod: %v\n%s", err, out)
	}
	if err := os.Chmod(keys, 0o777); err != nil {
		t.Fatal(err)
	}
	refused(t, e, "key file "+key+": "+keys+": writable by group and others (mode 0777): run chmod go-w "+keys)
}

// TestTrustAuditLogSymlink: an audit log path that is a symlink is not
// followed, at start or when SIGHUP reopens it: the target is untouched.
func TestTrustAuditLogSymlink(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	audit := filepath.Join(e.dir, "audit.log")
	target := filepath.Join(e.dir, "precious")
	if err := os.WriteFile(target, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, audit); err != nil {
		t.Fatal(err)
	}
	refused(t, e, "audit_log "+audit+": is a symlink to "+target+", which the agent will not follow")

	// Planted while the agent runs, then SIGHUP (logrotate's reopen).
	os.Remove(audit)
	d := startServe(t, e, false)
	if rep, err := do(t, d.Addr, e.key, protocol.VerbPing, ""); err != nil || rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("ping: %+v %v", rep, err)
	}
	os.Remove(audit)
	if err := os.Symlink(target, audit); err != nil {
		t.Fatal(err)
	}
	d.Signal(syscall.SIGHUP)
	waitLog(t, d, "reload refused, keeping the running config", 1)
	if rep, err := do(t, d.Addr, e.key, protocol.VerbRestart, "demo"); err != nil || rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("restart after the refused reload: %+v %v", rep, err)
	}
	if b, _ := os.ReadFile(target); string(b) != "precious\n" {
		t.Fatalf("the audit log was written through the symlink: %q", b)
	}
}

// TestCheckConfigListsEveryProblem: check-config names every problem in
// one pass, each with its fix, so an admin repairs them all at once.
func TestCheckConfigListsEveryProblem(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	logs := filepath.Join(e.dir, "logs")
	if err := os.Mkdir(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	chown(t, logs, stranger)
	c := e.config(e.keyPath)
	c.AuditLog = filepath.Join(logs, "audit.log")
	if err := c.Write(e.cfg); err != nil {
		t.Fatal(err)
	}
	chown(t, e.keyPath, stranger)
	mark := filepath.Join(e.dir, "mark.sh")
	if err := os.Chmod(mark, 0o777); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(e.dir, "state")
	if err := os.Chmod(state, 0o750); err != nil {
		t.Fatal(err)
	}
	out := refused(t, e,
		"key file "+e.keyPath+": owned by uid 65534",
		"audit_log "+c.AuditLog+": "+logs+": owned by uid 65534",
		"state_dir "+state+": has mode 0750, not 0700: run chmod 700 "+state,
		"service demo action restart: argv[0] "+mark+": writable by group and others (mode 0777): run chmod go-w "+mark,
	)
	if n := strings.Count(out, ": run "); n < 4 {
		t.Fatalf("%d fixes listed, want one per problem:\n%s", n, out)
	}
}

// TestSampleInstallPassesTrust: the shipped sample config, its paths moved
// into a tree laid out as an install makes it (root-owned 0755
// directories, keys 0600, state dir 0700, scripts 0755, config 0644),
// passes check-config: the rule never blocks a normal install.
func TestSampleInstallPassesTrust(t *testing.T) {
	e := newEnv(t)
	root := filepath.Join(e.dir, "root")
	src := filepath.Join(testutil.ModuleRoot(t), "nagios-config", "listener")
	for _, d := range []string{"etc/selfheal/keys", "opt/demo/bin", "var/log/selfheal", "run/demo", "var/log/demo"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "var/lib/selfheal/listener"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"start.sh", "stop.sh", "restart.sh", "status.sh"} {
		b, err := os.ReadFile(filepath.Join(src, s))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "opt/demo/bin", s), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	key := filepath.Join(root, "etc/selfheal/keys/fleet1.key")
	if err := protocol.WriteKeyFile(key, e.key); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(src, "worker_listener.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	y := string(b)
	for _, p := range []string{"/etc/selfheal/", "/opt/demo", "/var/log/selfheal/", "/var/lib/selfheal/", "/run/demo/", "/var/log/demo/"} {
		if !strings.Contains(y, p) {
			t.Fatalf("sample config no longer has %q", p)
		}
		y = strings.ReplaceAll(y, p, root+p)
	}
	// The sample runs actions as user "demo", which this host may lack.
	y = regexp.MustCompile(`(?m)^\s+user: demo\n`).ReplaceAllString(y, "")
	cfg := filepath.Join(root, "etc/selfheal/worker_listener.yaml")
	if err := os.WriteFile(cfg, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runAgent(t, "check-config", "--config", cfg); err != nil || !strings.Contains(out, "config OK: agent worker1") {
		t.Fatalf("check-config on the installed sample: %v\n%s", err, out)
	}
}

// TestTrustScriptHandedOverAfterStart: issue 18's attack. After start, the
// action's script is handed to another user, who appends his line. The
// next signed restart is refused (a signed denied, the reason in the audit
// log) and nothing runs; a SIGHUP's refused reload says the action is
// disabled, and it stays refused. Once root owns the file again (and its
// content is root's), the same action runs: the rig runs.
func TestTrustScriptHandedOverAfterStart(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	d := startServe(t, e, false)
	if rep, err := doFault(t, d.Addr, e.key, protocol.VerbRestart, "demo", "1"); err != nil || rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("restart before the hand-over: %+v %v", rep, err)
	}
	script := filepath.Join(e.dir, "mark.sh")
	clean := readFile(script)
	chown(t, script, stranger)
	evil := clean + "id >> \"" + filepath.Join(e.dir, "evil-mark") + "\"\n"
	if err := os.WriteFile(script, []byte(evil), 0o755); err != nil { // what he writes, now that he can
		t.Fatal(err)
	}
	refusedRun := func(fault string) {
		t.Helper()
		rep, err := doFault(t, d.Addr, e.key, protocol.VerbRestart, "demo", fault)
		if err != nil || rep.Outcome != protocol.OutcomeDenied || rep.Agent != "worker1" || rep.Origin != protocol.OriginNone ||
			!strings.Contains(rep.Output, "refused") {
			t.Fatalf("restart of a script another user owns: %+v %v", rep, err)
		}
		if e.marks("mark") != 1 {
			t.Fatalf("the action ran: %d marks", e.marks("mark"))
		}
		noEvil(t, e)
	}
	refusedRun("2")
	// The agent answers first and audits after: wait (bounded) for the line.
	want := "refused, not run: service demo action restart: argv[0] " + script + ": owned by uid 65534"
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(readFile(filepath.Join(e.dir, "audit.log")), want); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the audit log does not say why:\n%s", readFile(filepath.Join(e.dir, "audit.log")))
		}
	}
	d.Signal(syscall.SIGHUP)
	waitLog(t, d, "action disabled until its files pass the trust rule again: service demo action restart", 1)
	refusedRun("3")

	// Root takes the file back (and its content): the action runs again.
	if err := os.WriteFile(script, []byte(clean), 0o755); err != nil {
		t.Fatal(err)
	}
	chown(t, script, 0)
	if rep, err := doFault(t, d.Addr, e.key, protocol.VerbRestart, "demo", "4"); err != nil || rep.Outcome != protocol.OutcomeOK || e.marks("mark") != 2 {
		t.Fatalf("restart once root owns the script again: %+v %v (%d marks)", rep, err, e.marks("mark"))
	}
	noEvil(t, e)
}
