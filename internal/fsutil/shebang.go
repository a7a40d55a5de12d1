package fsutil

import (
	"bytes"
	"errors"
	"io"
	"os"
	"syscall"
)

// shebangBuf is what the kernel reads of a script to find its "#!" line
// (BINPRM_BUF_SIZE, binfmt_script).
const shebangBuf = 256

// MaxInterpreters is how deep the kernel follows a script whose
// interpreter is a script (BINPRM_MAX_RECURSION is 4, so 5 exec handlers).
const MaxInterpreters = 5

// Interpreter is the program the kernel runs for the file at path when
// it starts with "#!" (the interpreter's path, as written), "" when it
// does not. A root-owned script whose "#!" names a file a stranger can
// write runs that file as root: the trust rule judges it too.
func Interpreter(path string) (string, error) {
	// O_NONBLOCK: a FIFO put in the file's place must not hang the caller.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", errors.New("is not a regular file")
	}
	buf := make([]byte, shebangBuf)
	n, err := f.Read(buf)
	if n < 2 || !bytes.HasPrefix(buf[:n], []byte("#!")) {
		if n == 0 && err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		return "", nil
	}
	line := buf[2:n]
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimLeft(line, " \t")
	if i := bytes.IndexAny(line, " \t\x00"); i >= 0 {
		line = line[:i]
	}
	return string(line), nil
}
