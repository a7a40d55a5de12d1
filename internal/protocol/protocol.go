// Package protocol is selfheal's wire protocol between handle_worker (the
// client) and worker_listener (the agent): one request line and one reply
// line per TCP connection, both authenticated with HMAC-SHA256. The format
// is specified in docs/protocol.md; this package is its only implementation.
package protocol

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultPort is worker_listener's TCP port.
const DefaultPort = 5690

// Version is the protocol tag that opens every frame. A new incompatible
// format gets a new tag, so old and new peers refuse each other cleanly.
// SH2 binds every request and reply to one agent and carries a fault
// identity and the agent's restart budget.
const Version = "SH2"

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

// The verbs. Ping checks the agent itself and runs nothing. Query asks
// what a restart of the service for the fault would be answered now,
// and changes nothing but the nonce cache (a dry run).
const (
	VerbPing    Verb = "ping"
	VerbStatus  Verb = "status"
	VerbStart   Verb = "start"
	VerbStop    Verb = "stop"
	VerbRestart Verb = "restart"
	VerbQuery   Verb = "query"
)

// Valid reports whether v is one of the protocol's verbs.
func (v Verb) Valid() bool {
	switch v {
	case VerbPing, VerbStatus, VerbStart, VerbStop, VerbRestart, VerbQuery:
		return true
	}
	return false
}

// Outcome is the agent's verdict on a request.
type Outcome string

// The outcomes. Denied, RateLimited and Busy may be sent before the request
// is authenticated, so they are the only ones a reply may carry unsigned.
// Skew and Spent come only after the MAC verified, and are always signed.
const (
	OutcomeOK          Outcome = "ok"
	OutcomeFailed      Outcome = "failed"
	OutcomeTimeout     Outcome = "timeout"
	OutcomeBusy        Outcome = "busy"
	OutcomeDenied      Outcome = "denied"
	OutcomeRateLimited Outcome = "rate-limited"
	// OutcomeSkew: the request is authentic but its timestamp is outside the
	// replay window; Reply.AgentTime says what the agent's clock reads.
	OutcomeSkew Outcome = "skew"
	// OutcomeSpent: the service's restart budget is spent; Reply.Budget says
	// when it frees up.
	OutcomeSpent Outcome = "spent"
	// OutcomeBackoff: a restart of this service ran recently and the
	// service's back-off spacing (doubling from min_gap, capped) has not
	// passed; Budget.RetryAfter says when it does. Nothing ran.
	OutcomeBackoff Outcome = "backoff"
	// OutcomeBreaker: the agent's mass-failure breaker is open (too many of
	// its services needed a restart at once: the cause is likely shared);
	// Output says how many, Budget.RetryAfter when it may close. Nothing ran.
	OutcomeBreaker Outcome = "breaker"
)

func (o Outcome) valid() bool {
	switch o {
	case OutcomeOK, OutcomeFailed, OutcomeTimeout, OutcomeBusy, OutcomeDenied, OutcomeRateLimited, OutcomeSkew, OutcomeSpent,
		OutcomeBackoff, OutcomeBreaker:
		return true
	}
	return false
}

// Retryable reports whether the agent refused before anything ran, for a
// reason that passes (a full connection table, a rate limit): the client
// may send the same request again.
func (o Outcome) Retryable() bool { return o == OutcomeBusy || o == OutcomeRateLimited }

// mayBeUnsigned: outcomes the agent can send without knowing who asked.
// A man in the middle can forge these (he could also just drop the
// connection), but never "ok", "failed" or "timeout".
func (o Outcome) mayBeUnsigned() bool {
	return o == OutcomeDenied || o == OutcomeRateLimited || o == OutcomeBusy
}

// Origin says how the agent came by a reply's outcome.
type Origin string

// The origins.
const (
	// OriginNone: nothing ran (ping, a refusal).
	OriginNone Origin = "-"
	// OriginRun: this request ran the action.
	OriginRun Origin = "run"
	// OriginJoined: an identical run was in progress; this request shares
	// its result.
	OriginJoined Origin = "joined"
	// OriginRecorded: the agent answered from its records: this fault's
	// restart already ran (a retry, the other HA endpoint, a duplicate), or
	// a restart that ran less than the service's min_gap ago finished
	// after this fault began (a split brain's second fault id).
	OriginRecorded Origin = "recorded"
)

