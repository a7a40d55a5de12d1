package proc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/selfheal/selfheal/internal/fsutil"
)

// WritePIDFile writes pid atomically (temp file + rename), so a reader never
// sees a half-written number.
func WritePIDFile(path string, pid int) error {
	d, name, err := fsutil.OpenParent(path)
	if err == nil {
		err = d.WriteFileAtomic(name, []byte(strconv.Itoa(pid)+"\n"), 0o644)
		d.Close()
	}
	if err != nil {
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

// RemovePIDFile removes path only if it still names pid: a newer process
// may already have replaced it.
func RemovePIDFile(path string, pid int) {
	if got, err := ReadPIDFile(path); err == nil && got == pid {
		os.Remove(path)
	}
}

// RunsWithPIDFile reports whether pid is a live process whose command line
// holds the argument verb and a --pid-file naming pidFile: the daemon that
// owns the pid file, never a recycled pid (nor the daemon's controller,
// whose command line names the same file under another verb).
func RunsWithPIDFile(pid int, verb, pidFile string) bool {
	return Alive(pid) && cmdlineNames(pid, verb, pidFile)
}

func cmdlineNames(pid int, verb, pidFile string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	abs, _ := filepath.Abs(pidFile)
	// A relative --pid-file is relative to the process's own directory.
	cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	same := func(p string) bool {
		if !filepath.IsAbs(p) {
			p = filepath.Join(cwd, p)
		}
		return filepath.Clean(p) == abs
	}
	hasVerb, hasFile := false, false
	for i, a := range args {
		switch {
		case a == verb:
			hasVerb = true
		case a == "--pid-file" && i+1 < len(args):
			hasFile = hasFile || same(args[i+1])
		case strings.HasPrefix(a, "--pid-file="):
			hasFile = hasFile || same(strings.TrimPrefix(a, "--pid-file="))
		}
	}
	return hasVerb && hasFile
}
