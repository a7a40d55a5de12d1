package fsutil

// Writing without following symlinks: a Dir is an open directory, and
// every file is reached from it by openat(2) with O_NOFOLLOW, one path
// element at a time. Whoever renames the directory or plants a symlink
// under a name after the check cannot redirect a write, a lock or a
// removal; the directory itself is judged once, by Trust.OpenDir.
// Not os.Root: it follows symlinks that stay inside its directory, and
// opens that directory itself through a symlink; here no name is ever one.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Dir is an open directory. Its methods take names, not paths: a single
// element, neither "." nor "..", without '/' or NUL. It is safe for
// concurrent use, Close included: Close waits for the calls using the
// descriptor, so none can reach another directory that reuses its number.
type Dir struct {
	mu   sync.RWMutex
	fd   int // -1 once closed
	path string
}

// OpenDir opens the directory path without following a symlink in its
// last element (O_DIRECTORY|O_NOFOLLOW). The elements before it are
// resolved by the kernel, symlinks included (/var/run -> /run must keep
// working): they are safe only once judged, so use Trust.OpenDir, which
// checks the path and that the directory opened is the one checked.
func OpenDir(path string) (*Dir, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if isLink(err, func() bool { return pathIsLink(path) }) {
			return nil, symlinkRefusal(path)
		}
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return &Dir{fd: fd, path: path}, nil
}

// OpenParent opens the directory that holds path and returns it with
// path's last element, the name to use in it: how a caller that has a
// path (a pid file, a lock file, the agent's journal) reaches the Dir API.
// Unlike OpenDir it follows symlinks in the directory's own path, its last
// element included (/var/run -> /run), as os.Open does; the file itself is
// still never reached through one. Close the Dir when done (a lock taken
// through it outlives it).
func OpenParent(path string) (*Dir, string, error) {
	dir, name := filepath.Dir(path), filepath.Base(path)
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, "", &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return &Dir{fd: fd, path: dir}, name, nil
}

// OpenDir opens path (see the function OpenDir) and judges it for kind,
// a DataDir or a PrivateDir, with Check. It returns the Problems as its
// error when there are any, and an error too when what it opened is not
// what it checked (the path was swapped in between).
func (t Trust) OpenDir(path string, kind Kind) (*Dir, error) {
	if !kind.isDir() || kind&Optional != 0 {
		return nil, fmt.Errorf("fsutil: OpenDir %s: kind must be DataDir or PrivateDir", path)
	}
	d, err := OpenDir(path)
	if err != nil {
		return nil, err
	}
	if ps := t.Check(path, kind); len(ps) > 0 {
		d.Close()
		return nil, ps
	}
	// Opened, then checked: the same inode now means the fd is the
	// directory judged (no one else can rename what the check passed).
	var opened, checked unix.Stat_t
	if err := unix.Fstat(d.fd, &opened); err != nil {
		d.Close()
		return nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if err := unix.Stat(path, &checked); err != nil || opened.Dev != checked.Dev || opened.Ino != checked.Ino {
		d.Close()
		return nil, fmt.Errorf("%s changed while it was being checked", path)
	}
	return d, nil
}

// Path is the directory's path as it was opened, for messages.
func (d *Dir) Path() string { return d.path }

// Close closes the directory; a second Close returns os.ErrClosed.
func (d *Dir) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd < 0 {
		return os.ErrClosed
	}
	err := unix.Close(d.fd)
	d.fd = -1
	return err
}

// hold checks name and returns d's descriptor, valid until release.
func (d *Dir) hold(name string) (fd int, release func(), err error) {
	if err := d.checkName(name); err != nil {
		return -1, nil, err
	}
	d.mu.RLock()
	if d.fd < 0 {
		d.mu.RUnlock()
		return -1, nil, &os.PathError{Op: "use", Path: d.join(name), Err: os.ErrClosed}
	}
	return d.fd, d.mu.RUnlock, nil
}

