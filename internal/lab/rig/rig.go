// Package rig wires the self-healing loop on one machine, once, for every
// test, benchmark and demo that needs it: a fleet key and an agent's host
// key (IssueKeys, NewKeys), the agent's config (ListenerConfig, its
// restart budget included), a real worker_listener on loopback
// (StartListener), the demo worker behind its pid file (Worker), and a real
// Nagios Core 4 or Icinga 2 running the sample definitions in nagios-config/
// (Site, StartLoop).
//
// Its API returns errors and does not import testing: demo_worker links it
// through the narrated demo. Tests use the thin wrappers in rigtest. No
// installed binary may link it (internal/lab/conventions checks), and it
// must not import internal/listener, whose own tests use it: they run the
// listener in-process on files the rig writes (Prepare).
package rig

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Binaries are the four programs of the suite, by name.
var Binaries = []string{"check_worker", "handle_worker", "worker_listener", "demo_worker"}

// Loopback is the allow list of a listener that only local clients reach.
var Loopback = []string{"127.0.0.1/32", "::1/128"}

// FreePort returns a loopback port that was free a moment ago. Whoever
// binds it next may race another process for it; where that matters, hand
// the listener its socket instead (Serve.Activate).
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// FreeAddr is FreePort as 127.0.0.1:PORT.
func FreeAddr() (string, error) {
	p, err := FreePort()
	if err != nil {
		return "", err
	}
	return "127.0.0.1:" + strconv.Itoa(p), nil
}

// runTimeout bounds every command Run runs.
const runTimeout = 30 * time.Second

// Run runs one of the suite's binaries to completion (at most 30 s) and
// returns its combined output; a non-zero exit is an error that quotes it.
func Run(ctx context.Context, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
