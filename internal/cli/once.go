package cli

import (
	"io"
	"sync"
)

// OnceWriter lets exactly one answer of a plugin reach W, whether it comes
// from the check, a usage error, Guard or the watchdog: Nagios reads the
// first line, so a second answer would only confuse the reader.
type OnceWriter struct {
	W    io.Writer
	mu   sync.Mutex
	done bool
}

func (o *OnceWriter) Write(p []byte) (int, error) {
	o.WriteOnce(string(p))
	return len(p), nil
}

// WriteOnce writes s unless an answer was written already.
func (o *OnceWriter) WriteOnce(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.done {
		return
	}
	o.done = true
	io.WriteString(o.W, s)
}
