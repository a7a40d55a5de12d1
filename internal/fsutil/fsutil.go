// Package fsutil holds the suite's few file primitives, each written once:
// reading small configuration files (keys, certificates, state) in a way
// that cannot block, writing files atomically, and advisory locks.
//
// Nothing here may block past a deadline: a FIFO or device given by
// mistake must produce an error at once, and a busy lock is waited for
// only as long as the caller's context allows, because a plugin or
// handler that blocks before its deadline starts is killed by Nagios and
// read as CRITICAL.
package fsutil

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// ReadRegular refuses a file with an error matching ErrNotRegular or
// ErrTooLarge (errors.Is).
var (
	ErrNotRegular = errors.New("not a regular file")
	ErrTooLarge   = errors.New("file too large")
)

// refusal keeps ReadRegular's messages ("X is not a regular file") while
// letting callers tell a refused file from an I/O error.
type refusal struct {
	msg  string
	kind error
}

func (e *refusal) Error() string        { return e.msg }
func (e *refusal) Is(target error) bool { return target == e.kind }

// ReadRegular opens path without blocking, insists on a regular file, and
// reads at most max bytes. It returns the file's mode too, for callers that
// check permissions on the very file they read (no stat/open race).
func ReadRegular(path string, max int64) ([]byte, os.FileMode, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fi.Mode(), &refusal{fmt.Sprintf("%s is not a regular file", path), ErrNotRegular}
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fi.Mode(), err
	}
	if int64(len(b)) > max {
		return nil, fi.Mode(), &refusal{fmt.Sprintf("%s is larger than %d bytes", path, max), ErrTooLarge}
	}
	return b, fi.Mode(), nil
}

// WriteFileAtomic replaces path with data, mode perm. See WriteAtomic.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return WriteAtomic(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteAtomic replaces path with what write produces: a temp file in the
// same directory (path's name + ".tmp-" + random), fsync, rename over
// path, fsync of the directory. A crash or SIGKILL at any point leaves the old file or
// the new one, never a mix; a killed writer may leave its temp file, which
// RemoveTemps deletes. write's output is buffered; perm is set exactly
// (the umask does not apply). On error path is untouched.
func WriteAtomic(path string, perm os.FileMode, write func(io.Writer) error) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	renamed := false
	defer func() {
		if !renamed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	w := bufio.NewWriter(tmp)
	if err := write(w); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	renamed = true
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync dir: %w", err)
	}
	return nil
}

// RemoveTemps deletes the temp files WriteAtomic left for path when its
// writer was killed. Call it only where no live writer can own them (under
// the lock that serialises the writers).
func RemoveTemps(path string) {
	m, _ := filepath.Glob(filepath.Join(filepath.Dir(path), globEscape(filepath.Base(path))+".tmp-*"))
	for _, p := range m {
		os.Remove(p)
	}
}

// globEscape quotes the characters filepath.Match treats specially.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// DefaultLockPoll is how often Lock retries a busy lock when poll is zero.
const DefaultLockPoll = 20 * time.Millisecond

// Lock takes an exclusive advisory lock (flock) on path, creating it with
// perm if missing, and returns the function that releases it. The kernel
// drops the lock when the process dies, so a SIGKILL never leaves a stale
// one. path must not be a symlink (O_NOFOLLOW): a lock file in a shared
// directory must not be a way to create or open another file.
//
// A busy lock is retried every poll (LOCK_NB in a loop, not a blocking
// flock, because a blocking call cannot be abandoned at a deadline) until
// ctx ends; it is always tried at least once, and once more after ctx
// ends, so an expired ctx means "try once". When it stays busy the error
// reads like the flock error ("resource temporarily unavailable") and
// matches both syscall.EWOULDBLOCK and ctx's error.
func Lock(ctx context.Context, path string, perm os.FileMode, poll time.Duration) (unlock func() error, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, perm)
	if err != nil {
		return nil, err
	}
	if err := flockWait(ctx, f, poll); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return f.Close()
	}, nil
}

// busy is a lock another process held for the whole wait.
type busy struct{ ctxErr error }

func (e *busy) Error() string   { return syscall.EWOULDBLOCK.Error() }
func (e *busy) Unwrap() []error { return []error{syscall.EWOULDBLOCK, e.ctxErr} }
