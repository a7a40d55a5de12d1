// Package protocol is selfheal's wire protocol between handle_worker (the
// client) and worker_listener (the agent): one request line and one reply
// line per TCP connection, both authenticated with HMAC-SHA256. The format
// is specified in docs/protocol.md; this package is its only implementation.
package protocol

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// DefaultPort is worker_listener's TCP port.
const DefaultPort = 5690

// Version is the protocol tag that opens every frame. A new incompatible
// format gets a new tag, so old and new peers refuse each other cleanly.
const Version = "SH1"

// Frame size limits, newline included. A request is at most ~250 bytes; a
// reply carries up to MaxOutput bytes of output in base64.
const (
	MaxRequestFrame = 1024
	MaxReplyFrame   = 8192
	MaxOutput       = 4096
	NonceBytes      = 16
	macHexLen       = 2 * sha256.Size
	maxName         = 64
)

// Verb is what the client asks the agent to do.
type Verb string

// The verbs. Ping checks the agent itself and runs nothing.
const (
	VerbPing    Verb = "ping"
	VerbStatus  Verb = "status"
	VerbStart   Verb = "start"
	VerbStop    Verb = "stop"
	VerbRestart Verb = "restart"
)

// Valid reports whether v is one of the protocol's verbs.
func (v Verb) Valid() bool {
	switch v {
	case VerbPing, VerbStatus, VerbStart, VerbStop, VerbRestart:
		return true
	}
	return false
}

// Outcome is the agent's verdict on a request.
type Outcome string

// The outcomes. Denied, RateLimited and Busy may be sent before the request
// is authenticated, so they are the only ones a reply may carry unsigned.
const (
	OutcomeOK          Outcome = "ok"
	OutcomeFailed      Outcome = "failed"
	OutcomeTimeout     Outcome = "timeout"
	OutcomeBusy        Outcome = "busy"
	OutcomeDenied      Outcome = "denied"
	OutcomeRateLimited Outcome = "rate-limited"
)

func (o Outcome) valid() bool {
	switch o {
	case OutcomeOK, OutcomeFailed, OutcomeTimeout, OutcomeBusy, OutcomeDenied, OutcomeRateLimited:
		return true
	}
	return false
}

// mayBeUnsigned: outcomes the agent can send without knowing who asked.
// A man in the middle can forge these (he could also just drop the
// connection), but never "ok", "failed" or "timeout".
func (o Outcome) mayBeUnsigned() bool {
	return o == OutcomeDenied || o == OutcomeRateLimited || o == OutcomeBusy
}

// Reply is the agent's answer. ExitCode is -1 when the action did not run
// or did not exit by itself. Output is the sanitised tail of the action's
// combined stdout and stderr.
type Reply struct {
	Outcome  Outcome
	ExitCode int
	Duration time.Duration
	Output   string
}

// Request is a parsed request frame. Fields hold the exact wire text, so
// the MAC is computed over what was received, not a re-encoding of it.
type Request struct {
	KeyID     string
	Verb      Verb
	Service   string
	Timestamp int64
	Nonce     string // 32 lower-case hex digits
	MAC       string // 64 lower-case hex digits
	ts        string
}

// Parse errors. The agent logs them; the peer only ever sees "denied".
var (
	ErrFrameTooLong = errors.New("frame too long")
	ErrNoNewline    = errors.New("frame not terminated by newline")
	ErrMalformed    = errors.New("malformed frame")
	ErrBadVersion   = errors.New("unsupported protocol version")
)

// nameOK: key ids and service names are 1-64 of [a-z0-9._-], starting with
// a letter or digit. That keeps out shell metacharacters, path separators,
// option-looking names, whitespace, control bytes and every non-ASCII
// confusable, and it makes the MAC input unambiguous.
func nameOK(s string) bool {
	if len(s) == 0 || len(s) > maxName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// ValidName reports whether s is acceptable as a key id or service name.
func ValidName(s string) bool { return nameOK(s) }

func lowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// parseUint is strict: 1-19 decimal digits, no sign, no leading zero.
func parseUint(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 19 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false
	}
	return v, true
}

