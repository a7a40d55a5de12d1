// Package proc answers "does this process still run", stops processes the
// polite way (SIGTERM, a grace period, then SIGKILL), and keeps pid files
// (written atomically, removed only by their owner, and an owner told from
// a recycled pid by its command line). It is Linux only: it reads /proc,
// as the suite's agents do everywhere else.
//
// The one rule worth a package: a zombie counts as gone. It has exited;
// only its parent has not reaped it yet, and a detached worker's adopter
// may never do so promptly, so "kill(pid, 0) succeeds" is not "it runs".
package proc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Stat is the part of /proc/PID/stat the suite reads.
type Stat struct {
	State   byte // 'R', 'S', 'D', 'Z' (zombie), ...
	PPID    int
	PGRP    int
	Session int
	// Start is the start time in clock ticks since boot (field 22): with
	// the pid it names one process, so a recycled pid is not taken for it.
	Start uint64
}

// ReadStat parses /proc/PID/stat. An error wraps os.ErrNotExist when there
// is no such process (or it has been reaped).
func ReadStat(pid int) (Stat, error) {
	if pid <= 0 {
		return Stat{}, fmt.Errorf("proc: pid %d: %w", pid, os.ErrNotExist)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, err
	}
	return parseStat(string(b))
}

// parseStat reads a /proc/PID/stat line. The command name (field 2) may
// hold spaces and parentheses, so the fields start after the last ')'.
func parseStat(s string) (Stat, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return Stat{}, errors.New("proc: stat: no command name")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return Stat{}, fmt.Errorf("proc: stat: %d fields after the command name", len(f))
	}
	var st Stat
	st.State = f[0][0]
	nums := []*int{&st.PPID, &st.PGRP, &st.Session}
	for k, p := range nums {
		n, err := strconv.Atoi(f[1+k])
		if err != nil {
			return Stat{}, fmt.Errorf("proc: stat field %d: %w", 4+k, err)
		}
		*p = n
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return Stat{}, fmt.Errorf("proc: stat field 22: %w", err)
	}
	st.Start = start
	return st, nil
}

// Alive reports whether pid is a process that has not exited. A zombie is
// gone; pid <= 0 is never alive (kill would address process groups). A
// process of another user (EPERM) is alive: it exists, we just may not
// signal it.
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	st, err := ReadStat(pid)
	if err != nil {
		// kill found it; an unreadable or odd stat does not make it dead,
		// but reaped between the two calls does.
		return !errors.Is(err, os.ErrNotExist)
	}
	return st.State != 'Z'
}

// GroupAlive reports whether process group pgid still has a member this
// process may signal (kill(-pgid, 0) succeeds). Zombie members count:
// telling them apart would mean scanning /proc, and a caller that waits
// for its group also reaps its own child. Members we may not signal do
// not count: we could not kill them, so waiting for them only delays.
// pgid <= 1 is never alive (-1 would mean every process).
func GroupAlive(pgid int) bool {
	return pgid > 1 && syscall.Kill(-pgid, 0) == nil
}

// DefaultPoll is how often Escalation checks when Poll is zero.
const DefaultPoll = 20 * time.Millisecond

// Escalation is the polite way to stop a process: SIGTERM, up to Grace for
// it to go, then SIGKILL and up to KillWait more.
type Escalation struct {
	Grace    time.Duration // after SIGTERM, before SIGKILL
	KillWait time.Duration // after SIGKILL, before giving up
	Poll     time.Duration // how often gone is checked; 0 = DefaultPoll
}

// Terminate sends SIGTERM through signal and waits until gone reports
// true; if it does not within Grace, it sends SIGKILL and waits KillWait
// more. ctx cuts either wait short. It reports whether SIGKILL was sent
// and whether the target was gone at the end.
func (e Escalation) Terminate(ctx context.Context, signal func(syscall.Signal), gone func() bool) (killed, stopped bool) {
	signal(syscall.SIGTERM)
	if e.wait(ctx, gone, e.Grace) {
		return false, true
	}
	signal(syscall.SIGKILL)
	return true, e.wait(ctx, gone, e.KillWait)
}

// TerminateGroup is Terminate on process group pgid: every signal goes to
// the whole group, and it is gone when GroupAlive says so. pgid <= 1 is
// refused (reported stopped, nothing signalled): -1 would mean every
// process.
func (e Escalation) TerminateGroup(ctx context.Context, pgid int) (killed, stopped bool) {
	if pgid <= 1 {
		return false, true
	}
	return e.Terminate(ctx,
		func(sig syscall.Signal) { _ = syscall.Kill(-pgid, sig) },
		func() bool { return !GroupAlive(pgid) })
}

// wait polls gone for at most d; it reports gone's last answer.
func (e Escalation) wait(ctx context.Context, gone func() bool, d time.Duration) bool {
	poll := e.Poll
	if poll <= 0 {
		poll = DefaultPoll
	}
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for !gone() {
		select {
		case <-ctx.Done():
			return gone()
		case <-deadline.C:
			return gone()
		case <-tick.C:
		}
	}
	return true
}
