package handler

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/selfheal/selfheal/internal/fsutil"
)

// stateVersion tags the file format; a file with another version is
// treated like a corrupt one (fail closed) rather than guessed at.
const stateVersion = 1

// maxRecords bounds the file however the window is configured.
const maxRecords = 64

// maxStateBytes is far above what maxRecords records take (about 40 KiB).
const maxStateBytes = 1 << 20

// Outcomes recorded for a restart. Pending is written before the request
// goes out, so a handler killed mid-flight still leaves a counted restart.
const (
	RecordPending = "pending"
	RecordOK      = "ok"
	RecordFailed  = "failed"
)

// Record is one restart (attempted, whatever its outcome).
type Record struct {
	ID      string    `json:"id"`
	At      time.Time `json:"at"`
	Source  string    `json:"source"` // "event" or "manual"
	Verb    string    `json:"verb"`
	Trigger string    `json:"trigger,omitempty"`
	Outcome string    `json:"outcome"`
	Detail  string    `json:"detail,omitempty"`
}

// Episode is the fault since the last OK seen by the handler.
type Episode struct {
	Opened      time.Time  `json:"opened"`
	RestartedAt *time.Time `json:"restarted_at,omitempty"`
}

// StateFile is the JSON kept per host and service.
type StateFile struct {
	Version  int      `json:"version"`
	Host     string   `json:"host"`
	Service  string   `json:"service"`
	Episode  *Episode `json:"episode,omitempty"`
	Restarts []Record `json:"restarts"`
}

// ErrStateCorrupt marks a state file that exists but cannot be trusted.
// The handler fails closed on it: a human deletes the file to re-arm.
var ErrStateCorrupt = errors.New("state file corrupt")

// Store keeps StateFiles in Dir, one per host and service, each guarded by
// an flock on a sibling .lock file. Locks are released by the kernel when
// the process dies, so a SIGKILL never leaves a stale lock.
type Store struct {
	Dir string
	// Poll is how often a busy lock is retried (default 20ms); the wait is
	// bounded by the context.
	Poll time.Duration
}

// Path returns the state file path for host and service.
func (s Store) Path(host, service string) string {
	return filepath.Join(s.Dir, fileBase(host, service)+".json")
}

// fileBase makes a file name from names Nagios allows to contain almost
// anything: bytes outside [A-Za-z0-9._-] are %-escaped (so "," separates
// the two parts unambiguously), a leading dot is escaped too, and overlong
// names are replaced by a hash.
func fileBase(host, service string) string {
	esc := func(s string) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' && i > 0 {
				b.WriteByte(c)
			} else {
				fmt.Fprintf(&b, "%%%02X", c)
			}
		}
		return b.String()
	}
	base := esc(host) + "," + esc(service)
	if len(base) > 180 {
		sum := sha256.Sum256([]byte(host + "\x00" + service))
		base = "h-" + hex.EncodeToString(sum[:16])
	}
	return base
}

// Update locks the state of host/service, reads it, calls fn and, if fn
// returns nil, writes the result atomically. Missing state starts empty.
// A corrupt file yields ErrStateCorrupt without calling fn. Any failure to
// lock, read or write is returned: callers fail closed on it.
func (s Store) Update(ctx context.Context, host, service string, fn func(st *StateFile) error) error {
	if s.Dir == "" {
		return errors.New("no state directory configured")
	}
	fi, err := os.Stat(s.Dir)
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("state directory %s is not a directory", s.Dir)
	}
	base := fileBase(host, service)
	unlock, err := s.lock(ctx, filepath.Join(s.Dir, base+".lock"))
	if err != nil {
		return err
	}
	defer unlock()

	final := filepath.Join(s.Dir, base+".json")
	// Under the lock, so no live writer owns them.
	fsutil.RemoveTemps(final)
	st, err := readState(final, host, service)
	if err != nil {
		return err
	}
	if err := fn(st); err != nil {
		return err
	}
	return writeAtomic(final, st)
}

// Read returns the current state without writing it (for --dry-run),
// under the same lock so that it sees a settled read-modify-write.
func (s Store) Read(ctx context.Context, host, service string) (*StateFile, error) {
	var out *StateFile
	err := s.Update(ctx, host, service, func(st *StateFile) error {
		out = st
		return errReadOnly
	})
	if errors.Is(err, errReadOnly) {
		return out, nil
	}
	return nil, err
}

var errReadOnly = errors.New("read only")

func (s Store) lock(ctx context.Context, path string) (func() error, error) {
	unlock, err := fsutil.Lock(ctx, path, 0o600, s.Poll)
	switch {
	case errors.Is(err, syscall.EWOULDBLOCK):
		return nil, fmt.Errorf("state lock %s: still held by another handler: %w", path, ctx.Err())
	case err != nil:
		return nil, fmt.Errorf("state lock: %w", err)
	}
	return unlock, nil
}

func readState(path, host, service string) (*StateFile, error) {
	// Non-blocking open, regular files only, bounded read: a FIFO or a
	// device in the state directory must not hang the handler past its
	// deadline (the lock wait is bounded, this read would not be).
	b, _, err := fsutil.ReadRegular(path, maxStateBytes)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &StateFile{Version: stateVersion, Host: host, Service: service}, nil
	case errors.Is(err, fsutil.ErrNotRegular), errors.Is(err, fsutil.ErrTooLarge):
		return nil, fmt.Errorf("%w: %v", ErrStateCorrupt, err)
	case err != nil:
		return nil, fmt.Errorf("reading state: %w", err)
	}
	var st StateFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrStateCorrupt, path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("%w: %s: version %d, want %d", ErrStateCorrupt, path, st.Version, stateVersion)
	}
	if st.Host != host || st.Service != service {
		return nil, fmt.Errorf("%w: %s belongs to %q/%q", ErrStateCorrupt, path, st.Host, st.Service)
	}
	return &st, nil
}

// writeAtomic writes st with fsutil.WriteFileAtomic: a SIGKILL at any
// point leaves either the old or the new file, never a mix; a leftover
// temp file is removed by the next Update.
func writeAtomic(path string, st *StateFile) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing state: %w", err)
	}
	return nil
}

// SetOutcome settles the restart record id (written as pending before the
// request) with its outcome. A record no longer there (pruned, or the
// file was deleted to re-arm healing) is not an error.
func (s Store) SetOutcome(ctx context.Context, host, service, id, outcome, detail string) error {
	err := s.Update(ctx, host, service, func(st *StateFile) error {
		for i := range st.Restarts {
			if st.Restarts[i].ID == id {
				st.Restarts[i].Outcome, st.Restarts[i].Detail = outcome, detail
				return nil
			}
		}
		return errNoWrite
	})
	if errors.Is(err, errNoWrite) {
		return nil
	}
	return err
}
