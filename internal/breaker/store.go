package breaker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"syscall"
	"time"

	"github.com/selfheal/selfheal/internal/fsutil"
)

// ErrCorrupt marks a state file that exists but is not a breaker's state.
// It is reported, never repaired: guessing would silently open or close
// the breaker. The caller decides (both callers fail open and log it);
// removing the file closes the breaker.
var ErrCorrupt = errors.New("breaker state file corrupt")

// stateVersion is the file format; another version is ErrCorrupt.
const stateVersion = 1

// maxFile bounds the read: MaxFailures failures of 64-byte keys and
// 128-byte faults are well under it.
const maxFile = 1 << 20

// Store keeps one breaker's state in a file of an already opened, trusted
// directory: Name+".json", written atomically (temp file, fsync, rename),
// under an flock on Name+".lock", so that the agent's inetd processes and
// the handler's concurrent runs see one breaker. Dir stays the caller's.
type Store struct {
	Dir    *fsutil.Dir
	Name   string // e.g. "breaker"
	Config Config
	// Poll is how often a busy lock is retried (default fsutil's); the
	// wait is bounded by the context.
	Poll time.Duration
}

type file struct {
	Version int `json:"version"`
	Snapshot
}

// Admit records that key needs a restart for fault at now and says whether
// it may run (Step). The same (key, fault) asked again is one failure,
// not two; a key+fault that was admitted stays admitted; a held one is
// admitted once the breaker allows it.
func (s Store) Admit(ctx context.Context, now time.Time, key, fault string) (Verdict, error) {
	if err := s.Config.Validate(); err != nil {
		return Verdict{}, err
	}
	if key == "" {
		return Verdict{}, errors.New("breaker: empty key")
	}
	unlock, err := s.Dir.Lock(ctx, s.Name+".lock", 0o600, s.Poll)
	switch {
	case errors.Is(err, syscall.EWOULDBLOCK):
		return Verdict{}, fmt.Errorf("breaker lock %s: still held by another process: %w", s.path(".lock"), ctx.Err())
	case err != nil:
		return Verdict{}, fmt.Errorf("breaker lock: %w", err)
	}
	defer unlock()
	old, raw, err := s.read()
	if err != nil {
		return Verdict{}, err
	}
	st, v := Step(old, now, key, fault, s.Config)
	b, err := json.Marshal(file{Version: stateVersion, Snapshot: st})
	if err != nil {
		return Verdict{}, err
	}
	b = append(b, '\n')
	if !bytes.Equal(b, raw) {
		// Not fsynced: a power loss forgets recent counts, which only
		// lets restarts through (the direction a lost breaker must fail).
		if err := s.Dir.WriteLocked(s.Name+".json", b, 0o600, false); err != nil {
			return Verdict{}, fmt.Errorf("breaker state: %w", err)
		}
	}
	return v, nil
}

// read returns the state and the file's bytes; a missing file is a closed
// breaker.
func (s Store) read() (Snapshot, []byte, error) {
	b, _, err := s.Dir.ReadRegular(s.Name+".json", maxFile)
	if errors.Is(err, fs.ErrNotExist) || err == nil && len(b) == 0 {
		// Missing, or empty: a replacement a power loss cut (the file is
		// not fsynced). Either is a closed breaker, rewritten next time.
		return Snapshot{State: Closed}, nil, nil
	}
	if err != nil {
		return Snapshot{}, nil, fmt.Errorf("breaker state: %w", err)
	}
	var f file
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return Snapshot{}, nil, fmt.Errorf("%w: %s: %v: fix or remove it (removing closes the breaker)", ErrCorrupt, s.path(".json"), err)
	}
	if f.Version != stateVersion {
		return Snapshot{}, nil, fmt.Errorf("%w: %s: version %d, want %d: fix or remove it (removing closes the breaker)", ErrCorrupt, s.path(".json"), f.Version, stateVersion)
	}
	if err := f.check(); err != nil {
		return Snapshot{}, nil, fmt.Errorf("%w: %s: %v: fix or remove it (removing closes the breaker)", ErrCorrupt, s.path(".json"), err)
	}
	return f.Snapshot, b, nil
}

