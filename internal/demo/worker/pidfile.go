package worker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/proc"
)

// WritePIDFile writes pid atomically (temp file + rename), so a reader never
// sees a half-written number.
func WritePIDFile(path string, pid int) error {
	if err := fsutil.WriteFileAtomic(path, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	return nil
}

// ReadPIDFile returns the pid in path; 0 and no error when the file does
// not exist.
func ReadPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("pid file %s: not a pid: %q", path, strings.TrimSpace(string(b)))
	}
	return pid, nil
}

// RemovePIDFile removes path only if it still names pid: a newer worker
// may already have replaced it.
func RemovePIDFile(path string, pid int) {
	if got, err := ReadPIDFile(path); err == nil && got == pid {
		os.Remove(path)
	}
}

// Owns reports whether pid is a live demo_worker run with pidFile; callers
// use it to kill leftovers without ever hitting a recycled pid.
func Owns(pid int, pidFile string) bool { return proc.Alive(pid) && isOurWorker(pid, pidFile) }

// isOurWorker reports whether the live process pid is a demo_worker started
// with this pid file, so that a recycled pid never gets an unrelated
// process killed.
func isOurWorker(pid int, pidFile string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	abs, _ := filepath.Abs(pidFile)
	// A relative --pid-file is relative to the worker's own directory.
	cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	same := func(p string) bool {
		if !filepath.IsAbs(p) {
			p = filepath.Join(cwd, p)
		}
		return filepath.Clean(p) == abs
	}
	hasRun, hasFile := false, false
	for i, a := range args {
		switch {
		case a == "run":
			hasRun = true
		case a == "--pid-file" && i+1 < len(args):
			hasFile = hasFile || same(args[i+1])
		case strings.HasPrefix(a, "--pid-file="):
			hasFile = hasFile || same(strings.TrimPrefix(a, "--pid-file="))
		}
	}
	return hasRun && hasFile
}
