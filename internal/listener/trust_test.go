package listener

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/protocol"
)

// plant replaces name in dir by a symlink to target.
func plant(t *testing.T, dir, name, target string) string {
	t.Helper()
	link := filepath.Join(dir, name)
	if err := os.Remove(link); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	return link
}

// precious writes a file a planted symlink points at; untouched checks it
// was neither written nor created.
func precious(t *testing.T, dir string) (target, absent string, untouched func()) {
	t.Helper()
	target, absent = filepath.Join(dir, "precious"), filepath.Join(dir, "not-created")
	if err := os.WriteFile(target, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return target, absent, func() {
		t.Helper()
		if b, _ := os.ReadFile(target); string(b) != "precious\n" {
			t.Fatalf("written through a symlink: %q", b)
		}
		if _, err := os.Lstat(absent); !os.IsNotExist(err) {
			t.Fatalf("a symlink's target was created: %v", err)
		}
	}
}

// TestStateDirSymlinkBetweenRequests: under inetd every request opens the
// nonce cache and its lock anew; a symlink planted in state_dir between
// two requests, as either, is refused (the request is denied, nothing
// runs) and its target is untouched. Removed, requests work again.
func TestStateDirSymlinkBetweenRequests(t *testing.T) {
	h := newHarness(t, opts{})
	h.shutdown() // the serve-mode agent holds the lock
	srv, err := NewServer(h.cfg, Deps{Audit: h.audit, Inetd: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			srv.ServeConn(c)
		}
	}()
	defer func() { ln.Close(); <-done }()
	h.addr = ln.Addr().String()

	if rep, err := h.do(protocol.VerbRestart, "demo"); err != nil || rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("restart: %+v %v", rep, err)
	}
	state := h.cfg.StateDir
	target, absent, untouched := precious(t, h.dir)
	for _, tc := range []struct{ name, to string }{
		{"nonces", target}, {"nonces", absent}, {"lock", target}, {"lock", absent},
	} {
		before := len(h.records())
		link := plant(t, state, tc.name, tc.to)
		if rep, _ := h.do(protocol.VerbRestart, "demo"); rep.Outcome != protocol.OutcomeDenied {
			t.Fatalf("%s -> %s: %+v, want denied", link, tc.to, rep)
		}
		waitAudit(t, h, before, link+" is a symlink: refusing to follow it")
		os.Remove(link)
	}
	untouched()
	if h.marks("demo") != 1 {
		t.Fatalf("%d restarts ran, want 1", h.marks("demo"))
	}
	if rep, err := h.do(protocol.VerbRestart, "demo"); err != nil || rep.Outcome != protocol.OutcomeOK || h.marks("demo") != 2 {
		t.Fatalf("restart once the links are gone: %+v %v", rep, err)
	}
}

// TestStateDirSymlinkServe: in serve mode the nonce file is held open; a
// symlink planted as it while the agent runs is never written through,
// and the next start refuses it.
func TestStateDirSymlinkServe(t *testing.T) {
	h := newHarness(t, opts{})
	target, _, untouched := precious(t, h.dir)
	link := plant(t, h.cfg.StateDir, "nonces", target)
	for range 3 {
		if rep, err := h.do(protocol.VerbPing, ""); err != nil || rep.Outcome != protocol.OutcomeOK {
			t.Fatalf("ping: %+v %v", rep, err)
		}
	}
	h.shutdown()
	if _, err := NewServer(h.cfg, Deps{Audit: h.audit}); err == nil || !errors.Is(err, fsutil.ErrSymlink) || !strings.Contains(err.Error(), link+" is a symlink") {
		t.Fatalf("start with %s planted: %v", link, err)
	}
	untouched()
}

// TestAuditLogReopenRefusesSymlink: the reopen itself (Reload, as SIGHUP
// does after Load) never follows a symlink planted as the audit log,
// whatever Load saw; the running logger stays.
func TestAuditLogReopenRefusesSymlink(t *testing.T) {
	h := newHarness(t, opts{})
	audit := filepath.Join(h.dir, "audit.log")
	cfg := *h.cfg
	cfg.AuditLog = audit
	srv, err := NewServer(&cfg, Deps{Inetd: true}) // inetd: no lock held
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	target, absent, untouched := precious(t, h.dir)
	for _, to := range []string{target, absent} {
		plant(t, h.dir, "audit.log", to)
		if err := srv.Reload(&cfg); err == nil || !errors.Is(err, fsutil.ErrSymlink) {
			t.Fatalf("reopen through %s -> %s: %v", audit, to, err)
		}
	}
	untouched()
}

// TestParseTrust: Parse judges every file a config names and reports all
// the problems at once, each for what it is: the shapes of
// TestCheckConfigListsEveryProblem, without root.
func TestParseTrust(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "k.key")
	writeKeys(t, "worker1", key, "", "")
	bin := filepath.Join(dir, "a.sh")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	open := filepath.Join(dir, "open")
	os.Mkdir(open, 0o755)
	os.Chmod(open, 0o777)
	script := filepath.Join(open, "s.sh")
	os.WriteFile(script, nil, 0o644)
	state := filepath.Join(dir, "state")
	os.Mkdir(state, 0o755)
	y := "agent: worker1\nkeys: [" + key + "]\nallow: [127.0.0.1]\nstate_dir: " + state + "\naudit_log: " + open + "/audit.log\n" +
		"services:\n  demo:\n    actions:\n      restart: {argv: [" + bin + ", " + script + ", -v, relative/x]}\n      stop: {argv: [/bin/sh, " + script + "], timeout: -1s}\n"
	_, err := Parse([]byte(y))
	var te *TrustError
	if !errors.As(err, &te) {
		t.Fatalf("no TrustError: %v", err)
	}
	got := te.Error()
	for _, want := range []string{
		"state_dir " + state + ": has mode 0755, not 0700: run chmod 700 " + state,
		// One problem, both files it stands in the way of.
		"audit_log " + open + "/audit.log, service demo action restart: argv[1] " + script + ", service demo action stop: argv[1] " + script + ": " + open + ": writable by group and others (mode 0777): run chmod go-w " + open,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("findings lack %q:\n%s", want, got)
		}
	}
	if n := len(te.Findings); n != 2 {
		t.Errorf("%d findings, want 2:\n%s", n, got)
	}
	if !strings.Contains(err.Error(), "service demo action stop: timeout") {
		t.Errorf("the action's other error is lost: %v", err)
	}
	os.Chmod(open, 0o755)
	os.Chmod(state, 0o700)
	if _, err := Parse([]byte(strings.Replace(y, ", timeout: -1s", "", 1))); err != nil {
		t.Fatalf("fixed config refused: %v", err)
	}
}
