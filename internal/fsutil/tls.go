package fsutil

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// TLS material is loaded here, once for every binary: check_worker's
// client, handle_worker's client and worker_listener's server. Each file
// goes through ReadRegular, so a FIFO or device named as a certificate,
// key or CA fails at once instead of blocking (tls.LoadX509KeyPair would
// open and read it with no bound).

// MaxPEM bounds a CA bundle, certificate or key file (the system bundle is
// about 200 KiB); more is a mistake, and /dev/zero must not exhaust memory.
const MaxPEM = 4 << 20

// LoadCertPool reads a PEM CA bundle.
func LoadCertPool(file string) (*x509.CertPool, error) {
	pem, _, err := ReadRegular(file, MaxPEM)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}

// LoadKeyPair reads a PEM certificate and its private key. keyMode is the
// mode of the key file it read, so a caller can check the permissions of
// that very file (no stat/open race). Errors start with "certificate: ",
// "key: " or "key pair: ", for callers to prefix with the role ("client ...").
func LoadKeyPair(certFile, keyFile string) (cert tls.Certificate, keyMode os.FileMode, err error) {
	certPEM, _, err := ReadRegular(certFile, MaxPEM)
	if err != nil {
		return tls.Certificate{}, 0, fmt.Errorf("certificate: %w", err)
	}
	keyPEM, keyMode, err := ReadRegular(keyFile, MaxPEM)
	if err != nil {
		return tls.Certificate{}, 0, fmt.Errorf("key: %w", err)
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// Either file may be the bad one (or they do not match).
		return tls.Certificate{}, 0, fmt.Errorf("key pair: %w", err)
	}
	return cert, keyMode, nil
}
