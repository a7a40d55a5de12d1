package handler

import (
	"context"
	"errors"
	"time"

	"github.com/selfheal/selfheal/internal/protocol"
)

// Backoff between tries: the step starts at 100 ms and doubles up to 2 s;
// each pause is the step ±50 % (so handlers that failed together do not
// retry together), never more than 2 s. No new try starts with less than
// minAttempt left, and a pause shorter than minPause is not worth taking.
const (
	firstBackoff = 100 * time.Millisecond
	maxBackoff   = 2 * time.Second
	minAttempt   = 200 * time.Millisecond
	minPause     = 20 * time.Millisecond
)

// backoff yields the jittered pauses. rand returns [0, 1).
type backoff struct {
	step time.Duration
	rand func() float64
}

func newBackoff(rand func() float64) *backoff { return &backoff{step: firstBackoff, rand: rand} }

// next returns the pause before the next try and doubles the step.
func (b *backoff) next() time.Duration {
	d := time.Duration(float64(b.step) * (0.5 + b.rand()))
	b.step = min(2*b.step, maxBackoff)
	return min(max(d, 0), maxBackoff)
}

// exchange is one request to the agent, retries included.
type exchange struct {
	rep      protocol.Reply // the final reply, when final
	final    bool           // the agent gave an answer that is not worth retrying
	refusal  protocol.Outcome
	sent     bool  // some try reached the agent and got no valid reply: it may have acted
	err      error // the last transport (or request) error, when the last try had no reply
	attempts int
	took     time.Duration
	signed   time.Time // when the last try began (its request's timestamp, on our clock)
	// short: the agent denied the extended form unsigned, and the tries
	// since were in the short form; old: it then answered the short form
	// signed, so it is older than the extended form (upgrade it).
	short, old bool
}

// call sends verb for fault until the agent gives a final answer or ctx
// ends. Transport failures (protocol.ErrNotSent, ErrNoReply) and the
// refusals sent before anything ran (busy, rate-limited) are retried with
// the same fault and a new nonce (the client makes one per Do): the agent
// runs a fault's restart once and answers every later request for it from
// its record, so a retry after a lost reply cannot restart twice. Retries
// are never counted anywhere. Any other error (an invalid request) ends
// the loop at once.
//
// An agent older than the extended form denies it unsigned, as it denies a
// wrong key: the unsigned denied to an extended request is asked again
// once, at once, in the short form, and the tries after it stay short.
// That costs a new agent nothing it would not answer anyway: the short
// form is the same request without the fault's age, which the agent reads
// as "start not known" (a new fault inside min_gap is deferred, never
// ok), and a request it denied in one form it denies in the other.
func call(ctx context.Context, c Doer, q protocol.Call, deps Deps) (x exchange) {
	b := newBackoff(deps.Rand)
	t0 := deps.Now()
	defer func() { x.took = deps.Now().Sub(t0) }()
	for {
		x.attempts++
		x.signed = deps.Now()
		var rep protocol.Reply
		var err error
		if x.short {
			rep, err = c.Do(ctx, q.Verb, q.Service, q.Fault)
		} else {
			rep, err = c.Send(ctx, q)
		}
		x.refusal, x.err = "", nil
		switch {
		case err == nil && !x.short && rep.Outcome == protocol.OutcomeDenied && !rep.Signed():
			x.short = true
			continue
		case err == nil && x.short && rep.Signed():
			x.old = true
		}
		if err == nil && rep.LegacyMAC {
			x.old = true
		}
		switch {
		case err == nil && !rep.Outcome.Retryable():
			x.rep, x.final = rep, true
			return x
		case err == nil:
			x.refusal = rep.Outcome
		case errors.Is(err, protocol.ErrNoReply):
			x.sent, x.err = true, err
		case errors.Is(err, protocol.ErrNotSent):
			x.err = err
		default:
			x.err = err
			return x
		}
		pause := b.next()
		if dl, ok := ctx.Deadline(); ok {
			// The last pause is shortened so that one more try still fits.
			pause = min(pause, time.Until(dl)-minAttempt)
		}
		if ctx.Err() != nil || pause < minPause || deps.Sleep(ctx, pause) != nil {
			return x
		}
	}
}
