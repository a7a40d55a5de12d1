package nodestate

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/selfheal/selfheal/internal/fsutil"
)

// HeldRecords returns every record with a held fault.
func (s Store) HeldRecords() ([]Record, error) {
	d, err := s.Open()
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Names(".json")
	if err != nil {
		return nil, err
	}
	var out []Record
	for _, n := range names {
		if !strings.Contains(n, ",") { // records are "<host>,<service>.json": not pauses.json or breaker.json
			continue
		}
		rec, err := readAny(d, n)
		if err != nil || rec == nil || rec.Held == nil {
			continue // unreadable records are reported by status, not here
		}
		out = append(out, *rec)
	}
	return out, nil
}

// AllRecords returns every readable record, and the names of the others.
func (s Store) AllRecords() ([]Record, []string, error) {
	d, err := s.Open()
	if err != nil {
		return nil, nil, err
	}
	defer d.Close()
	names, err := d.Names(".json")
	if err != nil {
		return nil, nil, err
	}
	var out []Record
	var bad []string
	for _, n := range names {
		if !strings.Contains(n, ",") { // records are "<host>,<service>.json": not pauses.json or breaker.json
			continue
		}
		rec, err := readAny(d, n)
		if err != nil || rec == nil {
			bad = append(bad, n)
			continue
		}
		out = append(out, *rec)
	}
	return out, bad, nil
}

// readAny reads a record whose names come from the file itself; it must
// still be the file those names map to.
func readAny(d *fsutil.Dir, name string) (*Record, error) {
	b, _, err := d.ReadRegular(name, maxStateBytes)
	if err != nil {
		return nil, err
	}
	var peek struct{ Host, Service string }
	if err := json.Unmarshal(b, &peek); err != nil {
		return nil, err
	}
	if fileBase(peek.Host, peek.Service)+".json" != name {
		return nil, fmt.Errorf("%w: %s names %q/%q", ErrStateCorrupt, name, peek.Host, peek.Service)
	}
	return readState(d, name, peek.Host, peek.Service)
}

// Kinds are the kinds of the comments the record says are live.
func (rec *Record) Kinds() []string {
	var out []string
	for _, w := range rec.Comments {
		out = append(out, KeyKind(w.Key))
	}
	if rec.Legacy() {
		out = append(out, KeyKind(rec.Comment))
	}
	return out
}

// Legacy: the record names a comment written but not which (written by a
// handler that did not keep Comments yet).
func (rec *Record) Legacy() bool {
	return len(rec.Comments) == 0 && rec.Comment != "" && !slices.ContainsFunc(rec.Pending, func(p Pending) bool {
		return strings.HasPrefix(p.Cmd, "ADD_SVC_COMMENT;")
	})
}

// KeyKind is the kind of a "kind|fault" key.
func KeyKind(key string) string {
	if i := strings.LastIndexByte(key, '|'); i >= 0 {
		return key[:i]
	}
	return key
}