func (d *Dir) join(name string) string { return strings.TrimSuffix(d.path, "/") + "/" + name }

// checkName refuses what is not one path element.
func (d *Dir) checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return &refusal{fmt.Sprintf("file name %q in %s: %s", name, d.path, ErrBadName), ErrBadName}
	}
	return nil
}

// OpenFile opens name in d like os.OpenFile, never through a symlink
// (O_NOFOLLOW), never blocking on a FIFO, and only a regular file
// (ErrNotRegular otherwise). A file it creates gets exactly perm, the
// umask notwithstanding; an existing file keeps its mode.
func (d *Dir) OpenFile(name string, flag int, perm os.FileMode) (*os.File, error) {
	dirfd, release, err := d.hold(name)
	if err != nil {
		return nil, err
	}
	defer release()
	fd, err := d.open(dirfd, name, flag, perm)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), d.join(name)), nil
}

// open is OpenFile's fd. With O_CREATE (and no O_EXCL) it first tries to
// create exclusively, so that it knows whether to set perm, then opens
// what exists; O_EXCL never follows a symlink either.
func (d *Dir) open(dirfd int, name string, flag int, perm os.FileMode) (int, error) {
	path := d.join(name)
	flag |= unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK
	for try := 0; ; try++ {
		created := flag&unix.O_CREAT != 0
		fl := flag
		if created && flag&unix.O_EXCL == 0 {
			fl |= unix.O_EXCL
		}
		fd, err := unix.Openat(dirfd, name, fl, uint32(perm.Perm()))
		if errors.Is(err, unix.EEXIST) && fl != flag {
			created = false
			fd, err = unix.Openat(dirfd, name, flag&^unix.O_CREAT, 0)
			if errors.Is(err, unix.ENOENT) && try < 3 {
				continue // removed in between: create it after all
			}
		}
		if err != nil {
			return -1, d.openError(dirfd, name, err)
		}
		if err := d.settle(fd, path, created, perm); err != nil {
			unix.Close(fd)
			if created {
				_ = unix.Unlinkat(dirfd, name, 0)
			}
			return -1, err
		}
		return fd, nil
	}
}

// settle checks that fd is a regular file, sets perm on what was just
// created and makes fd blocking again.
func (d *Dir) settle(fd int, path string, created bool, perm os.FileMode) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return &refusal{path + " is not a regular file", ErrNotRegular}
	}
	if created {
		if err := unix.Fchmod(fd, uint32(perm.Perm())); err != nil {
			return &os.PathError{Op: "fchmod", Path: path, Err: err}
		}
	}
	return unix.SetNonblock(fd, false)
}

// openError says why openat refused name: a symlink and a FIFO or socket
// (ENXIO under O_NONBLOCK) get a refusal that says so.
func (d *Dir) openError(dirfd int, name string, err error) error {
	path := d.join(name)
	if isLink(err, func() bool { return linkAt(dirfd, name) }) {
		return symlinkRefusal(path)
	}
	if errors.Is(err, unix.ENXIO) {
		return &refusal{path + " is not a regular file", ErrNotRegular}
	}
	return &os.PathError{Op: "openat", Path: path, Err: err}
}

// isLink tells an O_NOFOLLOW failure on a symlink (ELOOP, or ENOTDIR with
// O_DIRECTORY) from others.
func isLink(err error, link func() bool) bool {
	return (errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR)) && link()
}

func pathIsLink(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode()&os.ModeSymlink != 0
}

func symlinkRefusal(path string) error {
	return &refusal{path + " is a symlink: refusing to follow it", ErrSymlink}
}

// linkAt reports whether name in dirfd is a symlink (not followed).
func linkAt(dirfd int, name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK
}

// ReadRegular is the package's ReadRegular for name in d, never through
// a symlink.
func (d *Dir) ReadRegular(name string, max int64) ([]byte, os.FileMode, error) {
	f, err := d.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, 0, err
	}
	return readAll(f, max)
}

