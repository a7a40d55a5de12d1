package icingaapi

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"io/fs"

	"github.com/selfheal/selfheal/internal/fsutil"
)

// SessionFile is a tls.ClientSessionCache kept in one file of a private
// directory (the handler's state directory), so that the next handler run,
// a new process, resumes the TLS session of the last one: an abbreviated
// handshake, without Icinga's signature with its (RSA 4096) key and
// without verifying the certificate chain again. It halves what the
// write-back of a heal costs (docs/benchmarks.md).
//
// The file holds the session's secret, so it lives where the handler's
// records live: a directory the trust rule passes as private to the
// handler's user, who also holds the API password. A session resumed from
// it was verified against Icinga's CA when it was made; Go still checks
// the certificate's name and expiry on resumption. A file that cannot be
// read or parsed is a miss: a full handshake, as without it.
type SessionFile struct {
	Trust fsutil.Trust
	Dir   string
	// Name is the file's name in Dir; "" is "icinga-tls-session".
	Name string
}

type sessionDoc struct {
	Key    string `json:"key"`
	Ticket []byte `json:"ticket"`
	State  []byte `json:"state"`
}

func (s SessionFile) name() string {
	if s.Name == "" {
		return "icinga-tls-session"
	}
	return s.Name
}

func (s SessionFile) open() (*fsutil.Dir, error) {
	if s.Dir == "" {
		return nil, errors.New("no directory")
	}
	return s.Trust.OpenDir(s.Dir, fsutil.PrivateDir)
}

// Get returns the stored session for key, if any.
func (s SessionFile) Get(key string) (*tls.ClientSessionState, bool) {
	d, err := s.open()
	if err != nil {
		return nil, false
	}
	defer d.Close()
	b, _, err := d.ReadRegular(s.name(), 64<<10)
	if err != nil {
		return nil, false
	}
	var doc sessionDoc
	if json.Unmarshal(b, &doc) != nil || doc.Key != key || len(doc.Ticket) == 0 {
		return nil, false
	}
	st, err := tls.ParseSessionState(doc.State)
	if err != nil {
		return nil, false
	}
	cs, err := tls.NewResumptionState(doc.Ticket, st)
	if err != nil {
		return nil, false
	}
	return cs, true
}

// Put stores cs for key (nil removes the file: Go drops a session that
// failed to resume). Errors are ignored: the cache only saves time.
func (s SessionFile) Put(key string, cs *tls.ClientSessionState) {
	d, err := s.open()
	if err != nil {
		return
	}
	defer d.Close()
	if cs == nil {
		if err := d.Remove(s.name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return
		}
		return
	}
	ticket, st, err := cs.ResumptionState()
	if err != nil || st == nil || len(ticket) == 0 {
		return
	}
	sb, err := st.Bytes()
	if err != nil {
		return
	}
	b, err := json.Marshal(sessionDoc{Key: key, Ticket: ticket, State: sb})
	if err != nil {
		return
	}
	_ = d.ReplaceFile(s.name(), b, 0o600)
}
