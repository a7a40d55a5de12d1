package protocol

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/selfheal/selfheal/internal/fsutil"
)

// keyFileTag opens every key file; it names the format's version.
const keyFileTag = "selfheal-key-v1"

// SecretBytes is the length of a key's secret.
const SecretBytes = 32

// Key is a shared HMAC key. ID names it on the wire so that several keys
// can be live during a rotation.
type Key struct {
	ID     string
	Secret []byte
}

// GenerateKey makes a new key with 32 random bytes from crypto/rand.
func GenerateKey(id string) (Key, error) {
	if !nameOK(id) {
		return Key{}, fmt.Errorf("key id %q: use 1-64 characters of a-z 0-9 . _ - starting with a letter or digit", id)
	}
	s := make([]byte, SecretBytes)
	if _, err := io.ReadFull(rand.Reader, s); err != nil {
		return Key{}, fmt.Errorf("reading random bytes: %w", err)
	}
	return Key{ID: id, Secret: s}, nil
}

// MarshalText renders the key file's content, one line:
//
//	selfheal-key-v1 <id> <64 lower-case hex digits>
func (k Key) MarshalText() ([]byte, error) {
	if !nameOK(k.ID) {
		return nil, fmt.Errorf("invalid key id %q", k.ID)
	}
	if len(k.Secret) != SecretBytes {
		return nil, fmt.Errorf("key %s: secret must be %d bytes", k.ID, SecretBytes)
	}
	return []byte(keyFileTag + " " + k.ID + " " + hex.EncodeToString(k.Secret) + "\n"), nil
}

// UnmarshalText parses a key file's content. Errors never quote the secret.
func (k *Key) UnmarshalText(b []byte) error {
	b = bytes.TrimSuffix(b, []byte{'\n'})
	f := bytes.Split(b, []byte{' '})
	if len(f) != 3 || string(f[0]) != keyFileTag {
		return errors.New("not a selfheal key file (want one line: selfheal-key-v1 ID HEX)")
	}
	id := string(f[1])
	if !nameOK(id) {
		return fmt.Errorf("invalid key id %q", id)
	}
	if !lowerHex(string(f[2]), 2*SecretBytes) {
		return fmt.Errorf("key %s: secret must be %d lower-case hex digits", id, 2*SecretBytes)
	}
	s, _ := hex.DecodeString(string(f[2]))
	*k = Key{ID: id, Secret: s}
	return nil
}

// LoadKeyFile reads a key file. It refuses a file that is not a regular
// file or whose mode gives the group or others any access: a readable key
// lets anyone on the host restart the workers.
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
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
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
