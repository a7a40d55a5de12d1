package check

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Logger writes -v diagnostics, one line per event:
// "15:04:05 DBG connect network=tcp addr=127.0.0.1:80". A nil Logger, or
// one without W, discards. It is check_worker's own and not zerolog: the
// plugin starts once a minute for every worker, and linking zerolog (with
// log/slog and go-colorable) cost about 0.3 ms of CPU per start in package
// initialisation, for lines that are off unless -v (docs/benchmarks.md).
type Logger struct {
	W     io.Writer // stderr: stdout is Nagios' and carries only the answer
	Level int       // the -v count: 1 debug, 3 and more adds trace
}

// Debug logs at -v; kv are key, value pairs.
func (l *Logger) Debug(msg string, kv ...any) { l.log(1, "DBG", msg, kv) }

// Trace logs at -vvv.
func (l *Logger) Trace(msg string, kv ...any) { l.log(3, "TRC", msg, kv) }

func (l *Logger) log(min int, tag, msg string, kv []any) {
	if l == nil || l.W == nil || l.Level < min {
		return
	}
	var b strings.Builder
	b.WriteString(time.Now().Format(time.TimeOnly) + " " + tag + " " + msg)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			continue // a nil error: nothing to say
		}
		v := fmt.Sprint(kv[i+1])
		if v == "" || strings.ContainsAny(v, " =\"") {
			v = fmt.Sprintf("%q", v)
		}
		fmt.Fprintf(&b, " %s=%s", kv[i], v)
	}
	b.WriteByte('\n')
	io.WriteString(l.W, b.String())
}
