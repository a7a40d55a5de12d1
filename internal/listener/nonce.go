package listener

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/selfheal/selfheal/internal/fsutil"
)

// ErrReplay is a nonce seen before inside the replay window.
var ErrReplay = errors.New("nonce already used")

// maxNonces bounds the cache: beyond it new requests are refused (fail
// closed) rather than forgetting nonces that could then be replayed. The
// server keeps nonces for MaxReplayWindow (10 m), so that is >1,600
// accepted requests/s sustained for 10 minutes.
const maxNonces = 1 << 20

// NonceCache remembers the nonces of authenticated requests (whatever the
// answer, skew included) for as long as their timestamps are inside the
// replay window. It persists them in
// state_dir/nonces (append-only, compacted now and then) so that a replay
// after a restart of the agent is refused too. A lock file keeps two
// agents from sharing one state_dir. Both are reached through the checked
// state_dir (fsutil.Dir): never through a symlink planted there.
type NonceCache struct {
	mu     sync.Mutex
	seen   map[string]int64 // nonce -> request timestamp
	window int64            // seconds
	dir    *fsutil.Dir
	f      *os.File
	unlock func() error
	lines  int
	purged int64 // when expired entries were last dropped (unix seconds)
}

// OpenNonceCache loads the cache from the state_dir dir (openStateDir),
// which it does not close. wait bounds how long to wait for the lock:
// serve mode passes 0 (fail at once if another agent holds it), inetd
// mode a few seconds.
func OpenNonceCache(dir *fsutil.Dir, window time.Duration, now time.Time, wait time.Duration) (*NonceCache, error) {
	// An expired context still tries once: serve mode's wait of 0 means
	// "fail at once if another agent holds it".
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	unlock, err := dir.Lock(ctx, "lock", 0o600, 5*time.Millisecond)
	switch {
	case errors.Is(err, syscall.EWOULDBLOCK):
		return nil, fmt.Errorf("state_dir %s is locked by another worker_listener: %w", dir.Path(), err)
	case err != nil:
		return nil, fmt.Errorf("state_dir lock: %w", err)
	}
	c := &NonceCache{seen: map[string]int64{}, window: int64(window / time.Second), dir: dir, unlock: unlock}
	if err := c.load(now.Unix()); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// nonceFile is the cache's name in state_dir.
const nonceFile = "nonces"

func (c *NonceCache) load(now int64) error {
	f, err := c.dir.OpenFile(nonceFile, os.O_RDONLY, 0)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("nonce cache: %w", err)
	}
	if f != nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			ts, nonce, ok := strings.Cut(sc.Text(), " ")
			t, err := strconv.ParseInt(ts, 10, 64)
			if !ok || err != nil || len(nonce) != 32 {
				continue // a torn last line after a crash
			}
			if t >= now-c.window {
				c.seen[nonce] = t
			}
		}
		f.Close()
	}
	c.dir.RemoveTemps(nonceFile) // left by an agent killed mid-compact; we hold the lock
	return c.compact()
}

// compact rewrites the file with the live entries only (atomically: a
// crash leaves the old file or the new one).
func (c *NonceCache) compact() error {
	err := c.dir.WriteAtomic(nonceFile, 0o600, func(w io.Writer) error {
		for n, t := range c.seen {
			if _, err := fmt.Fprintf(w, "%d %s\n", t, n); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("nonce cache: %w", err)
	}
	if c.f != nil {
		c.f.Close()
	}
	c.f, err = c.dir.OpenFile(nonceFile, os.O_WRONLY|os.O_APPEND, 0o600)
	c.lines = len(c.seen)
	return err
}

// Use records nonce (from an authenticated request with timestamp ts, in
// the window or not: one dated in the future is kept until its time is
// past the window) or returns ErrReplay if it was seen. The record is
// written to the file before Use returns, so a restart cannot forget it.
func (c *NonceCache) Use(nonce string, ts int64, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.seen[nonce]; dup {
		return ErrReplay
	}
	n := now.Unix()
	// Drop expired entries now and then (at most every minute), so that
	// memory and the file follow the live request rate instead of
	// growing to maxNonces first.
	if len(c.seen) >= maxNonces || n-c.purged >= min(c.window, 60) || n < c.purged {
		c.purged = n
		for k, t := range c.seen {
			if t < n-c.window {
				delete(c.seen, k)
			}
		}
		if len(c.seen) >= maxNonces {
			return errors.New("nonce cache full")
		}
		if c.lines > 2*len(c.seen)+10000 {
			if err := c.compact(); err != nil {
				return err
			}
		}
	}
	// One write(2) of one line: atomic with O_APPEND, in the page cache
	// before we answer. Not fsynced: see docs/security.md.
	if _, err := c.f.WriteString(strconv.FormatInt(ts, 10) + " " + nonce + "\n"); err != nil {
		return fmt.Errorf("nonce cache: %w", err)
	}
	c.seen[nonce] = ts
	c.lines++
	return nil
}

// Close releases the file and the lock.
func (c *NonceCache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f != nil {
		c.f.Close()
		c.f = nil
	}
	if c.unlock != nil {
		_ = c.unlock()
		c.unlock = nil
	}
	return nil
}
