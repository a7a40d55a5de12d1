package cli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
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

// Watchdog is a plugin's last line of defence: its work is bounded by
// timeout, so this fires only on a bug (a stuck lock, a blocked file
// system), which is the plugin's own failure and therefore UNKNOWN. It
// answers "LABEL UNKNOWN - PROG did not finish within T (internal hang)"
// through o and exits 3, 2 s after timeout. Stop it when the work ends.
func (o *OnceWriter) Watchdog(timeout time.Duration, label, prog string) (stop func() bool) {
	return time.AfterFunc(timeout+2*time.Second, func() {
		o.WriteOnce(fmt.Sprintf("%s UNKNOWN - %s did not finish within %s (internal hang)\n", label, prog, timeout))
		os.Exit(3)
	}).Stop
}
