package listener

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestConfigTLSFiles: the agent's config refuses a FIFO named as its
// certificate, key or client CA at once (tls.LoadX509KeyPair would block
// in open until a writer came), and a key readable by others.
func TestConfigTLSFiles(t *testing.T) {
	dir := t.TempDir()
	p := pki{dir: dir}
	ca, caKey := p.issue(t, "ca", nil, nil, true)
	p.issue(t, "server", ca, caKey, false)
	key := filepath.Join(dir, "k.key")
	writeKeys(t, "worker1", key, "", "")
	bin := filepath.Join(dir, "a.sh")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	openKey := filepath.Join(dir, "open.key")
	b, err := os.ReadFile(p.path("server.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(openKey, b, 0o644); err != nil {
		t.Fatal(err)
	}
	config := func(cert, tlsKey, clientCA string) []byte {
		return []byte("agent: worker1\nkeys: [" + key + "]\nallow: [127.0.0.1]\nstate_dir: " + dir + "/s\n" +
			"tls: {cert: " + cert + ", key: " + tlsKey + ", client_ca: " + clientCA + "}\n" +
			"services:\n  demo:\n    actions:\n      restart: {argv: [" + bin + "]}\n")
	}
	cert, skey, cacert := p.path("server.crt"), p.path("server.key"), p.path("ca.crt")
	if _, err := Parse(config(cert, skey, cacert)); err != nil {
		t.Fatalf("good TLS files refused: %v", err)
	}
	for _, tc := range []struct {
		name          string
		cert, key, ca string
		want          string
	}{
		// The trust rule refuses them first, naming the file and why.
		{"cert is a FIFO", fifo, skey, cacert, "tls cert " + fifo + ": is not a regular file (a FIFO)"},
		{"key is a FIFO", cert, fifo, cacert, "tls key " + fifo + ": is not a regular file (a FIFO)"},
		{"client CA is a FIFO", cert, skey, fifo, "tls client_ca " + fifo + ": is not a regular file (a FIFO)"},
		{"key readable by others", cert, openKey, cacert, "tls key " + openKey + ": is open to group or others (mode 0644, want 0600 or 0400): run chmod 600 " + openKey},
	} {
		done := make(chan error, 1)
		go func() { _, err := Parse(config(tc.cert, tc.key, tc.ca)); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: Parse still blocked after 5s", tc.name)
		}
	}
}
