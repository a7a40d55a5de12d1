package check

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"

	"github.com/selfheal/selfheal/internal/fsutil"
)

// TLSOptions are the --ca-file, --cert-file, --key-file and --insecure flags.
type TLSOptions struct {
	CAFile, CertFile, KeyFile string
	Insecure                  bool // skip verification: explicit opt-in only
}

// ErrConfig marks check_worker's own configuration failures (unreadable
// CA file, bad client key): always UNKNOWN.
var ErrConfig = errors.New("configuration error")

// NewTLSConfig builds the client TLS configuration from the flags.
func NewTLSConfig(o TLSOptions) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.Insecure} //nolint:gosec // only with --insecure
	if o.CAFile != "" {
		pem, err := readPEM(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: CA file: %v", ErrConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: CA file %s holds no PEM certificate", ErrConfig, o.CAFile)
		}
		tc.RootCAs = pool
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, fmt.Errorf("%w: --cert-file and --key-file go together", ErrConfig)
	}
	if o.CertFile != "" {
		certPEM, err := readPEM(o.CertFile)
		if err != nil {
			return nil, fmt.Errorf("%w: client certificate: %v", ErrConfig, err)
		}
		keyPEM, err := readPEM(o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: client key: %v", ErrConfig, err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("%w: client certificate: %v", ErrConfig, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// maxPEM bounds a CA bundle, certificate or key file (the system bundle
// is about 200 KiB).
const maxPEM = 4 << 20

// readPEM reads a TLS file without ever blocking or reading without end:
// opened non-blocking (a FIFO would block open and read forever) and
// only a regular file of at most maxPEM bytes (/dev/zero would exhaust
// memory, and an out-of-memory crash exits 2, CRITICAL).
func readPEM(path string) ([]byte, error) {
	b, _, err := fsutil.ReadRegular(path, maxPEM)
	return b, err
}

// Dialer opens the connection to the worker; tests and main inject one.
type Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

func defaultDial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{KeepAlive: -1}
	return d.DialContext(ctx, network, addr)
}
