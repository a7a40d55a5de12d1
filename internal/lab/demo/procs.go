package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// result is one finished command.
type result struct {
	Stdout, Stderr string
	Code           int // exit code; -1 when it did not exit by itself
	Took           time.Duration
	Err            error // set when the command could not run or was cut off
}

// runner runs the real binaries: no shell, a fixed environment, the temp
// dir as working directory, each in its own process group that is killed
// as a whole when the command times out or the demo is interrupted.
type runner struct {
	dir string
	env []string
	now func() time.Time
}

func (r *runner) command(ctx context.Context, bin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = r.dir
	cmd.Env = r.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A child that daemonises badly would hold our pipes; never wait on it.
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// run runs one command to completion, bounded by timeout.
func (r *runner) run(ctx context.Context, timeout time.Duration, bin string, args ...string) result {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := r.command(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := r.now()
	err := cmd.Run()
	res := result{Stdout: out.String(), Stderr: errb.String(), Took: r.now().Sub(start), Code: -1}
	if cmd.ProcessState != nil && cmd.ProcessState.Exited() {
		res.Code = cmd.ProcessState.ExitCode()
	}
	var ee *exec.ExitError
	switch {
	case err == nil, errors.As(err, &ee) && res.Code >= 0 && ctx.Err() == nil:
	case ctx.Err() != nil:
		res.Err = fmt.Errorf("%s: cut off after %s: %w", baseName(bin), timeout, ctx.Err())
	default:
		res.Err = fmt.Errorf("%s: %w", baseName(bin), err)
	}
	return res
}

// pipe runs `a | b` without a shell, as /bin/sh would: b's stdin is a's
// stdout, both bounded by one timeout. The result is b's, with a's stderr
// first, and a's failure when b succeeded.
func (r *runner) pipe(ctx context.Context, timeout time.Duration, a, b []string) result {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ca, cb := r.command(ctx, a[0], a[1:]...), r.command(ctx, b[0], b[1:]...)
	pr, pw, err := os.Pipe()
	if err != nil {
		return result{Code: -1, Err: err}
	}
	var out, errb bytes.Buffer
	ca.Stdout, ca.Stderr = pw, &errb
	cb.Stdin, cb.Stdout, cb.Stderr = pr, &out, &errb
	start := r.now()
	if err := ca.Start(); err != nil {
		pr.Close()
		pw.Close()
		return result{Code: -1, Err: fmt.Errorf("%s: %w", baseName(a[0]), err)}
	}
	pw.Close() // a holds its own copy: b sees EOF when a exits
	errB := cb.Start()
	pr.Close()
	errA := ca.Wait()
	if errB == nil {
		errB = cb.Wait()
	}
	res := result{Stdout: out.String(), Stderr: errb.String(), Took: r.now().Sub(start), Code: -1}
	if cb.ProcessState != nil && cb.ProcessState.Exited() {
		res.Code = cb.ProcessState.ExitCode()
	}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		res.Err = fmt.Errorf("%s | %s: cut off after %s: %w", baseName(a[0]), baseName(b[0]), timeout, ctx.Err())
	case errB != nil && !(errors.As(errB, &ee) && res.Code >= 0):
		res.Err = fmt.Errorf("%s: %w", baseName(b[0]), errB)
	case errA != nil && res.Code == 0:
		res.Err = fmt.Errorf("%s: %w", baseName(a[0]), errA)
	}
	return res
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// killPID kills a leftover process and its group (a detached worker leads
// its own).
func killPID(pid int) error {
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	return syscall.Kill(pid, syscall.SIGKILL)
}
