package check

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/status"
)

// Result is the plugin's answer: the state (its exit code) and the exact
// text for stdout.
type Result struct {
	State  nagios.State
	Output string
}

// Errors the fetch produces besides transport and status.* errors.
var (
	ErrRedirect    = errors.New("redirect refused")
	ErrContentType = errors.New("unexpected content type")
)

// HTTPStatusError is a non-2xx answer. Doc is set when the body was still
// a valid status document (a worker may serve its 503 with details).
type HTTPStatusError struct {
	Code int
	Line string // first body line, sanitised
	Doc  *status.Document

	plain bool // --plain: any non-2xx is CRITICAL
}

func (e *HTTPStatusError) Error() string {
	s := fmt.Sprintf("HTTP %d %s", e.Code, statusText(e.Code))
	if e.Line != "" {
		s += ": " + e.Line
	}
	return s
}

// timings are measured with the injected clock.
type timings struct {
	start, connStart, connDone, tlsStart, tlsDone, firstByte, end time.Time
	size                                                          int
}

// Run performs one check. It never panics on worker input, never writes
// anywhere but the logger, and returns within cfg.Timeout plus rendering.
func Run(ctx context.Context, cfg Config, deps Deps) Result {
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	log := deps.Logger // nil discards
	dial := deps.Dial
	if dial == nil {
		dial = defaultDial
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	tm := timings{start: now()}
	f := fetcher{cfg: cfg, dial: dial, tls: deps.TLS, now: now, tm: &tm, log: log}
	body, err := f.fetch(ctx)
	tm.end = now()
	if err != nil && pastDeadline(ctx) {
		// Whatever broke once the deadline passed (a read cut short, a
		// half-parsed header) broke because of it: report the timeout.
		err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	var errv any
	if err != nil {
		errv = err
	}
	log.Debug("fetch done", "elapsed", tm.end.Sub(tm.start), "bytes", tm.size, "error", errv)
	if err != nil {
		return failure(cfg, err, tm)
	}
	if cfg.Plain {
		return render(cfg, evaluation{msg: firstLine(body)}, tm, true)
	}
	doc, err := status.Parse(body)
	if err != nil {
		return failure(cfg, err, tm)
	}
	return render(cfg, evaluate(cfg, &doc, tm.end), tm, true)
}

// pastDeadline: the connection's deadline equals the context's and may
// fire a moment before the context notices, so real time decides too.
func pastDeadline(ctx context.Context) bool {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}
