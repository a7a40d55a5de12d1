package listener

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/protocol"
)

type pki struct{ dir string }

// issue writes NAME.crt/NAME.key signed by ca (nil = self-signed CA).
func (p pki) issue(t *testing.T, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca, caKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(p.dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(filepath.Join(p.dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return cert, key
}

func (p pki) path(n string) string { return filepath.Join(p.dir, n) }

// TestTLS runs the TLS rows of the hostile table against a listener with
// mTLS, and checks that a proper mTLS client gets through.
func TestTLS(t *testing.T) {
	p := pki{dir: t.TempDir()}
	ca, caKey := p.issue(t, "ca", nil, nil, true)
	p.issue(t, "server", ca, caKey, false)
	p.issue(t, "client", ca, caKey, false)
	other, otherKey := p.issue(t, "otherca", nil, nil, true)
	p.issue(t, "rogue", other, otherKey, false)
	h := newHarness(t, opts{tls: &rig.TLS{Cert: p.path("server.crt"), Key: p.path("server.key"), ClientCA: p.path("ca.crt")}})

	good, err := protocol.ClientTLS(p.path("ca.crt"), p.path("client.crt"), p.path("client.key"), "localhost")
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, h.addr, h.fleet, h.agent, good)
	if rep, err := c.Do(t.Context(), protocol.VerbRestart, "demo", "-"); err != nil || rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("mTLS client: %+v %v", rep, err)
	}
	if h.marks("demo") != 1 {
		t.Fatal("mTLS restart did not run")
	}

	// An empty serverName means "the dialled host" (127.0.0.1 here, an IP
	// SAN of the agent's certificate), as handle_worker's default does.
	byAddr, err := protocol.ClientTLS(p.path("ca.crt"), p.path("client.crt"), p.path("client.key"), "")
	if err != nil {
		t.Fatal(err)
	}
	c = newClient(t, h.addr, h.fleet, h.agent, byAddr)
	if rep, err := c.Do(t.Context(), protocol.VerbRestart, "demo", "-"); err != nil || rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("mTLS client without a server name: %+v %v", rep, err)
	}
	if h.marks("demo") != 2 {
		t.Fatal("mTLS restart without a server name did not run")
	}

	noCert, _ := protocol.ClientTLS(p.path("ca.crt"), "", "", "localhost")
	rogue, _ := protocol.ClientTLS(p.path("ca.crt"), p.path("rogue.crt"), p.path("rogue.key"), "localhost")
	old := good.Clone()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS12
	for _, tt := range []struct {
		name   string
		cfg    *tls.Config
		reason string
	}{
		{"no client certificate", noCert, "certificate"},
		{"client certificate from the wrong CA", rogue, "certificate"},
		{"TLS 1.2 and older", old, "version"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := strings.Count(h.audit.String(), "\n")
			c := newClient(t, h.addr, h.fleet, h.agent, tt.cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			rep, err := c.Do(ctx, protocol.VerbRestart, "demo", "-")
			if err == nil {
				t.Fatalf("accepted: %+v", rep)
			}
			waitAudit(t, h, before, tt.reason)
		})
	}
	t.Run("plaintext to the TLS port", func(t *testing.T) {
		before := strings.Count(h.audit.String(), "\n")
		got := h.raw(h.valid(protocol.VerbRestart, "demo", time.Now()))
		if strings.HasPrefix(got, "SH2 worker1 ok") {
			t.Fatalf("plaintext accepted: %q", got)
		}
		waitAudit(t, h, before, "TLS handshake")
	})
	t.Run("slow handshake is cut", func(t *testing.T) {
		conn, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		start := time.Now()
		_, err = conn.Read(make([]byte, 1))
		if err == nil || time.Since(start) > 20*time.Second {
			t.Fatalf("silent peer not dropped: %v after %s", err, time.Since(start))
		}
	})
	if h.marks("demo") != 2 {
		t.Fatalf("an action ran for a refused TLS peer (%d marks)", h.marks("demo"))
	}
}