func (o Origin) valid() bool {
	switch o {
	case OriginNone, OriginRun, OriginJoined, OriginRecorded:
		return true
	}
	return false
}

// Budget is a service's restart budget as the agent keeps it. Max 0 means
// the reply carries none.
type Budget struct {
	Used, Max  int
	Window     time.Duration
	RetryAfter time.Duration // until the next restart is allowed; 0 = now
}

// Reply is the agent's answer. ExitCode is -1 when the action did not run
// or did not exit by itself. Output is the sanitised tail of the action's
// combined stdout and stderr. Agent is the answering agent's name (empty on
// an unsigned refusal). AgentTime is the agent's clock when it answered
// (zero on unsigned refusals).
//
// Extended replies (to an extended request) also carry Age and Note.
type Reply struct {
	Agent     string
	Outcome   Outcome
	Origin    Origin
	ExitCode  int
	Duration  time.Duration
	AgentTime time.Time
	Budget    Budget
	Output    string
	// Extended: the reply has the age and note fields (the agent sends
	// them to an extended request only, so an older client can read it).
	Extended bool
	// Age: for origin recorded or joined, how long ago the run that
	// answered began (docs/protocol.md, age-s); else 0.
	Age time.Duration
	// Note is the agent's own account of how it came to this answer
	// (which record, the gap, the fault's start, a clock that moved
	// back, the replay window); "" when it has none.
	Note string
	// LegacyMAC: signed as SH2 was first released (the agent's name twice
	// in the MAC): an agent older than the extended form; upgrade it.
	LegacyMAC bool
}

// Signed reports whether the reply was signed by the agent: every reply
// but the unsigned refusal, which names no agent.
func (r Reply) Signed() bool { return r.Agent != "" }

// MaxNote bounds a reply's note (before base64).
const MaxNote = 1024

// Request is a parsed request frame. Fields hold the exact wire text, so
// the MAC is computed over what was received, not a re-encoding of it.
type Request struct {
	KeyID   string
	Agent   string
	Verb    Verb
	Service string
	Fault   string // "-" when the request names no fault
	// FaultAge is how long before the request was made the fault began,
	// in milliseconds on the client's clock; -1: not given. Relative, so
	// that it means the same on the agent's clock whatever the offset
	// between the two, and to the millisecond.
	FaultAge int64
	// Extended: the 10-field form, which carries FaultAge and asks for the
	// extended reply.
	Extended  bool
	Timestamp int64
	Nonce     string // 32 lower-case hex digits
	MAC       string // 64 lower-case hex digits
	ts        string
}

// Call is what a client asks: a verb for a service, about a fault that
// began at Since (zero: not known).
type Call struct {
	Verb    Verb
	Service string
	Fault   string
	Since   time.Time
}

// Parse errors. The agent logs them; the peer only ever sees "denied".
var (
	ErrFrameTooLong = errors.New("frame too long")
	ErrNoNewline    = errors.New("frame not terminated by newline")
	ErrMalformed    = errors.New("malformed frame")
	ErrBadVersion   = errors.New("unsupported protocol version")
)

// nameOK: key ids, agent and service names are 1-64 of [a-z0-9._-],
// starting with a letter or digit. That keeps out shell metacharacters, path
// separators, option-looking names, whitespace, control bytes and every
// non-ASCII confusable, and it makes the MAC input unambiguous.
func nameOK(s string) bool { return tokenOK(s, false) }

// faultOK: fault ids are names that may also hold ':' (a Nagios problem id,
// an Icinga 2 timestamp, "manual-<unix>-<hex>").
func faultOK(s string) bool { return tokenOK(s, true) }

func tokenOK(s string, colon bool) bool {
	if len(s) == 0 || len(s) > maxName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		case c == ':' && colon && i > 0:
		default:
			return false
		}
	}
	return true
}

