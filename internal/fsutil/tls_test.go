package fsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writePair writes a self-signed certificate and its key (mode 0600) and
// returns their paths.
func writePair(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestLoadTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir)
	cert, mode, err := LoadKeyPair(certFile, keyFile)
	if err != nil || len(cert.Certificate) != 1 {
		t.Fatalf("LoadKeyPair: %v, %d certificates", err, len(cert.Certificate))
	}
	if mode.Perm() != 0o600 {
		t.Errorf("key mode %04o, want 0600 (the key file's own)", mode.Perm())
	}
	pool, err := LoadCertPool(certFile)
	if err != nil || pool == nil {
		t.Fatalf("LoadCertPool: %v", err)
	}

	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge.pem")
	if err := os.WriteFile(huge, make([]byte, MaxPEM+1), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name string
		load func() error
		want string
	}{
		{"CA not PEM", func() error { _, err := LoadCertPool(notPEM); return err }, "CA file " + notPEM + " holds no PEM certificate"},
		{"CA missing", func() error { _, err := LoadCertPool(missing); return err }, "CA file: open " + missing},
		{"CA over the cap", func() error { _, err := LoadCertPool(huge); return err }, "CA file: " + huge + " is larger than"},
		{"CA is a directory", func() error { _, err := LoadCertPool(dir); return err }, "CA file: " + dir + " is not a regular file"},
		{"cert missing", func() error { _, _, err := LoadKeyPair(missing, keyFile); return err }, "certificate: open " + missing},
		{"key missing", func() error { _, _, err := LoadKeyPair(certFile, missing); return err }, "key: open " + missing},
		{"key is not a key", func() error { _, _, err := LoadKeyPair(certFile, certFile); return err }, "key pair: tls: "},
		{"cert over the cap", func() error { _, _, err := LoadKeyPair(huge, keyFile); return err }, "certificate: " + huge + " is larger than"},
	} {
		if err := tc.load(); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to start with %q", tc.name, err, tc.want)
		}
	}
}

// TestLoadTLSFIFO: a FIFO named as certificate, key or CA (with no writer,
// so a plain open would block for ever) fails at once with a clear error.
func TestLoadTLSFIFO(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		load func() error
		want string
	}{
		{"CA", func() error { _, err := LoadCertPool(fifo); return err }, "CA file: " + fifo + " is not a regular file"},
		{"cert", func() error { _, _, err := LoadKeyPair(fifo, keyFile); return err }, "certificate: " + fifo + " is not a regular file"},
		{"key", func() error { _, _, err := LoadKeyPair(certFile, fifo); return err }, "key: " + fifo + " is not a regular file"},
	} {
		done := make(chan error, 1)
		go func() { done <- tc.load() }()
		select {
		case err := <-done:
			if err == nil || err.Error() != tc.want {
				t.Errorf("FIFO as %s: error %v, want %q", tc.name, err, tc.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("FIFO as %s: still blocked after 5s", tc.name)
		}
	}
}
