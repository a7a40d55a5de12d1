package check

import (
	"context"
	"crypto/tls"
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

// NewTLSConfig builds the client TLS configuration from the flags. The
// files are read with fsutil's loaders: a FIFO would block open and read
// forever, and /dev/zero would exhaust memory (an out-of-memory crash
// exits 2, CRITICAL).
func NewTLSConfig(o TLSOptions) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.Insecure} //nolint:gosec // only with --insecure
	if o.CAFile != "" {
		pool, err := fsutil.LoadCertPool(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		tc.RootCAs = pool
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, fmt.Errorf("%w: --cert-file and --key-file go together", ErrConfig)
	}
	if o.CertFile != "" {
		cert, _, err := fsutil.LoadKeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: client %v", ErrConfig, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Dialer opens the connection to the worker; tests and main inject one.
type Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

func defaultDial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{KeepAlive: -1}
	return d.DialContext(ctx, network, addr)
}