func (s Store) path(ext string) string { return s.Dir.Path() + "/" + s.Name + ext }

// Current is the breaker as it is at now (time applied, nothing counted):
// for status, which must not count a service that did not ask.
func (s Store) Current(_ context.Context, now time.Time) (Verdict, error) {
	if err := s.Config.Validate(); err != nil {
		return Verdict{}, err
	}
	st, _, err := s.read()
	if err != nil {
		return Verdict{}, err
	}
	return Now(st, now, s.Config), nil
}

// Try is what Admit would answer for key and fault, recording nothing
// (a dry run).
func (s Store) Try(_ context.Context, now time.Time, key, fault string) (Verdict, error) {
	if err := s.Config.Validate(); err != nil {
		return Verdict{}, err
	}
	st, _, err := s.read()
	if err != nil {
		return Verdict{}, err
	}
	_, v := Step(st, now, key, fault, s.Config)
	return v, nil
}

// Memory is a breaker one process owns (the agent's serve mode): its
// state is kept in memory under a mutex, read from the Store's file once
// and written back at most every Flush (and at once when the breaker is
// not closed), without holding anyone up on a file lock per restart. A
// crash forgets at most Flush of counts, which only lets restarts
// through. Processes that share the file (inetd mode) use Store.Admit.
type Memory struct {
	Store Store
	Flush time.Duration

	mu      sync.Mutex
	loaded  bool
	st      Snapshot
	written time.Time
}

// Admit is Store.Admit, in memory.
func (m *Memory) Admit(ctx context.Context, now time.Time, key, fault string) (Verdict, error) {
	if err := m.Store.Config.Validate(); err != nil {
		return Verdict{}, err
	}
	if key == "" {
		return Verdict{}, errors.New("breaker: empty key")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.loaded && !m.written.IsZero() && !m.exists() {
		// An operator removed the file to close the breaker: start over.
		m.loaded = false
	}
	if !m.loaded {
		st, _, err := m.Store.read()
		if err != nil {
			return Verdict{}, err
		}
		m.st, m.loaded = st, true
	}
	before := m.st.State
	st, v := Step(m.st, now, key, fault, m.Store.Config)
	m.st = st
	if v.State != Closed || v.State != before || now.Sub(m.written) >= m.Flush || now.Before(m.written) {
		if err := m.save(ctx); err != nil {
			return v, nil // the verdict stands; the file catches up next time
		}
		m.written = now
	}
	return v, nil
}

// Try is Store.Try, in memory: what Admit would answer for key and
// fault, recording nothing (the agent's query verb).
func (m *Memory) Try(_ context.Context, now time.Time, key, fault string) (Verdict, error) {
	if err := m.Store.Config.Validate(); err != nil {
		return Verdict{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.st
	if !m.loaded || (!m.written.IsZero() && !m.exists()) {
		var err error
		if st, _, err = m.Store.read(); err != nil {
			return Verdict{}, err
		}
	}
	_, v := Step(st, now, key, fault, m.Store.Config)
	return v, nil
}

// exists reports whether the state file is there.
func (m *Memory) exists() bool {
	_, _, err := m.Store.Dir.ReadRegular(m.Store.Name+".json", maxFile)
	return !errors.Is(err, fs.ErrNotExist)
}

// save writes the state under the file's lock.
func (m *Memory) save(ctx context.Context) error {
	unlock, err := m.Store.Dir.Lock(ctx, m.Store.Name+".lock", 0o600, m.Store.Poll)
	if err != nil {
		return err
	}
	defer unlock()
	b, err := json.Marshal(file{Version: stateVersion, Snapshot: m.st})
	if err != nil {
		return err
	}
	return m.Store.Dir.WriteLocked(m.Store.Name+".json", append(b, '\n'), 0o600, false)
}
