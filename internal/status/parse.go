package status

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/selfheal/selfheal/internal/nagios"
)

// words are the contract's status words: nagios' labels, lower-cased.
var words = func() (w [len(nagios.States)]string) {
	for i, s := range nagios.States {
		w[i] = strings.ToLower(s.String())
	}
	return w
}()

// ParseState reads a status word of the contract, in any case. It
// lower-cases the word, as the contract always has, instead of calling
// nagios.Parse, which upper-cases: the two differ on a few non-ASCII
// letters ("o\u212a" with a KELVIN SIGN lowers to "ok"; a dotless
// "warn\u0131ng" upper-cases to "WARNING"), and workers must not see the
// accepted words change.
func ParseState(word string) (nagios.State, bool) {
	w := strings.ToLower(strings.TrimSpace(word))
	for i, s := range nagios.States {
		if w == words[i] {
			return s, true
		}
	}
	return nagios.Unknown, false
}

// Scope is whose fault a check's finding is.
type Scope uint8

// The scopes of the contract. The zero Scope is ScopeSelf, so that a
// finding nobody scoped counts as the worker's own and may be healed.
const (
	ScopeSelf       Scope = iota // the worker's own (the default)
	ScopeDependency              // a service the worker depends on
)

// ParseScope reads a check's "scope": absent (""), "self" or
// "dependency", in any case and trimmed like a status word. ok is false for
// anything else, which Validate refuses.
func ParseScope(word string) (Scope, bool) {
	switch strings.ToLower(strings.TrimSpace(word)) {
	case "", "self":
		return ScopeSelf, true
	case "dependency":
		return ScopeDependency, true
	}
	return ScopeSelf, false
}

// MaxBody is the default cap on a status body. A status document is a few
// hundred bytes; anything near a megabyte is a runaway worker.
const MaxBody = 1 << 20

// Errors returned by ReadBody and Parse; check_worker maps each to a state.
var (
	// ErrTooLarge: the body is longer than the cap.
	ErrTooLarge = errors.New("status body exceeds size limit")
	// ErrMalformed: the body is not one JSON object of the contract's shape.
	ErrMalformed = errors.New("malformed status document")
	// ErrUnknownStatus: a status word other than ok/warning/critical/unknown.
	ErrUnknownStatus = errors.New("unknown status word")
	// ErrInvalid: valid JSON that breaks a rule of the contract.
	ErrInvalid = errors.New("invalid status document")
)

// ReadBody reads at most limit bytes from r; a longer body is ErrTooLarge
// (and the rest is never read, so an endless body costs nothing more).
func ReadBody(r io.Reader, limit int64) ([]byte, error) {
	if limit <= 0 {
		limit = MaxBody
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if int64(len(b)) > limit {
		return b[:limit], fmt.Errorf("%w (%d bytes)", ErrTooLarge, limit)
	}
	return b, err
}

// Limits on what a document may hold, so a hostile or buggy worker cannot
// make check_worker's output or work unbounded.
const (
	MaxChecks  = 256
	MaxMetrics = 256
	maxName    = 128
)

// Parse decodes and validates one status document. Unknown fields are
// ignored so the contract can grow; everything present must be valid.
func Parse(data []byte) (Document, error) {
	d, err := decode(data)
	if err != nil {
		return Document{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return d, d.Validate()
}

// Validate checks the contract's rules (docs/status-contract.md).
func (d *Document) Validate() error {
	if strings.TrimSpace(d.Status) == "" {
		return fmt.Errorf("%w: \"status\" is required", ErrInvalid)
	}
	if _, ok := ParseState(d.Status); !ok {
		return fmt.Errorf("%w %q", ErrUnknownStatus, clip(d.Status))
	}
	if len(d.Checks) > MaxChecks || len(d.Metrics) > MaxMetrics {
		return fmt.Errorf("%w: more than %d checks or %d metrics", ErrInvalid, MaxChecks, MaxMetrics)
	}
	for i, c := range d.Checks {
		if err := name("checks", i, c.Name); err != nil {
			return err
		}
		if _, ok := ParseState(c.Status); !ok {
			return fmt.Errorf("%w %q in check %q", ErrUnknownStatus, clip(c.Status), clip(c.Name))
		}
		if _, ok := ParseScope(c.Scope); !ok {
			return fmt.Errorf("%w: check %q has scope %q (want self or dependency)", ErrInvalid, clip(c.Name), clip(c.Scope))
		}
	}
	for i, m := range d.Metrics {
		if err := name("metrics", i, m.Name); err != nil {
			return err
		}
	}
	return nil
}

func name(kind string, i int, n string) error {
	if strings.TrimSpace(n) == "" {
		return fmt.Errorf("%w: %s[%d] has no name", ErrInvalid, kind, i)
	}
	if len(n) > maxName {
		return fmt.Errorf("%w: %s[%d] name longer than %d bytes", ErrInvalid, kind, i, maxName)
	}
	return nil
}

// clip keeps worker text in error messages short and printable.
func clip(s string) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) > 32 {
		s = s[:32] + "..."
	}
	return strings.ToValidUTF8(s, "")
}
