package protocol

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/selfheal/selfheal/internal/fsutil"
)

// The key file tags name the kind of key and the format's version.
const (
	fleetKeyTag = "selfheal-fleet-v1"
	hostKeyTag  = "selfheal-host-v1"
	// hostKeyLabel separates host-key derivation from every other use of
	// the fleet secret.
	hostKeyLabel = "selfheal-host-key-v1"
)

// SecretBytes is the length of every secret.
const SecretBytes = 32

// KeyKind says where a key belongs.
type KeyKind int

// The two kinds of key.
const (
	// FleetKey is the secret of the monitoring nodes. It never leaves them:
	// every host key is derived from it.
	FleetKey KeyKind = iota + 1
	// HostKey is one agent's key: HMAC-SHA256(fleet secret, label, agent).
	// It signs and verifies requests for that agent only.
	HostKey
)

func (k KeyKind) String() string {
	switch k {
	case FleetKey:
		return "fleet key"
	case HostKey:
		return "host key"
	}
	return "unknown key kind"
}

// Key is a fleet key or a host key. ID is the fleet key's id, which names
// it on the wire (a host key carries the id of the fleet key it came from),
// so that two fleet keys can be live during a rotation.
type Key struct {
	Kind   KeyKind
	ID     string
	Agent  string // host keys: the agent the key is for
	Secret []byte
}

// GenerateFleetKey makes a new fleet key from crypto/rand.
func GenerateFleetKey(id string) (Key, error) {
	if !nameOK(id) {
		return Key{}, fmt.Errorf("key id %q: use 1-64 characters of a-z 0-9 . _ - starting with a letter or digit", id)
	}
	s := make([]byte, SecretBytes)
	if _, err := io.ReadFull(rand.Reader, s); err != nil {
		return Key{}, fmt.Errorf("reading random bytes: %w", err)
	}
	return Key{Kind: FleetKey, ID: id, Secret: s}, nil
}

// ForAgent returns the host key that signs for agent. A fleet key derives
// it; a host key returns itself when it is agent's, and an error otherwise:
// an agent's key can never speak for another agent.
func (k Key) ForAgent(agent string) (Key, error) {
	if !nameOK(agent) {
		return Key{}, fmt.Errorf("agent name %q: use 1-64 characters of a-z 0-9 . _ - starting with a letter or digit", agent)
	}
	switch k.Kind {
	case FleetKey:
		m := hmac.New(sha256.New, k.Secret)
		m.Write([]byte(hostKeyLabel + "\n" + agent + "\n"))
		return Key{Kind: HostKey, ID: k.ID, Agent: agent, Secret: m.Sum(nil)}, nil
	case HostKey:
		if k.Agent != agent {
			return Key{}, fmt.Errorf("this host key is for agent %q, not %q", k.Agent, agent)
		}
		return k, nil
	}
	return Key{}, errors.New("not a fleet or host key")
}

// MarshalText renders the key file's content, one line:
//
//	selfheal-fleet-v1 <id> <64 lower-case hex digits>
//	selfheal-host-v1 <fleet-id> <agent> <64 lower-case hex digits>
func (k Key) MarshalText() ([]byte, error) {
	if !nameOK(k.ID) {
		return nil, fmt.Errorf("invalid key id %q", k.ID)
	}
	if len(k.Secret) != SecretBytes {
		return nil, fmt.Errorf("key %s: secret must be %d bytes", k.ID, SecretBytes)
	}
	secret := hex.EncodeToString(k.Secret)
	switch k.Kind {
	case FleetKey:
		return []byte(fleetKeyTag + " " + k.ID + " " + secret + "\n"), nil
	case HostKey:
		if !nameOK(k.Agent) {
			return nil, fmt.Errorf("invalid agent name %q", k.Agent)
		}
		return []byte(hostKeyTag + " " + k.ID + " " + k.Agent + " " + secret + "\n"), nil
	}
	return nil, errors.New("not a fleet or host key")
}

// UnmarshalText parses a key file's content. Errors never quote the secret.
func (k *Key) UnmarshalText(b []byte) error {
	b = bytes.TrimSuffix(b, []byte{'\n'})
	f := bytes.Split(b, []byte{' '})
	var nk Key
	var hexSecret []byte
	switch {
	case len(f) == 3 && string(f[0]) == fleetKeyTag:
		nk = Key{Kind: FleetKey, ID: string(f[1])}
		hexSecret = f[2]
	case len(f) == 4 && string(f[0]) == hostKeyTag:
		nk = Key{Kind: HostKey, ID: string(f[1]), Agent: string(f[2])}
		hexSecret = f[3]
		if !nameOK(nk.Agent) {
			return fmt.Errorf("invalid agent name %q", nk.Agent)
		}
	default:
		return errors.New("not a selfheal key file (want one line: selfheal-fleet-v1 ID HEX, or selfheal-host-v1 ID AGENT HEX)")
	}
	if !nameOK(nk.ID) {
		return fmt.Errorf("invalid key id %q", nk.ID)
	}
	if !lowerHex(string(hexSecret), 2*SecretBytes) {
		return fmt.Errorf("key %s: secret must be %d lower-case hex digits", nk.ID, 2*SecretBytes)
	}
	nk.Secret, _ = hex.DecodeString(string(hexSecret))
	*k = nk
	return nil
}

// LoadKeyFile reads a key file of either kind. It refuses a file that is
// not a regular file or whose mode gives the group or others any access: a
// readable key lets anyone on the host restart workers.
func LoadKeyFile(path string) (Key, error) {
	// Non-blocking and size-capped: a FIFO or device given by mistake must
	// fail at once, not hang the handler until Nagios kills it.
	b, mode, err := fsutil.ReadRegular(path, 1024)
	if err != nil {
		return Key{}, fmt.Errorf("key file: %w", err)
	}
	if perm := mode.Perm(); perm&0o077 != 0 {
		return Key{}, fmt.Errorf("key file %s has mode %04o: it must not be accessible by group or others (want 0600 or 0400; run chmod 600 %s)", path, perm, path)
	}
	var k Key
	if err := k.UnmarshalText(b); err != nil {
		return Key{}, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

// WriteKeyFile writes k to path with mode 0600, refusing to overwrite.
func WriteKeyFile(path string, k Key) error {
	b, err := k.MarshalText()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) // O_EXCL: never through a symlink
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// NewNonce returns 16 random bytes as 32 lower-case hex digits.
func NewNonce() (string, error) {
	b := make([]byte, NonceBytes)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
