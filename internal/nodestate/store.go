package nodestate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/protocol"
)

// stateVersion tags the file format; a file with another version is
// reported as unreadable rather than guessed at (and replaced on the next
// write: nothing depends on it).
const stateVersion = 3

// maxStateBytes is far above what a record takes (about 1 KiB).
const maxStateBytes = 1 << 20

// DefaultStateDir is handle_worker's --state-dir when none is given, and
// so check_selfheal's, which reads what the handler wrote there.
const DefaultStateDir = "/var/lib/selfheal/handler"

// Record is the agent's last answer for one Nagios host and service, as
// this monitoring node saw it, for --dry-run, `handle_worker status` and
// the on-call engineer reading the state directory. The agent keeps the
// fault records and the budget, and its answer is the truth. Two fields
// steer this node only: Held lists a fault whose restart was held back
// (reevaluate asks again once the engine shows the reason gone and the
// same fault still CRITICAL: the record alone never causes a restart),
// and Comment keeps the last comment from repeating.
type Record struct {
	Version int       `json:"version"`
	Host    string    `json:"host"`
	Service string    `json:"service"`
	At      time.Time `json:"at"`     // when the answer came (or the handler gave up)
	Source  string    `json:"source"` // "event" or "manual"
	Verb    string    `json:"verb"`
	Agent   string    `json:"agent"`
	Fault   string    `json:"fault"`
	// Result is the handler's verdict: healed, already, spent, failed,
	// timeout, denied, skew, busy, rate-limited, no-reply, unreachable.
	Result  string `json:"result"`
	Outcome string `json:"outcome,omitempty"` // the agent's, when it answered
	Origin  string `json:"origin,omitempty"`
	// Budget is the service's restart budget as the agent reported it.
	Budget   *RecordBudget `json:"budget,omitempty"`
	Attempts int           `json:"attempts"`
	Summary  string        `json:"summary"` // the human line
	// Held: this fault's restart is held back (nil: nothing held).
	Held *Held `json:"held,omitempty"`
	// Comment is the key of the last comment written ("kind|fault"): the
	// same one is not written again (a volatile service runs the handler
	// at every check).
	Comment string `json:"comment,omitempty"`
	// Comments are this node's comments on the service that are live (or
	// were when written), oldest first: what a later run removes, without
	// asking the engine which there are.
	Comments []Written `json:"comments,omitempty"`
	// Pending are write-backs that failed; the next run for the service,
	// or reevaluate, writes them.
	Pending []Pending `json:"pending,omitempty"`
}

// Written is one comment this node wrote.
type Written struct {
	Key string `json:"key"` // "kind|fault"
	// Name is Icinga 2's name for it (add-comment's answer), what
	// remove-comment takes. Empty under Nagios: the command file answers
	// nothing, and the comment_id is found in status.dat when needed.
	Name       string    `json:"name,omitempty"`
	At         time.Time `json:"at"`
	Persistent bool      `json:"persistent,omitempty"`
}

// Pending is a write-back that failed: the command (without its
// timestamp), since when, and the last error.
type Pending struct {
	Cmd   string    `json:"cmd"`
	Key   string    `json:"key,omitempty"` // a comment's "kind|fault"
	Since time.Time `json:"since"`
	Tries int       `json:"tries"`
	Error string    `json:"error,omitempty"`
}

// Held is a restart held back, with what reevaluate needs to ask for it.
type Held struct {
	Rule  string    `json:"rule"` // a Rule, an agent outcome (backoff, spent; agent-breaker), unreachable or no-reply
	Text  string    `json:"text"`
	Since time.Time `json:"since"`
	// RetryAt: not asked again before (the agent said when).
	RetryAt time.Time `json:"retry_at,omitzero"`
	Fault   string    `json:"fault"`
	// FaultSince is when the fault began (zero: not known): asked again,
	// the agent tells it from a duplicate by it.
	FaultSince time.Time `json:"fault_since,omitzero"`
	Ask        Ask       `json:"ask"`
}

// Ask is how the handler reached the agent for a service: reevaluate asks
// the same way, with its own key and TLS settings.
type Ask struct {
	Address   string `json:"address"`
	Port      int    `json:"port"`
	Agent     string `json:"agent"`
	Target    string `json:"target"`
	Action    string `json:"action"`
	RecheckMS int64  `json:"recheck_ms"`
}

// RecordBudget is protocol.Budget in whole seconds.
type RecordBudget struct {
	Used        int   `json:"used"`
	Max         int   `json:"max"`
	WindowS     int64 `json:"window_s"`
	RetryAfterS int64 `json:"retry_after_s"`
}

// ErrStateCorrupt marks a record file that exists but cannot be read as
// one. It is only reported: the next write replaces it.
var ErrStateCorrupt = errors.New("state file corrupt")

