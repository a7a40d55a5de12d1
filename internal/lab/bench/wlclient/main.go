// Command wlclient is the benchmark's client for worker_listener: one
// authenticated SH2 request per process (for hyperfine's per-process round
// trip), or a sustained-throughput run with several concurrent clients. It
// signs as handle_worker does: with the fleet key (or the agent's own host
// key), for the agent named by -agent.
// It also writes a throwaway PKI for the TLS runs and finds free ports.
// It is a benchmark helper, not an installed tool: on-call engineers use
// `handle_worker send`.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/selfheal/selfheal/internal/protocol"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5690", "listener host:port")
	keyFile := flag.String("key", "", "key file: the fleet key, or the agent's host key")
	agent := flag.String("agent", "worker1", "the agent's name (agent: in its config)")
	fault := flag.String("fault", "-", `fault id of each request: "-" (none), "unique" (a new one per request: the agent records each), or an id`)
	verb := flag.String("verb", "restart", "verb")
	service := flag.String("service", "demo", "service (with -services N: the prefix; worker i uses <prefix><i mod N>)")
	services := flag.Int("services", 0, "spread workers over this many services (no coalescing between them)")
	n := flag.Int("n", 1, "requests per worker, sent one after another")
	c := flag.Int("c", 1, "concurrent workers")
	ca := flag.String("tls-ca", "", "CA file: use TLS 1.3")
	cert := flag.String("tls-cert", "", "client certificate (mTLS)")
	key := flag.String("tls-key", "", "client key (mTLS)")
	genPKI := flag.String("gen-pki", "", "write ca, server and client certificates into this directory and exit")
	freePorts := flag.Int("free-ports", 0, "print this many free loopback TCP ports and exit")
	flag.Parse()

	if *genPKI != "" {
		if err := writePKI(*genPKI); err != nil {
			fail(err)
		}
		return
	}
	if *freePorts > 0 {
		var lns []net.Listener
		for range *freePorts {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				fail(err)
			}
			lns = append(lns, ln)
			fmt.Println(ln.Addr().(*net.TCPAddr).Port)
		}
		for _, ln := range lns {
			ln.Close()
		}
		return
	}

	k, err := protocol.LoadKeyFile(*keyFile)
	if err != nil {
		fail(err)
	}
	cfg := protocol.ClientConfig{Addr: *addr, Key: k, Agent: *agent}
	if *ca != "" {
		if cfg.TLS, err = protocol.ClientTLS(*ca, *cert, *key, "localhost"); err != nil {
			fail(err)
		}
	}
	cl, err := protocol.NewClient(cfg)
	if err != nil {
		fail(err)
	}
	// Unique faults: this process's pid and start, the worker and a
	// counter, so no two requests (or runs) share one.
	run := fmt.Sprintf("b%d-%d", os.Getpid(), time.Now().UnixNano()%1e9)
	var ok, bad atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for w := range *c {
		svc := *service
		if *services > 0 {
			svc = fmt.Sprintf("%s%d", *service, w%*services)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range *n {
				f := *fault
				if f == "unique" {
					f = fmt.Sprintf("%s-%d-%d", run, w, i)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				rep, err := cl.Do(ctx, protocol.Verb(*verb), svc, f)
				cancel()
				if err == nil && rep.Outcome == protocol.OutcomeOK {
					ok.Add(1)
					continue
				}
				bad.Add(1)
				if err == nil {
					err = fmt.Errorf("outcome %s exit %d: %s", rep.Outcome, rep.ExitCode, rep.Output)
				}
				firstErr.CompareAndSwap(nil, err.Error())
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if *n**c > 1 {
		fmt.Printf("requests %d ok %d failed %d elapsed %.3fs rate %.0f/s\n", *n**c, ok.Load(), bad.Load(), el.Seconds(), float64(ok.Load())/el.Seconds())
	}
	if bad.Load() > 0 {
		fail(fmt.Errorf("%d requests failed; first: %v", bad.Load(), firstErr.Load()))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "wlclient:", err)
	os.Exit(1)
}

func writePKI(dir string) error {
	ca, caKey, err := issue(dir, "ca", nil, nil)
	if err != nil {
		return err
	}
	if _, _, err := issue(dir, "server", ca, caKey); err != nil {
		return err
	}
	_, _, err = issue(dir, "client", ca, caKey)
	return err
}

func issue(dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "selfheal bench " + name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	parent, signer := tmpl, key
	if ca == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	} else {
		parent, signer = ca, caKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	kb, _ := x509.MarshalECPrivateKey(key)
	if err := os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}