// ValidName reports whether s is acceptable as a key id, agent or service name.
func ValidName(s string) bool { return nameOK(s) }

// ValidFault reports whether s is acceptable as a fault id ("-" is "none").
func ValidFault(s string) bool { return s == "-" || faultOK(s) }

// NewManualFault returns a fault id of its own for a restart a person asks
// for: it never matches an engine's fault, so the agent's budget alone
// decides.
func NewManualFault(now time.Time) (string, error) {
	b := make([]byte, 4)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		return "", err
	}
	return "manual-" + strconv.FormatInt(now.Unix(), 10) + "-" + hex.EncodeToString(b), nil
}

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

// ParseRequest parses one request frame without its newline, in either
// form:
//
//	SH2 <key-id> <agent> <verb> <service> <fault> <unix-seconds> <nonce> <mac>
//	SH2 <key-id> <agent> <verb> <service> <fault> <fault-age-ms> <unix-seconds> <nonce> <mac>
//
// The second (extended) form carries how long before the request the
// fault began ("-": not known) and asks for the extended reply. It checks syntax only; Verify
// checks the MAC.
func ParseRequest(line []byte) (Request, error) {
	if len(line) > MaxRequestFrame-1 {
		return Request{}, ErrFrameTooLong
	}
	f, err := splitFields(line, 9)
	if err != nil {
		if f, err = splitFields(line, 10); err != nil {
			return Request{}, err
		}
	}
	if f[0] != Version {
		return Request{}, ErrBadVersion
	}
	r := Request{KeyID: f[1], Agent: f[2], Verb: Verb(f[3]), Service: f[4], Fault: f[5], FaultAge: -1}
	if len(f) == 10 {
		r.Extended = true
		if f[6] != "-" {
			age, ok := parseUint(f[6])
			if !ok || age > maxFaultAge {
				return Request{}, fmt.Errorf("%w: fault age", ErrMalformed)
			}
			r.FaultAge = age
		}
		f = append(f[:6], f[7:]...)
	}
	r.ts, r.Nonce, r.MAC = f[6], f[7], f[8]
	if !nameOK(r.KeyID) {
		return Request{}, fmt.Errorf("%w: key id", ErrMalformed)
	}
	if !nameOK(r.Agent) {
		return Request{}, fmt.Errorf("%w: agent", ErrMalformed)
	}
	if !r.Verb.Valid() {
		return Request{}, fmt.Errorf("%w: verb", ErrMalformed)
	}
	if r.Verb == VerbPing {
		if r.Service != "-" || r.Fault != "-" {
			return Request{}, fmt.Errorf("%w: ping takes service - and fault -", ErrMalformed)
		}
		if r.FaultAge >= 0 {
			return Request{}, fmt.Errorf("%w: ping takes fault age -", ErrMalformed)
		}
	} else if !nameOK(r.Service) {
		return Request{}, fmt.Errorf("%w: service", ErrMalformed)
	}
	if !ValidFault(r.Fault) {
		return Request{}, fmt.Errorf("%w: fault", ErrMalformed)
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

// mac is HMAC-SHA256 over newline-terminated fields. No field can contain a
// newline, so the encoding is unambiguous.
func mac(secret []byte, fields ...string) []byte {
	m := hmac.New(sha256.New, secret)
	for _, s := range fields {
		m.Write([]byte(s))
		m.Write([]byte{'\n'})
	}
	return m.Sum(nil)
}

func requestMAC(k Key, keyID, agent string, verb Verb, service, fault, ts, nonce string) []byte {
	return mac(k.Secret, Version, keyID, agent, string(verb), service, fault, ts, nonce)
}

// maxFaultAge bounds a fault's age: ten years in milliseconds.
const maxFaultAge = 10 * 366 * 24 * 3600 * 1000

// extendedMAC is the extended form's: the fault's age follows the fault. The field
// count differs from the short form's, so neither MAC can stand in for
// the other.
func extendedMAC(k Key, keyID, agent string, verb Verb, service, fault, age, ts, nonce string) []byte {
	return mac(k.Secret, Version, keyID, agent, string(verb), service, fault, age, ts, nonce)
}

func ageText(age int64) string {
	if age < 0 {
		return "-"
	}
	return strconv.FormatInt(age, 10)
}

func (r Request) sign(k Key) []byte {
	if r.Extended {
		return extendedMAC(k, r.KeyID, r.Agent, r.Verb, r.Service, r.Fault, ageText(r.FaultAge), r.ts, r.Nonce)
	}
	return requestMAC(k, r.KeyID, r.Agent, r.Verb, r.Service, r.Fault, r.ts, r.Nonce)
}

// Verify reports whether the request's MAC is valid under the host key k,
// in constant time. The key id and the agent must be k's too: a host key
// signs only for its own fleet id and agent.
func (r Request) Verify(k Key) bool {
	if k.Kind != HostKey || !lowerHex(r.MAC, macHexLen) {
		return false
	}
	want := r.sign(k)
	got := make([]byte, sha256.Size)
	if _, err := hex.Decode(got, []byte(r.MAC)); err != nil {
		return false
	}
	ok := hmac.Equal(want, got)
	return ok && r.KeyID == k.ID && r.Agent == k.Agent
}

// NewRequest builds a request signed with the host key k, for k's agent.
// service "" is sent as "-" for ping; fault "" as "-".
func NewRequest(k Key, verb Verb, service, fault string, now time.Time, nonce string) Request {
	if verb == VerbPing || service == "" {
		service = "-"
	}
	if verb == VerbPing || fault == "" {
		fault = "-"
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	m := requestMAC(k, k.ID, k.Agent, verb, service, fault, ts, nonce)
	return Request{KeyID: k.ID, Agent: k.Agent, Verb: verb, Service: service, Fault: fault, FaultAge: -1, Timestamp: now.Unix(), ts: ts, Nonce: nonce, MAC: hex.EncodeToString(m)}
}

// NewExtendedRequest builds an extended request for c, signed with the
// host key k: it carries how long before now the fault began (c.Since;
// a start after now is age 0), and asks for the extended reply. An agent older than the extended form refuses it (denied).
func NewExtendedRequest(k Key, c Call, now time.Time, nonce string) Request {
	service, fault := c.Service, c.Fault
	if c.Verb == VerbPing || service == "" {
		service = "-"
	}
	if c.Verb == VerbPing || fault == "" {
		fault = "-"
	}
	age := int64(-1)
	if !c.Since.IsZero() && c.Verb != VerbPing {
		age = min(max(now.Sub(c.Since).Milliseconds(), 0), maxFaultAge)
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	r := Request{KeyID: k.ID, Agent: k.Agent, Verb: c.Verb, Service: service, Fault: fault, FaultAge: age, Extended: true,
		Timestamp: now.Unix(), ts: ts, Nonce: nonce}
	r.MAC = hex.EncodeToString(r.sign(k))
	return r
}

// Marshal renders the request frame, newline included.
func (r Request) Marshal() []byte {
	ts := r.ts
	if ts == "" {
		ts = strconv.FormatInt(r.Timestamp, 10)
	}
	fault := r.Fault
	if r.Extended {
		fault += " " + ageText(r.FaultAge)
	}
	return []byte(Version + " " + r.KeyID + " " + r.Agent + " " + string(r.Verb) + " " + r.Service + " " + fault + " " + ts + " " + r.Nonce + " " + r.MAC + "\n")
}

// replyMAC binds the reply to the host key's fleet id and agent and to the
// request's nonce, so a reply cannot be forged, come from another agent, or
// be replayed onto another request. f is the frame's fields after the
// agent (outcome to output): the agent is covered once, as k's, which the
// frame's agent field must equal (docs/protocol.md, and its test vectors).
func replyMAC(k Key, nonce string, f []string) []byte {
	return mac(k.Secret, append([]string{Version + "-reply", k.ID, k.Agent, nonce}, f...)...)
}

func formatBudget(b Budget) string {
	if b.Max <= 0 {
		return "-"
	}
	secs := func(d time.Duration) string {
		if d < 0 {
			d = 0
		}
		return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
	}
	return strconv.Itoa(max(b.Used, 0)) + "/" + strconv.Itoa(b.Max) + "/" + secs(b.Window) + "/" + secs(b.RetryAfter)
}

func parseBudget(s string) (Budget, bool) {
	if s == "-" {
		return Budget{}, true
	}
	p := strings.Split(s, "/")
	if len(p) != 4 {
		return Budget{}, false
	}
	var v [4]int64
	for i, x := range p {
		n, ok := parseUint(x)
		if !ok || n > 1<<31 {
			return Budget{}, false
		}
		v[i] = n
	}
	if v[1] == 0 {
		return Budget{}, false
	}
	return Budget{Used: int(v[0]), Max: int(v[1]), Window: time.Duration(v[2]) * time.Second, RetryAfter: time.Duration(v[3]) * time.Second}, true
}

// unsignedFrame is the one unsigned refusal the agent sends whatever the
// reason, so that a peer without the key learns nothing.
func unsignedFrame(o Outcome) []byte {
	return []byte(Version + " - " + string(o) + " - -1 0 0 - - -\n")
}

// MarshalReply renders a reply frame, extended when rep.Extended:
//
//	SH2 <agent> <outcome> <origin> <exit-code> <duration-µs> <agent-unix-ms> <budget> <base64-output|-> <mac|->
//	SH2 <agent> <outcome> <origin> <exit-code> <duration-µs> <agent-unix-ms> <budget> <base64-output|-> <age-s|-> <base64-note|-> <mac>
//
// k is the host key the request verified under, and nonce the request's
// nonce. With k nil the reply is unsigned, which only Denied, RateLimited
// and Busy may be, and then carries nothing but its outcome.
func MarshalReply(rep Reply, k *Key, nonce string) []byte {
	if k == nil {
		return unsignedFrame(rep.Outcome)
	}
	out := rep.Output
	if len(out) > MaxOutput {
		out = out[len(out)-MaxOutput:]
	}
	b64 := "-"
	if out != "" {
		b64 = base64.StdEncoding.EncodeToString([]byte(out))
	}
	origin := rep.Origin
	if origin == "" {
		origin = OriginNone
	}
	us := max(rep.Duration.Microseconds(), 0)
	ms := max(rep.AgentTime.UnixMilli(), 0)
	f := []string{k.Agent, string(rep.Outcome), string(origin), strconv.Itoa(rep.ExitCode),
		strconv.FormatInt(us, 10), strconv.FormatInt(ms, 10), formatBudget(rep.Budget), b64}
	if rep.Extended {
		age := "-"
		if origin == OriginRecorded || origin == OriginJoined {
			age = strconv.FormatInt(int64(max(rep.Age, 0)/time.Second), 10)
		}
		note := "-"
		if n := rep.Note; n != "" {
			if len(n) > MaxNote {
				n = n[:MaxNote]
			}
			note = base64.StdEncoding.EncodeToString([]byte(n))
		}
		f = append(f, age, note)
	}
	m := hex.EncodeToString(replyMAC(*k, nonce, f[1:]))
	return []byte(Version + " " + strings.Join(f, " ") + " " + m + "\n")
}

// ParseReply parses and authenticates a reply frame (without newline) to a
// request signed with the host key k and carrying nonce. A signed reply
// must come from k's agent; an unsigned one may only refuse.
func ParseReply(line []byte, k Key, nonce string) (Reply, error) {
	if len(line) > MaxReplyFrame-1 {
		return Reply{}, ErrFrameTooLong
	}
	f, err := splitFields(line, 10)
	var ext []string // the extended reply's age and note
	if err != nil {
		if f, err = splitFields(line, 12); err != nil {
			return Reply{}, err
		}
		ext = slices.Clone(f[9:11])
		f = append(f[:9], f[11])
	}
	if f[0] != Version {
		return Reply{}, ErrBadVersion
	}
	o := Outcome(f[2])
	if !o.valid() {
		return Reply{}, fmt.Errorf("%w: outcome", ErrMalformed)
	}
	if f[9] == "-" {
		if ext != nil {
			return Reply{}, fmt.Errorf("%w: unsigned reply carries fields", ErrMalformed)
		}
		if !o.mayBeUnsigned() {
			return Reply{}, fmt.Errorf("%w: unsigned %q reply", ErrMalformed, o)
		}
		if string(line) != strings.TrimSuffix(string(unsignedFrame(o)), "\n") {
			return Reply{}, fmt.Errorf("%w: unsigned reply carries fields", ErrMalformed)
		}
		return Reply{Outcome: o, Origin: OriginNone, ExitCode: -1}, nil
	}
	if f[1] != k.Agent {
		return Reply{}, fmt.Errorf("reply from agent %q, but the request was for %q: refusing it", f[1], k.Agent)
	}
	origin := Origin(f[3])
	if !origin.valid() {
		return Reply{}, fmt.Errorf("%w: origin", ErrMalformed)
	}
	exitS := f[4]
	var exit int64
	ok := true
	if len(exitS) > 1 && exitS[0] == '-' {
		exit, ok = parseUint(exitS[1:])
		exit = -exit
	} else {
		exit, ok = parseUint(exitS)
	}
	if !ok || exit < -1 || exit > 255 {
		return Reply{}, fmt.Errorf("%w: exit code", ErrMalformed)
	}
	us, ok := parseUint(f[5])
	if !ok || us > int64(24*time.Hour/time.Microsecond) {
		return Reply{}, fmt.Errorf("%w: duration", ErrMalformed)
	}
	ms, ok := parseUint(f[6])
	if !ok {
		return Reply{}, fmt.Errorf("%w: agent time", ErrMalformed)
	}
	budget, ok := parseBudget(f[7])
	if !ok {
		return Reply{}, fmt.Errorf("%w: budget", ErrMalformed)
	}
	var output []byte
	if f[8] != "-" {
		output, err = base64.StdEncoding.Strict().DecodeString(f[8])
		if err != nil || len(output) > MaxOutput {
			return Reply{}, fmt.Errorf("%w: output", ErrMalformed)
		}
	}
	if !lowerHex(f[9], macHexLen) {
		return Reply{}, fmt.Errorf("%w: reply mac", ErrMalformed)
	}
	rep := Reply{Agent: f[1], Outcome: o, Origin: origin, ExitCode: int(exit), Duration: time.Duration(us) * time.Microsecond,
		AgentTime: time.UnixMilli(ms), Budget: budget, Output: string(output)}
	signed := f[2:9]
	if ext != nil {
		rep.Extended = true
		if ext[0] != "-" {
			age, ok := parseUint(ext[0])
			if !ok || age > 1<<40 || (origin != OriginRecorded && origin != OriginJoined) {
				return Reply{}, fmt.Errorf("%w: age", ErrMalformed)
			}
			rep.Age = time.Duration(age) * time.Second
		}
		if ext[1] != "-" {
			note, err := base64.StdEncoding.Strict().DecodeString(ext[1])
			if err != nil || len(note) > MaxNote {
				return Reply{}, fmt.Errorf("%w: note", ErrMalformed)
			}
			rep.Note = string(note)
		}
		signed = append(slices.Clone(signed), ext...)
	}
	got, _ := hex.DecodeString(f[9])
	if !hmac.Equal(got, replyMAC(k, nonce, signed)) {
		// SH2 as first released signed the short reply with the agent a
		// second time, after the nonce. Accepted (and flagged) so that a
		// rolling upgrade never leaves the fleet's agents unheard: it is
		// the same host key's HMAC over the same fields, and it cannot
		// collide with the documented form (one field more).
		if ext != nil || !hmac.Equal(got, replyMAC(k, nonce, f[1:9])) {
			return Reply{}, errors.New("reply MAC does not verify: not from the agent holding this host key")
		}
		rep.LegacyMAC = true
	}
	return rep, nil
}

// RequestMAC returns the hex MAC of arbitrary field strings under k. Tests
// use it to build correctly signed frames with hostile fields.
func RequestMAC(k Key, keyID, agent string, verb Verb, service, fault, ts, nonce string) string {
	return hex.EncodeToString(requestMAC(k, keyID, agent, verb, service, fault, ts, nonce))
}