// Store keeps Records in Dir, one per host and service. Writers take an
// flock on a sibling .lock file, so that removing a killed writer's temp
// file never races a live one; readers need no lock, because every write
// is a rename. The kernel releases a lock when its process dies, so a
// SIGKILL never leaves a stale one.
//
// Dir must pass the trust rule as a private directory of Trust's user
// (mode 0700, its own): whoever else could write in it could plant the
// records the dry run shows. Every file in it is reached from the opened
// directory without following a symlink (fsutil.Dir): a symlink planted
// as a record, a lock or a temp file is refused or replaced, never
// written through.
type Store struct {
	Dir string
	// Poll is how often a busy lock is retried (default 20ms); the wait is
	// bounded by the context.
	Poll time.Duration
	// Trust is whose directory Dir must be; the zero value is root's.
	Trust fsutil.Trust
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

// Write stores rec as the last answer for its host and service,
// atomically, under the lock (bounded by ctx). Missing, untrusted or
// unusable directories, locks and files are errors; callers log them and
// go on.
func (s Store) Write(ctx context.Context, rec Record) error {
	d, err := s.Open()
	if err != nil {
		return err
	}
	defer d.Close()
	base := fileBase(rec.Host, rec.Service)
	unlock, err := s.lock(ctx, d, base+".lock")
	if err != nil {
		return err
	}
	defer unlock()
	rec.Version = stateVersion
	b, err := json.MarshalIndent(&rec, "", "  ")
	if err != nil {
		return err
	}
	// A SIGKILL at any point leaves either the old or the new file, never
	// a mix; a leftover temp file is removed by the next Write.
	if err := d.WriteLocked(base+".json", append(b, '\n'), 0o600, true); err != nil {
		return fmt.Errorf("writing state: %w", err)
	}
	return nil
}

// Update reads host/service's record under the writers' lock and writes
// it back when change returns true (cur is nil when there is none).
func (s Store) Update(ctx context.Context, host, service string, change func(cur *Record) bool) error {
	d, err := s.Open()
	if err != nil {
		return err
	}
	defer d.Close()
	base := fileBase(host, service)
	unlock, err := s.lock(ctx, d, base+".lock")
	if err != nil {
		return err
	}
	defer unlock()
	cur, err := readState(d, base+".json", host, service)
	if err != nil {
		return err
	}
	if !change(cur) {
		return nil
	}
	cur.Version = stateVersion
	b, err := json.MarshalIndent(cur, "", "  ")
	if err != nil {
		return err
	}
	return d.WriteLocked(base+".json", append(b, '\n'), 0o600, true)
}

// Read returns the last answer recorded for host and service, or nil
// when there is none. It writes nothing, not even a lock.
func (s Store) Read(host, service string) (*Record, error) {
	d, err := s.Open()
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return readState(d, fileBase(host, service)+".json", host, service)
}

// Open opens Dir once the trust rule passes it.
func (s Store) Open() (*fsutil.Dir, error) {
	if s.Dir == "" {
		return nil, errors.New("no state directory configured")
	}
	d, err := s.Trust.OpenDir(s.Dir, fsutil.PrivateDir)
	var ps fsutil.Problems
	switch {
	case errors.As(err, &ps):
		return nil, &TrustError{What: "state directory", Path: s.Dir, Problems: ps}
	case err != nil:
		return nil, fmt.Errorf("state directory: %w", err)
	}
	return d, nil
}

func (s Store) lock(ctx context.Context, d *fsutil.Dir, name string) (func() error, error) {
	unlock, err := d.Lock(ctx, name, 0o600, s.Poll)
	switch {
	case errors.Is(err, syscall.EWOULDBLOCK):
		return nil, fmt.Errorf("state lock %s: still held by another handler: %w", filepath.Join(s.Dir, name), ctx.Err())
	case err != nil:
		return nil, fmt.Errorf("state lock: %w", err)
	}
	return unlock, nil
}

func readState(d *fsutil.Dir, name, host, service string) (*Record, error) {
	path := filepath.Join(d.Path(), name)
	// Non-blocking open, regular files only, never through a symlink,
	// bounded read: a FIFO or a device in the state directory must not
	// hang the handler past its deadline, and a planted symlink must not
	// show another file as the record.
	b, _, err := d.ReadRegular(name, maxStateBytes)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case errors.Is(err, fsutil.ErrNotRegular), errors.Is(err, fsutil.ErrTooLarge), errors.Is(err, fsutil.ErrSymlink):
		return nil, fmt.Errorf("%w: %w", ErrStateCorrupt, err)
	case err != nil:
		return nil, fmt.Errorf("reading state: %w", err)
	}
	var st Record
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

// NewRecordBudget is b as a record keeps it (nil: the agent reported no budget).
func NewRecordBudget(b protocol.Budget) *RecordBudget {
	if b.Max <= 0 {
		return nil
	}
	return &RecordBudget{Used: b.Used, Max: b.Max, WindowS: int64(b.Window / time.Second), RetryAfterS: int64(b.RetryAfter / time.Second)}
}
