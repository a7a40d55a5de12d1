// Package fsutil reads small configuration files (keys, certificates) in a
// way that cannot block: a FIFO or device given by mistake must produce an
// error at once, because a plugin or handler that blocks before its
// deadline starts is killed by Nagios and read as CRITICAL.
package fsutil

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

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
		return nil, fi.Mode(), fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fi.Mode(), err
	}
	if int64(len(b)) > max {
		return nil, fi.Mode(), fmt.Errorf("%s is larger than %d bytes", path, max)
	}
	return b, fi.Mode(), nil
}
