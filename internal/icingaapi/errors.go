package icingaapi

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/selfheal/selfheal/internal/textsafe"
)

// The kinds of failure, for errors.Is on an *Error.
var (
	// ErrRequest is a call refused before anything was sent (an empty
	// or ambiguous name, too many services).
	ErrRequest = errors.New("bad request")
	// ErrTransport is a failure to reach the API at all (refused, timed
	// out, cut).
	ErrTransport = errors.New("transport")
	// ErrTLS is a server certificate that does not verify against the CA
	// or name, or a failed handshake.
	ErrTLS = errors.New("tls")
	// ErrUnauthorized is HTTP 401: unknown user, wrong password or client
	// certificate without an ApiUser.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrPermission is a permission the ApiUser lacks, or one whose filter
	// lambda excludes the object. Icinga 2.13 answers it with 404 "No
	// objects found." (the reason only in diagnostic_information); later
	// versions with 403.
	ErrPermission = errors.New("permission denied")
	// ErrNotFound is an object that does not exist (e.g. a comment already
	// removed or expired).
	ErrNotFound = errors.New("not found")
	// ErrResponse is any other failure: an unexpected status, a body that
	// is too large or not what Icinga sends.
	ErrResponse = errors.New("bad response")
)

// Error is one failed call, in one line: what was asked (Op), Icinga's
// HTTP status and "status" text, and the reason Icinga gave when there is
// one. It never holds the password or the request body.
type Error struct {
	Op     string // e.g. "add-comment h1!svc"
	Code   int    // HTTP status; 0 when no response came
	Status string // Icinga's "status" text, or the transport error
	Detail string // e.g. "Missing permission: actions/add-comment"
	Kind   error  // one of the Err* values
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("icinga api ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	// A 200 answer that is still wrong says so in Status alone.
	if e.Code != 0 && e.Code != 200 {
		b.WriteString("HTTP ")
		b.WriteString(strconv.Itoa(e.Code))
		b.WriteString(": ")
	}
	b.WriteString(e.Status)
	if e.Detail != "" {
		b.WriteString(" (")
		b.WriteString(e.Detail)
		b.WriteString(")")
	}
	return strings.TrimSpace(textsafe.Line.Clean(b.String()))
}

func (e *Error) Unwrap() error { return e.Kind }

// Icinga's diagnostic_information is a stack trace around one sentence;
// only these sentences say what went wrong, and only they are kept.
// Compiled on the first error, not at start-up: the {0,300} repeats made
// this package's init 1.3 ms of every handler run's start.
var diagRes = sync.OnceValue(func() [3]*regexp.Regexp {
	return [3]*regexp.Regexp{
		regexp.MustCompile(`Missing permission: [^\s'"]+`),
		regexp.MustCompile(`Access denied to object '[^'\n]{0,300}' of type '[A-Za-z]+'`),
		regexp.MustCompile(`Object '[^'\n]{0,300}' of type '[A-Za-z]+' does not exist`),
	}
})

// classify turns an HTTP status and Icinga's answer into an *Error.
func classify(op string, code int, status, diag string) *Error {
	e := &Error{Op: op, Code: code, Status: clip(status, 200), Kind: ErrResponse}
	res := diagRes()
	reMissing, reDenied, reNotExist := res[0], res[1], res[2]
	if e.Status == "" {
		e.Status = "no status text"
	}
	switch {
	case code == 401:
		e.Kind = ErrUnauthorized
	case code == 403:
		e.Kind, e.Detail = ErrPermission, reMissing.FindString(diag)
	case reMissing.MatchString(diag):
		e.Kind, e.Detail = ErrPermission, reMissing.FindString(diag)
	case reDenied.MatchString(diag):
		e.Kind, e.Detail = ErrPermission, reDenied.FindString(diag)
	case reNotExist.MatchString(diag):
		e.Kind, e.Detail = ErrNotFound, reNotExist.FindString(diag)
	case code == 404:
		e.Kind = ErrNotFound
	}
	return e
}

// transportError tells a certificate or handshake failure from a network
// one.
func transportError(op string, err error) *Error {
	kind := ErrTransport
	var (
		unknownCA x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		host      x509.HostnameError
		verify    *tls.CertificateVerificationError
		record    tls.RecordHeaderError
		alert     tls.AlertError
	)
	switch {
	case errors.As(err, &verify), errors.As(err, &unknownCA), errors.As(err, &invalid),
		errors.As(err, &host), errors.As(err, &record), errors.As(err, &alert):
		kind = ErrTLS
	}
	msg := err.Error()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		msg = "timed out: " + msg
	}
	return &Error{Op: op, Status: clip(msg, 300), Kind: kind}
}

// clip bounds text from the network for a one-line message.
func clip(s string, n int) string {
	s = strings.TrimSpace(textsafe.Line.Clean(s))
	if len(s) > n {
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		return s[:n] + "..."
	}
	return s
}
