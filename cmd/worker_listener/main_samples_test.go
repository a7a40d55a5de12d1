package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/testutil"
	"github.com/selfheal/selfheal/internal/listener"
	"github.com/selfheal/selfheal/internal/proc"
	"github.com/selfheal/selfheal/internal/protocol"
)

// TestSampleConfigAndScripts loads the shipped sample config (paths moved
// into a temp dir) with the real binary, and drives the sample start,
// status, restart and stop scripts through it: the worker they start is
// fully detached and survives the agent's shutdown.
func TestSampleConfigAndScripts(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(testutil.ModuleRoot(t), "nagios-config", "listener")
	bin := filepath.Join(e.dir, "opt")
	os.MkdirAll(bin, 0o755)
	for _, s := range []string{"start.sh", "stop.sh", "restart.sh", "status.sh"} {
		b, err := os.ReadFile(filepath.Join(src, s))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(bin, s), b, 0o755)
	}
	os.WriteFile(filepath.Join(bin, "worker"), []byte("#!/bin/sh\nexec sleep 120\n"), 0o755)
	b, err := os.ReadFile(filepath.Join(src, "worker_listener.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	y := string(b)
	for from, to := range map[string]string{
		"/etc/selfheal/keys/fleet1.key": e.keyPath,
		"agent: worker1":                "agent: " + e.agent,
		"/opt/demo/bin/":                bin + "/",
		"dir: /opt/demo":                "dir: " + e.dir,
		"/var/log/selfheal/audit.log":   e.dir + "/audit.log",
		"/var/lib/selfheal/listener":    e.dir + "/state",
		"/run/demo/demo.pid":            e.dir + "/demo.pid",
		"/var/log/demo/demo.log":        e.dir + "/demo.log",
		"127.0.0.1:5690":                "127.0.0.1:0",
		"PIDFILE:":                      "WORKER: " + bin + "/worker, STOP_WAIT: '5', PIDFILE:",
	} {
		if !strings.Contains(y, from) {
			t.Fatalf("sample config no longer has %q", from)
		}
		y = strings.ReplaceAll(y, from, to)
	}
	// The sample runs actions as user "demo"; this test runs them as itself.
	y = regexp.MustCompile(`(?m)^\s+user: demo\n`).ReplaceAllString(y, "")
	os.WriteFile(e.cfg, []byte(y), 0o600)
	checkSampleTimeouts(t, e.cfg)

	d := startServe(t, e, false)
	rep, err := do(t, d.Addr, e.key, protocol.VerbStatus, "demo")
	if err != nil || rep.Outcome != protocol.OutcomeFailed || rep.ExitCode != 3 || rep.Output != "not running" {
		t.Fatalf("status before start: %+v %v", rep, err)
	}
	rep, err = do(t, d.Addr, e.key, protocol.VerbRestart, "demo")
	if err != nil || rep.Outcome != protocol.OutcomeOK || !strings.Contains(rep.Output, "started (pid") {
		t.Fatalf("restart: %+v %v\n%s", rep, err, d.Logs())
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(readFile(filepath.Join(e.dir, "demo.pid"))))
	if pid <= 1 {
		t.Fatal("no pid file")
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	// Detached: its own session, stdio not the agent's pipes.
	if sid := sessionOf(t, pid); sid != pid {
		t.Fatalf("worker %d is in session %d, not its own", pid, sid)
	}
	if rep.Duration > 3*time.Second {
		t.Fatalf("restart held the reply for %s: the worker kept the pipe", rep.Duration)
	}
	if rep, _ := do(t, d.Addr, e.key, protocol.VerbStatus, "demo"); rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("status after start: %+v", rep)
	}
	d.Signal(syscall.SIGTERM)
	select {
	case <-d.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not stop")
	}
	if syscall.Kill(pid, 0) != nil {
		t.Fatal("the worker died with the agent")
	}
	// stop.sh stops it.
	d = startServe(t, e, false)
	if rep, err := do(t, d.Addr, e.key, protocol.VerbStop, "demo"); err != nil || rep.Outcome != protocol.OutcomeOK || !strings.Contains(rep.Output, "stopped") {
		t.Fatalf("stop: %+v %v", rep, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for proc.Alive(pid) { // a zombie waiting for a reaper is gone
		if time.Now().After(deadline) {
			t.Fatal("worker still running after stop")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sessionOf reads the session id from /proc/PID/stat (field 6).
func sessionOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	sid, _ := strconv.Atoi(f[3]) // state ppid pgrp session
	return sid
}

// checkSampleTimeouts: every action of the sample config, given its
// kill_grace, ends before the handler's --deadline in the sample Nagios 4
// and Icinga 2 configs: the handler always hears the true outcome.
func checkSampleTimeouts(t *testing.T, cfgPath string) {
	t.Helper()
	cfg, err := listener.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(testutil.ModuleRoot(t), "nagios-config")
	for file, re := range map[string]*regexp.Regexp{
		"nagios4/commands.cfg":  regexp.MustCompile(`--deadline (\S+)`),
		"icinga2/selfheal.conf": regexp.MustCompile(`"--deadline" = "([^"]+)"`),
	} {
		m := re.FindStringSubmatch(readFile(filepath.Join(root, file)))
		if m == nil {
			t.Fatalf("%s names no --deadline", file)
		}
		deadline, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for name, svc := range cfg.Services {
			for verb, a := range svc.Actions {
				if a.Timeout+a.KillGrace >= deadline {
					t.Errorf("sample %s %s: timeout %s + kill_grace %s is not below %s's --deadline %s", name, verb, a.Timeout, a.KillGrace, file, deadline)
				}
			}
		}
	}
}

// TestInetdSocketSurvivesFloods: with Accept=yes every connection is an
// activation, and systemd's default trigger limit (200 in 2 s) would fail
// the socket, so that anyone who can connect could stop healing. The
// sample must turn that limit off and bound the load by connection counts.
func TestInetdSocketSurvivesFloods(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testutil.ModuleRoot(t), "nagios-config", "listener", "worker_listener-inetd.socket"))
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && !strings.HasPrefix(line, "#") {
			settings[k] = v
		}
	}
	for k, want := range map[string]string{"Accept": "yes", "TriggerLimitIntervalSec": "0"} {
		if settings[k] != want {
			t.Errorf("%s=%q, want %q", k, settings[k], want)
		}
	}
	for _, k := range []string{"MaxConnections", "MaxConnectionsPerSource"} {
		if n, err := strconv.Atoi(settings[k]); err != nil || n < 1 || n > 256 {
			t.Errorf("%s=%q: want a bound between 1 and 256", k, settings[k])
		}
	}
}
