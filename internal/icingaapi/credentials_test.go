package icingaapi

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/selfheal/selfheal/internal/fsutil"
)

func TestLoadCredentials(t *testing.T) {
	self := fsutil.Trust{UID: os.Geteuid()}
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for name, body := range map[string]string{
		"plain":    "selfheal:pa:ss word",
		"newline":  "selfheal:pa:ss word\n",
		"crlf":     "selfheal:pa:ss word\r\n",
		"trailing": "selfheal:pa:ss word\n\n",
	} {
		u, p, err := LoadCredentials(self, write(name, body, 0o600))
		if err != nil || u != "selfheal" || p != "pa:ss word" {
			t.Errorf("%s: %q %q %v", name, u, p, err)
		}
	}
	const secret = "hunter2-secret"
	for name, body := range map[string]string{
		"no colon":    "selfheal" + secret,
		"no user":     ":" + secret,
		"no password": "selfheal:",
		"two lines":   "selfheal:" + secret + "\nother:" + secret,
		"NUL":         "selfheal:" + secret + "\x00",
		"CR inside":   "selfheal:" + secret + "\rx",
		"empty":       "",
		"too long":    "selfheal:" + strings.Repeat("x", maxCredentials),
	} {
		_, _, err := LoadCredentials(self, write(name, body, 0o600))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %q shows the password or is not one line", name, err)
		}
	}
	// Readable by others: refused by the trust rule, with its fix.
	p := write("open", "selfheal:"+secret, 0o644)
	_, _, err := LoadCredentials(self, p)
	var ce *CredentialsError
	var ps fsutil.Problems
	if !errors.As(err, &ce) || !errors.As(err, &ps) || !strings.Contains(err.Error(), "chmod 600") || strings.Contains(err.Error(), "\n") {
		t.Errorf("mode 0644: %v, want a one-line trust refusal with its fix", err)
	}
	if _, _, err := LoadCredentials(self, filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file: accepted")
	}
	if _, _, err := LoadCredentials(self, dir); err == nil {
		t.Error("a directory: accepted")
	}
}