// splitFields splits on single spaces; empty fields are errors.
func splitFields(line []byte, n int) ([]string, error) {
	parts := bytes.Split(line, []byte{' '})
	if len(parts) != n {
		return nil, ErrMalformed
	}
	out := make([]string, n)
	for i, p := range parts {
		if len(p) == 0 {
			return nil, ErrMalformed
		}
		out[i] = string(p)
	}
	return out, nil
}

// ParseRequest parses one request frame without its newline:
//
//	SH1 <key-id> <verb> <service> <unix-seconds> <nonce> <mac>
//
// It checks syntax only; Verify checks the MAC.
func ParseRequest(line []byte) (Request, error) {
	if len(line) > MaxRequestFrame-1 {
		return Request{}, ErrFrameTooLong
	}
	f, err := splitFields(line, 7)
	if err != nil {
		return Request{}, err
	}
	if f[0] != Version {
		return Request{}, ErrBadVersion
	}
	r := Request{KeyID: f[1], Verb: Verb(f[2]), Service: f[3], ts: f[4], Nonce: f[5], MAC: f[6]}
	if !nameOK(r.KeyID) {
		return Request{}, fmt.Errorf("%w: key id", ErrMalformed)
	}
	if !r.Verb.Valid() {
		return Request{}, fmt.Errorf("%w: verb", ErrMalformed)
	}
	if r.Verb == VerbPing {
		if r.Service != "-" {
			return Request{}, fmt.Errorf("%w: ping takes service -", ErrMalformed)
		}
	} else if !nameOK(r.Service) {
		return Request{}, fmt.Errorf("%w: service", ErrMalformed)
	}
	ts, ok := parseUint(r.ts)
	if !ok {
		return Request{}, fmt.Errorf("%w: timestamp", ErrMalformed)
	}
	r.Timestamp = ts
	if !lowerHex(r.Nonce, 2*NonceBytes) {
		return Request{}, fmt.Errorf("%w: nonce", ErrMalformed)
	}
	if !lowerHex(r.MAC, macHexLen) {
		return Request{}, fmt.Errorf("%w: mac", ErrMalformed)
	}
	return r, nil
}

// requestMAC is HMAC-SHA256 over the newline-joined fields. No field can
// contain a newline, so the encoding is unambiguous.
func requestMAC(k Key, keyID string, verb Verb, service, ts, nonce string) []byte {
	m := hmac.New(sha256.New, k.Secret)
	for _, s := range []string{Version, keyID, string(verb), service, ts, nonce} {
		m.Write([]byte(s))
		m.Write([]byte{'\n'})
	}
	return m.Sum(nil)
}

// Verify reports whether the request's MAC is valid under k, in constant
// time. The key id must match too: a key only signs for its own id.
func (r Request) Verify(k Key) bool {
	if !lowerHex(r.MAC, macHexLen) {
		return false
	}
	want := requestMAC(k, r.KeyID, r.Verb, r.Service, r.ts, r.Nonce)
	got := make([]byte, sha256.Size)
	if _, err := hex.Decode(got, []byte(r.MAC)); err != nil {
		return false
	}
	ok := hmac.Equal(want, got)
	return ok && r.KeyID == k.ID
}

