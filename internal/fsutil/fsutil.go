// Package fsutil holds the suite's few file primitives, each written once:
// reading small configuration files (keys, certificates) in a way that
// cannot block (ReadRegular), the trust rule that judges them, and the one
// file API for state: a Dir (an open directory, openat(2), never a
// symlink under a name) that reads, writes atomically, locks and removes.
// A caller that holds a path reaches it with OpenParent.
//
// Nothing here may block past a deadline: a FIFO or device given by
// mistake must produce an error at once, and a busy lock is waited for
// only as long as the caller's context allows, because a plugin or
// handler that blocks before its deadline starts is killed by Nagios and
// read as CRITICAL.
package fsutil

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

// The refusals, matched with errors.Is: a file that is not a regular one
// (a FIFO, a device, a directory) or larger than the caller allows; a path
// that is a symlink where none may be; a name that is not one path
// element.
var (
	ErrNotRegular = errors.New("not a regular file")
	ErrTooLarge   = errors.New("file too large")
	ErrSymlink    = errors.New("is a symlink")
	ErrBadName    = errors.New("not a single path element")
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
// check permissions on the very file they read (no stat/open race). It is
// the reader of configuration files (keys, certificates, credentials),
// which may be symlinks (certbot's live/ directory is made of them): the
// trust rule judges what they point to. State files are read through a
// Dir, which never follows one.
func ReadRegular(path string, max int64) ([]byte, os.FileMode, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, err
	}
	return readAll(f, max)
}

// readAll reads f, closing it: only a regular file (ErrNotRegular), at most
// max bytes (ErrTooLarge).
func readAll(f *os.File, max int64) ([]byte, os.FileMode, error) {
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fi.Mode(), &refusal{fmt.Sprintf("%s is not a regular file", f.Name()), ErrNotRegular}
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fi.Mode(), err
	}
	if int64(len(b)) > max {
		return nil, fi.Mode(), &refusal{fmt.Sprintf("%s is larger than %d bytes", f.Name(), max), ErrTooLarge}
	}
	return b, fi.Mode(), nil
}

// DefaultLockPoll is how often Dir.Lock retries a busy lock when poll is zero.
const DefaultLockPoll = 20 * time.Millisecond

// busy is a lock another process held for the whole wait.
type busy struct{ ctxErr error }

func (e *busy) Error() string   { return syscall.EWOULDBLOCK.Error() }
func (e *busy) Unwrap() []error { return []error{syscall.EWOULDBLOCK, e.ctxErr} }