// WriteFileAtomic replaces name with data, mode perm. See WriteAtomic.
func (d *Dir) WriteFileAtomic(name string, data []byte, perm os.FileMode) error {
	return d.WriteAtomic(name, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteAtomic replaces name in d with what write produces: a temp file
// (name + ".tmp-" + random digits, created O_EXCL|O_NOFOLLOW, so never
// through a symlink), exactly perm (the umask does not apply), buffered,
// fsync, renameat over name, fsync of d. A crash or SIGKILL at any point
// leaves the old file or the new one, never a mix; a killed writer may
// leave its temp file, which RemoveTemps deletes. A symlink planted as
// name is replaced, never followed. On error name is untouched and no
// temp file is left. write runs while d is held: it must
// not call d's methods (with a Close waiting, that would deadlock).
func (d *Dir) WriteAtomic(name string, perm os.FileMode, write func(io.Writer) error) error {
	return d.writeAtomic(name, perm, true, false, write)
}

// ReplaceFile is WriteFileAtomic without the two fsyncs: a reader sees the
// old file or the new one, and a crash of the writer leaves one of them,
// but a power loss may lose the replacement. For state whose loss is
// harmless and that is written on a hot path (the agent's breaker counts,
// written before every restart: two fsyncs there cost 3.5 ms each).
func (d *Dir) ReplaceFile(name string, data []byte, perm os.FileMode) error {
	return d.writeAtomic(name, perm, false, false, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteLocked replaces name in d with data, as WriteFileAtomic (durable)
// or ReplaceFile does, for a writer that holds the lock serialising name's
// writers. Its temp file has one name, name+".tmp-0": the leftover of a
// writer killed under that lock is unlinked first (never followed), with
// no scan of the directory, which RemoveTemps makes (a handler's state
// directory holds two files per service: at 1,000 services the scan was
// 1 ms of every write).
func (d *Dir) WriteLocked(name string, data []byte, perm os.FileMode, durable bool) error {
	return d.writeAtomic(name, perm, durable, true, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

func (d *Dir) writeAtomic(name string, perm os.FileMode, durable, locked bool, write func(io.Writer) error) error {
	dirfd, release, err := d.hold(name)
	if err != nil {
		return err
	}
	defer release()
	var tmp string
	var fd int
	if locked {
		tmp = name + ".tmp-0"
		if err := unix.Unlinkat(dirfd, tmp, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return &os.PathError{Op: "unlinkat", Path: d.join(tmp), Err: err}
		}
		fd, err = d.open(dirfd, tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	} else {
		for range 100 {
			tmp = name + ".tmp-" + strconv.FormatUint(uint64(rand.Uint32()), 10)
			fd, err = d.open(dirfd, tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
			if !errors.Is(err, unix.EEXIST) {
				break
			}
		}
	}
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), d.join(tmp))
	renamed := false
	defer func() {
		if !renamed {
			f.Close()
			_ = unix.Unlinkat(dirfd, tmp, 0)
		}
	}()
	w := bufio.NewWriter(f)
	if err := write(w); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if durable {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, name); err != nil {
		return &os.LinkError{Op: "renameat", Old: d.join(tmp), New: d.join(name), Err: err}
	}
	renamed = true
	if !durable {
		return nil
	}
	if err := unix.Fsync(dirfd); err != nil {
		return fmt.Errorf("fsync dir %s: %w", d.path, err)
	}
	return nil
}

// RemoveTemps deletes the temp files WriteAtomic left for name when its
// writer was killed (name + ".tmp-" + digits: only digits, so that the
// files of another name that starts the same, such as "a.json.tmp-1.json"
// beside "a.json", are never taken). Call it only where no live writer can
// own them (under the lock that serialises the writers).
func (d *Dir) RemoveTemps(name string) {
	dirfd, release, err := d.hold(name)
	if err != nil {
		return
	}
	defer release()
	// A descriptor of its own: reading entries moves the offset of the
	// open file description, which d's users must not see.
	fd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), d.path)
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	for _, n := range names {
		if rest, ok := strings.CutPrefix(n, name+".tmp-"); ok && strings.Trim(rest, "0123456789") == "" {
			_ = unix.Unlinkat(dirfd, n, 0)
		}
	}
}

// Names lists the entries of d whose names end with suffix, sorted.
func (d *Dir) Names(suffix string) ([]string, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	dirfd := d.fd
	if dirfd < 0 {
		return nil, &os.PathError{Op: "use", Path: d.path, Err: os.ErrClosed}
	}
	// A descriptor of its own, as RemoveTemps.
	fd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "openat", Path: d.path, Err: err}
	}
	f := os.NewFile(uintptr(fd), d.path)
	defer f.Close()
	all, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range all {
		if strings.HasSuffix(n, suffix) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Remove removes name from d (a symlink itself, never its target); a
// directory is not removed.
func (d *Dir) Remove(name string) error {
	dirfd, release, err := d.hold(name)
	if err != nil {
		return err
	}
	defer release()
	if err := unix.Unlinkat(dirfd, name, 0); err != nil {
		return &os.PathError{Op: "unlinkat", Path: d.join(name), Err: err}
	}
	return nil
}

// Subdir opens the subdirectory name of d, creating it with exactly perm
// if it is missing, never through a symlink.
func (d *Dir) Subdir(name string, perm os.FileMode) (*Dir, error) {
	dirfd, release, err := d.hold(name)
	if err != nil {
		return nil, err
	}
	defer release()
	path := d.join(name)
	created := true
	if err := unix.Mkdirat(dirfd, name, uint32(perm.Perm())); errors.Is(err, unix.EEXIST) {
		created = false
	} else if err != nil {
		return nil, &os.PathError{Op: "mkdirat", Path: path, Err: err}
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if isLink(err, func() bool { return linkAt(dirfd, name) }) {
			return nil, symlinkRefusal(path)
		}
		return nil, &os.PathError{Op: "openat", Path: path, Err: err}
	}
	if created {
		if err := unix.Fchmod(fd, uint32(perm.Perm())); err != nil {
			unix.Close(fd)
			return nil, &os.PathError{Op: "fchmod", Path: path, Err: err}
		}
	}
	return &Dir{fd: fd, path: path}, nil
}

// Lock takes an exclusive advisory lock (flock) on name in d, creating it
// with exactly perm if missing, and returns the function that releases
// it. The kernel drops the lock when the process dies, so a SIGKILL never
// leaves a stale one. The lock file is never reached through a symlink (a
// lock file in a shared directory must not be a way to create or open
// another file) and must be a regular file.
//
// A busy lock is retried every poll (LOCK_NB in a loop, not a blocking
// flock, because a blocking call cannot be abandoned at a deadline) until
// ctx ends; it is always tried at least once, and once more after ctx
// ends, so an expired ctx means "try once". When it stays busy the error
// reads like the flock error ("resource temporarily unavailable") and
// matches both syscall.EWOULDBLOCK and ctx's error.
func (d *Dir) Lock(ctx context.Context, name string, perm os.FileMode, poll time.Duration) (unlock func() error, err error) {
	f, err := d.OpenFile(name, os.O_RDWR|os.O_CREATE, perm)
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

// flockWait takes LOCK_EX on f as Lock documents: LOCK_NB retried every
// poll until ctx ends, tried once more after.
func flockWait(ctx context.Context, f *os.File, poll time.Duration) error {
	if poll <= 0 {
		poll = DefaultLockPoll
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return &os.PathError{Op: "flock", Path: f.Name(), Err: err}
		}
		if ctx.Err() != nil {
			return &busy{ctx.Err()}
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}
