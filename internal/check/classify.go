package check

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/plugin"
	"github.com/selfheal/selfheal/internal/status"
)

// Classify is the one place that maps an error to a Nagios state and a
// short reason. The rule (docs/check_worker.md, "State table"): CRITICAL
// only when the failure is evidence that the worker itself is unhealthy
// and a restart may help; UNKNOWN when the check cannot judge (its own
// configuration, DNS, TLS trust, a 4xx, a worker that breaks the
// contract). An error we do not recognise is UNKNOWN: never restart a
// worker on a guess.
func Classify(err error, timeoutState nagios.State) (nagios.State, string) {
	var (
		hse   *HTTPStatusError
		dns   *net.DNSError
		cverr *tls.CertificateVerificationError
		uae   x509.UnknownAuthorityError
		hne   x509.HostnameError
		cie   x509.CertificateInvalidError
		rhe   tls.RecordHeaderError
		alert tls.AlertError
		nerr  net.Error
	)
	switch {
	case err == nil:
		return nagios.OK, ""
	case errors.Is(err, ErrConfig):
		return nagios.Unknown, err.Error()
	case errors.As(err, &hse):
		return httpState(hse), hse.Error()
	case errors.As(err, &dns):
		// Before the timeout rows: a resolver that times out is still not
		// the worker's fault.
		return nagios.Unknown, "cannot resolve " + plugin.Line(dns.Name, 80)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &nerr) && nerr.Timeout():
		return timeoutState, "no answer within the timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return nagios.Critical, "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return nagios.Critical, "connection reset by the worker"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return nagios.Critical, "connection closed before a complete answer"
	case errors.Is(err, syscall.ENOENT):
		// A worker removes its socket when it stops.
		return nagios.Critical, "unix socket missing: worker not running?"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return nagios.Critical, "host unreachable"
	case errors.Is(err, syscall.EACCES), errors.Is(err, os.ErrPermission):
		return nagios.Unknown, "permission denied (check_worker's own access)"
	case errors.As(err, &cverr), errors.As(err, &uae), errors.As(err, &hne), errors.As(err, &cie),
		errors.As(err, &rhe), errors.As(err, &alert),
		// A TLS alert from the peer (e.g. "certificate required" in TLS
		// 1.3) has no exported type; its text is the only handle.
		strings.Contains(err.Error(), "remote error: tls: "):
		return nagios.Unknown, "TLS failure: " + plugin.Line(err.Error(), 160)
	case errors.Is(err, ErrRedirect):
		return nagios.Unknown, plugin.Line(err.Error(), 160)
	case errors.Is(err, ErrContentType):
		return nagios.Unknown, plugin.Line(err.Error(), 160)
	case errors.Is(err, status.ErrTooLarge):
		return nagios.Unknown, "status answer over the size cap"
	case errors.Is(err, status.ErrMalformed), errors.Is(err, status.ErrInvalid), errors.Is(err, status.ErrUnknownStatus):
		return nagios.Unknown, "worker broke the status contract: " + plugin.Line(err.Error(), 160)
	case errors.Is(err, context.Canceled):
		return nagios.Unknown, "check cancelled"
	}
	return nagios.Unknown, "check failed: " + plugin.Line(err.Error(), 160)
}

// httpState: the status code is judged before any body. 5xx means the
// worker (or its server) is failing; a 4xx means our request is wrong
// (path, auth token), which a restart cannot fix. Plain mode keeps the
// seed servlet's rule: anything but 2xx is CRITICAL.
func httpState(e *HTTPStatusError) nagios.State {
	switch {
	case e.Code >= 500 && e.Code <= 599:
		return nagios.Critical
	case e.plain:
		return nagios.Critical
	}
	return nagios.Unknown
}
