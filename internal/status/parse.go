package status

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// State is a Nagios state; the numbers are the plugin exit codes.
type State int

// The four Nagios states.
const (
	OK       State = 0
	Warning  State = 1
	Critical State = 2
	Unknown  State = 3
)

func (s State) String() string {
	switch s {
	case OK:
		return "OK"
	case Warning:
		return "WARNING"
	case Critical:
		return "CRITICAL"
	}
	return "UNKNOWN"
}

// rank orders states for Worst: CRITICAL > WARNING > UNKNOWN > OK, as
// monitoring-plugins' max_state_alt does. A sub-check that cannot tell
// (UNKNOWN) must not hide a real WARNING.
func (s State) rank() int {
	switch s {
	case OK:
		return 0
	case Unknown:
		return 1
	case Warning:
		return 2
	}
	return 3
}

// Worst returns the more severe of a and b.
func Worst(a, b State) State {
	if b.rank() > a.rank() {
		return b
	}
	return a
}

// ParseState reads a status word of the contract, in any case.
func ParseState(word string) (State, bool) {
	switch strings.ToLower(strings.TrimSpace(word)) {
	case "ok":
		return OK, true
	case "warning":
		return Warning, true
	case "critical":
		return Critical, true
	case "unknown":
		return Unknown, true
	}
	return Unknown, false
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
	var d Document
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&d); err != nil {
		return Document{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Document{}, fmt.Errorf("%w: data after the JSON object", ErrMalformed)
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
