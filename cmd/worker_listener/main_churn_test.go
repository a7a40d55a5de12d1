package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/testutil"
)

// writePKI writes ca, server and client certificates (NAME.crt, NAME.key)
// into dir, the server's for 127.0.0.1.
func writePKI(t *testing.T, dir string) {
	t.Helper()
	var ca *x509.Certificate
	var caKey *ecdsa.PrivateKey
	for i, name := range []string{"ca", "server", "client"} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 1)), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		parent, signer := tmpl, key
		if ca == nil {
			tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
			tmpl.KeyUsage |= x509.KeyUsageCertSign
		} else {
			parent, signer = ca, caKey
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
		if err != nil {
			t.Fatal(err)
		}
		if ca == nil {
			ca, _ = x509.ParseCertificate(der)
			caKey = key
		}
		kb, _ := x509.MarshalECPrivateKey(key)
		if err := os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestChurnHandleWorker: issue 18's attack against the real agent under its
// default (shipped) limits, and the real handler. While goroutines open
// idle connections from 127.0.0.1 as fast as they can (keeping 16 each,
// closing the oldest), 10 `handle_worker send restart` runs, plain and
// mTLS, all say ok, each on its first attempt, and the action ran 10
// times.
func TestChurnHandleWorker(t *testing.T) {
	for _, mtls := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "mtls"}[mtls]
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			var tlsArgs []string
			if mtls {
				writePKI(t, e.dir)
				c := e.config(e.keyPath)
				p := func(n string) string { return filepath.Join(e.dir, n) }
				c.TLS = &rig.TLS{Cert: p("server.crt"), Key: p("server.key"), ClientCA: p("ca.crt")}
				if err := c.Write(e.cfg); err != nil {
					t.Fatal(err)
				}
				tlsArgs = []string{"--tls-ca", p("ca.crt"), "--tls-cert", p("client.crt"), "--tls-key", p("client.key")}
			}
			d := startServe(t, e, false)
			host, port, _ := net.SplitHostPort(d.Addr)

			var opened atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			// No bind to 127.0.0.1 (the source a loopback connect gets
			// anyway): an unbound connect may reuse a loopback port in
			// TIME_WAIT, so the churn is not throttled by its own ports.
			dialer := &net.Dialer{Timeout: 5 * time.Second}
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var ring []net.Conn
					defer func() {
						for _, c := range ring {
							c.Close()
						}
					}()
					for {
						select {
						case <-stop:
							return
						default:
						}
						if c, err := dialer.Dial("tcp", d.Addr); err == nil {
							opened.Add(1)
							if ring = append(ring, c); len(ring) > 16 {
								ring[0].Close()
								ring = ring[1:]
							}
						}
					}
				}()
			}
			defer func() { close(stop); wg.Wait() }()
			for deadline := time.Now().Add(10 * time.Second); opened.Load() < 200; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the churn never got going: %d opened", opened.Load())
				}
			}
			hstate := filepath.Join(e.dir, "handler-state")
			if err := os.Mkdir(hstate, 0o700); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			for i := range 10 {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				args := append([]string{"send", "restart", "--host", host, "--port", port, "--key-file", e.fleetPath,
					"--agent", "worker1", "--target", "demo", "--deadline", "18s", "--state-dir", hstate}, tlsArgs...)
				out, err := exec.CommandContext(ctx, testutil.Binary(t, "handle_worker"), args...).CombinedOutput()
				cancel()
				if err != nil || !strings.Contains(string(out), "restart demo on ") || !strings.Contains(string(out), " ok in ") || !strings.Contains(string(out), `"attempts":1,`) {
					t.Errorf("restart %d under the churn: %v\n%s", i, err, out)
				}
			}
			t.Logf("10 handle_worker restarts in %s against %d idle connections", time.Since(start).Round(time.Millisecond), opened.Load())
			if n := e.marks("mark"); n != 10 {
				t.Errorf("the action ran %d times, want 10", n)
			}
		})
	}
}