// NewRequest builds a signed request. service "" is sent as "-" for ping.
func NewRequest(k Key, verb Verb, service string, now time.Time, nonce string) Request {
	if verb == VerbPing || service == "" {
		service = "-"
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	mac := requestMAC(k, k.ID, verb, service, ts, nonce)
	return Request{KeyID: k.ID, Verb: verb, Service: service, Timestamp: now.Unix(), ts: ts, Nonce: nonce, MAC: hex.EncodeToString(mac)}
}

// Marshal renders the request frame, newline included.
func (r Request) Marshal() []byte {
	ts := r.ts
	if ts == "" {
		ts = strconv.FormatInt(r.Timestamp, 10)
	}
	return []byte(Version + " " + r.KeyID + " " + string(r.Verb) + " " + r.Service + " " + ts + " " + r.Nonce + " " + r.MAC + "\n")
}

// replyMAC binds the reply to the request's key id and nonce, so a reply
// cannot be forged or replayed onto another request.
func replyMAC(k Key, nonce string, o Outcome, exit, dur, out string) []byte {
	m := hmac.New(sha256.New, k.Secret)
	for _, s := range []string{Version + "-reply", k.ID, nonce, string(o), exit, dur, out} {
		m.Write([]byte(s))
		m.Write([]byte{'\n'})
	}
	return m.Sum(nil)
}

// MarshalReply renders a reply frame:
//
//	SH1 <outcome> <exit-code> <duration-µs> <base64-output|-> <mac|->
//
// With k nil the reply is unsigned, which only Denied, RateLimited and
// Busy may be; nonce is the request's nonce.
func MarshalReply(rep Reply, k *Key, nonce string) []byte {
	out := rep.Output
	if len(out) > MaxOutput {
		out = out[len(out)-MaxOutput:]
	}
	b64 := "-"
	if out != "" {
		b64 = base64.StdEncoding.EncodeToString([]byte(out))
	}
	exit := strconv.Itoa(rep.ExitCode)
	us := rep.Duration.Microseconds()
	if us < 0 {
		us = 0
	}
	dur := strconv.FormatInt(us, 10)
	mac := "-"
	if k != nil {
		mac = hex.EncodeToString(replyMAC(*k, nonce, rep.Outcome, exit, dur, b64))
	}
	return []byte(Version + " " + string(rep.Outcome) + " " + exit + " " + dur + " " + b64 + " " + mac + "\n")
}

// ParseReply parses and authenticates a reply frame (without newline) to a
// request signed with k and carrying nonce.
func ParseReply(line []byte, k Key, nonce string) (Reply, error) {
	if len(line) > MaxReplyFrame-1 {
		return Reply{}, ErrFrameTooLong
	}
	f, err := splitFields(line, 6)
	if err != nil {
		return Reply{}, err
	}
	if f[0] != Version {
		return Reply{}, ErrBadVersion
	}
	o := Outcome(f[1])
	if !o.valid() {
		return Reply{}, fmt.Errorf("%w: outcome", ErrMalformed)
	}
	exitS := f[2]
	exit, ok := int64(0), true
	if len(exitS) > 1 && exitS[0] == '-' {
		exit, ok = parseUint(exitS[1:])
		exit = -exit
	} else {
		exit, ok = parseUint(exitS)
	}
	if !ok || exit < -1 || exit > 255 {
		return Reply{}, fmt.Errorf("%w: exit code", ErrMalformed)
	}
	us, ok := parseUint(f[3])
	if !ok || us > int64(24*time.Hour/time.Microsecond) {
		return Reply{}, fmt.Errorf("%w: duration", ErrMalformed)
	}
	var output []byte
	if f[4] != "-" {
		output, err = base64.StdEncoding.Strict().DecodeString(f[4])
		if err != nil || len(output) > MaxOutput {
			return Reply{}, fmt.Errorf("%w: output", ErrMalformed)
		}
	}
	if f[5] == "-" {
		if !o.mayBeUnsigned() {
			return Reply{}, fmt.Errorf("%w: unsigned %q reply", ErrMalformed, o)
		}
	} else {
		if !lowerHex(f[5], macHexLen) {
			return Reply{}, fmt.Errorf("%w: reply mac", ErrMalformed)
		}
		got, _ := hex.DecodeString(f[5])
		if !hmac.Equal(got, replyMAC(k, nonce, o, exitS, f[3], f[4])) {
			return Reply{}, errors.New("reply MAC does not verify: not from an agent holding this key")
		}
	}
	return Reply{Outcome: o, ExitCode: int(exit), Duration: time.Duration(us) * time.Microsecond, Output: string(output)}, nil
}

// RequestMAC returns the hex MAC of arbitrary field strings under k. Tests
// use it to build correctly signed frames with hostile fields.
func RequestMAC(k Key, keyID string, verb Verb, service, ts, nonce string) string {
	return hex.EncodeToString(requestMAC(k, keyID, verb, service, ts, nonce))
}
