package icingaapi

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/selfheal/selfheal/internal/fsutil"
)

// maxCredentials bounds the credentials file: one short line.
const maxCredentials = 4096

// CredentialsError is a credentials file the trust rule refuses; it
// unwraps to the problems, each with its fix.
type CredentialsError struct {
	Path     string
	Problems fsutil.Problems
}

// Error reads "credentials file PATH refused: PROBLEM; PROBLEM", one line.
func (e *CredentialsError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.Error()
	}
	return "icinga api credentials file " + fsutil.Quote(e.Path) + " refused: " + strings.Join(parts, "; ")
}

func (e *CredentialsError) Unwrap() error { return e.Problems }

// LoadCredentials reads "user:password" (one line, split at the first
// colon as Icinga does) from a file the trust rule passes as a secret of
// t's user, like the handler's key. No error holds the password.
func LoadCredentials(t fsutil.Trust, path string) (user, password string, err error) {
	if ps := t.Check(path, fsutil.SecretFile); len(ps) > 0 {
		return "", "", &CredentialsError{Path: path, Problems: ps}
	}
	b, _, err := fsutil.ReadRegular(path, maxCredentials)
	if err != nil {
		if errors.Is(err, fsutil.ErrTooLarge) {
			return "", "", fmt.Errorf("icinga api credentials file %s: more than one short line", fsutil.Quote(path))
		}
		return "", "", fmt.Errorf("icinga api credentials file: %w", err)
	}
	bad := func(why string) (string, string, error) {
		return "", "", fmt.Errorf("icinga api credentials file %s: %s; want one line user:password", fsutil.Quote(path), why)
	}
	line := b
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		line = b[:i]
		if len(bytes.TrimSpace(b[i+1:])) > 0 {
			return bad("more than one line")
		}
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	u, p, ok := bytes.Cut(line, []byte(":"))
	switch {
	case !ok:
		return bad("no ':'")
	case len(u) == 0:
		return bad("no user")
	case len(p) == 0:
		// Icinga refuses an empty password.
		return bad("no password")
	case bytes.ContainsAny(line, "\x00\r"):
		return bad("a control character")
	}
	return string(u), string(p), nil
}
