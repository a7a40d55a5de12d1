package protocol

import (
	"bufio"
	"bytes"
	"io"
)

// ReadFrame reads one newline-terminated frame of at most max bytes
// (newline included) and returns it without the newline. It never buffers
// more than the reader's buffer, so a 100 MiB line without a newline costs
// at most max bytes of reading before ErrFrameTooLong. NUL and CR bytes are
// refused: no legitimate frame holds them.
func ReadFrame(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max {
			return nil, ErrFrameTooLong
		}
		if err == nil {
			break
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			if len(line) == 0 {
				return nil, io.EOF
			}
			return nil, ErrNoNewline
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if bytes.IndexByte(line, 0) >= 0 || bytes.IndexByte(line, '\r') >= 0 {
		return nil, ErrMalformed
	}
	return line, nil
}
