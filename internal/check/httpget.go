package check

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The response reader is ours, not net/http's: check_worker makes one
// HTTP/1.1 GET per process, and net/http links an HTTP/2 stack, multipart,
// proxy and IDNA code a health probe never runs (17 packages, 0.5 MB of
// binary), loaded on every start Nagios pays for. This reader accepts
// exactly what http.ReadResponse accepted and fails with the same texts,
// so the plugin's output does not change (httpget_test.go compares the
// two); on top of that the head is bounded: maxHeader bytes, maxFields
// header lines.

// maxFields bounds the header lines of a response (and of a trailer).
const maxFields = 256

// response is one parsed response head and its framed body.
type response struct {
	code         int
	major, minor int
	fields       []field
	length       int64     // Content-Length; -1 when chunked or read to EOF
	body         io.Reader // framed: returns io.EOF at the body's end
}

type field struct{ key, value string }

// get returns the first value of the header name (given in canonical
// form), as http.Header.Get does.
func (r *response) get(name string) string {
	for _, f := range r.fields {
		if asciiEqualFold(f.key, name) {
			return f.value
		}
	}
	return ""
}

// values returns every value of the header name, nil when absent.
func (r *response) values(name string) []string {
	var vs []string
	for _, f := range r.fields {
		if asciiEqualFold(f.key, name) {
			vs = append(vs, f.value)
		}
	}
	return vs
}

// readResponse reads the status line and the header, and frames the body
// as RFC 9112 section 6 says: none for 1xx, 204 and 304, else chunked,
// Content-Length or until the worker closes. br must be 4096 bytes, as
// net/http's was: it is the limit of a chunk-size line.
func readResponse(br *bufio.Reader) (*response, error) {
	h := head{br: br, left: maxHeader}
	line, err := h.line()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	proto, status, ok := strings.Cut(line, " ")
	if !ok {
		return nil, fmt.Errorf("malformed HTTP response %q", line)
	}
	code, _, _ := strings.Cut(strings.TrimLeft(status, " "), " ")
	r := &response{}
	if len(code) != 3 {
		return nil, fmt.Errorf("malformed HTTP status code %q", code)
	}
	if r.code, err = strconv.Atoi(code); err != nil || r.code < 0 {
		return nil, fmt.Errorf("malformed HTTP status code %q", code)
	}
	if r.major, r.minor, ok = parseHTTPVersion(proto); !ok {
		return nil, fmt.Errorf("malformed HTTP version %q", proto)
	}
	if r.fields, err = h.fields(); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if err := r.frame(br); err != nil {
		return nil, err
	}
	return r, nil
}

// parseHTTPVersion reads "HTTP/X.Y" (one digit each).
func parseHTTPVersion(v string) (major, minor int, ok bool) {
	if len(v) != len("HTTP/X.Y") || !strings.HasPrefix(v, "HTTP/") || v[6] != '.' || !isDigit(v[5]) || !isDigit(v[7]) {
		return 0, 0, false
	}
	return int(v[5] - '0'), int(v[7] - '0'), true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// frame checks the framing headers and sets the body reader. Smuggling
// guards as net/http's: one Transfer-Encoding, and only chunked (ignored
// before HTTP/1.1); several Content-Lengths only if they agree.
func (r *response) frame(br *bufio.Reader) error {
	if r.major == 0 && r.minor == 0 {
		r.major, r.minor = 1, 1 // net/http's reading of "HTTP/0.0"
	}
	chunked := false
	if te := r.values("Transfer-Encoding"); te != nil && (r.major > 1 || r.major == 1 && r.minor >= 1) {
		if len(te) != 1 {
			return fmt.Errorf("too many transfer encodings: %q", te)
		}
		if !asciiEqualFold(te[0], "chunked") {
			return fmt.Errorf("unsupported transfer encoding: %q", te[0])
		}
		chunked = true
	}
	r.length = -1
	if cls := r.values("Content-Length"); cls != nil {
		cl := trimSpace(cls[0])
		for _, c := range cls[1:] {
			if trimSpace(c) != cl {
				return fmt.Errorf("http: message cannot contain multiple Content-Length headers; got %q", cls)
			}
		}
		if cl == "" {
			return fmt.Errorf("invalid empty Content-Length %q", cl)
		}
		n, err := strconv.ParseUint(cl, 10, 63)
		if err != nil {
			return fmt.Errorf("bad Content-Length %q", cl)
		}
		r.length = int64(n)
	}
	if chunked {
		for _, v := range r.values("Trailer") {
			for k := range strings.SplitSeq(v, ",") {
				k = trimSpace(k)
				if asciiEqualFold(k, "Transfer-Encoding") || asciiEqualFold(k, "Trailer") || asciiEqualFold(k, "Content-Length") {
					return fmt.Errorf("bad trailer key %q", canonicalKey(k))
				}
			}
		}
	}
	switch {
	case r.code/100 == 1 || r.code == 204 || r.code == 304:
		r.length, r.body = 0, &lengthBody{br: br}
	case chunked:
		r.length, r.body = -1, &chunkedBody{br: br}
	case r.length >= 0:
		r.body = &lengthBody{br: br, n: r.length}
	default:
		r.body = br // no framing: the body ends when the worker closes
	}
	return nil
}

// head reads header lines within a byte budget.
type head struct {
	br   *bufio.Reader
	left int
	err  error // a read error met while looking for a folded line
}

// line reads one line without its LF or CRLF. A last line the worker
// closed without ending counts as a line; the next read gets io.EOF.
func (h *head) line() (string, error) {
	if h.err != nil {
		return "", h.err
	}
	var b []byte
	for {
		frag, err := h.br.ReadSlice('\n')
		if h.left -= len(frag); h.left < 0 {
			return "", errHeadTooLarge
		}
		b = append(b, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF && len(b) > 0 {
			h.err = io.EOF
			break
		}
		if err != nil {
			return "", err
		}
		b = b[:len(b)-1]
		if len(b) > 0 && b[len(b)-1] == '\r' {
			b = b[:len(b)-1]
		}
		break
	}
	return string(b), nil
}

// folded consumes the blanks that start the next line and reports
// whether there were any: such a line continues the previous one
// (obs-fold, RFC 9112 section 5.2), joined to it by one space.
func (h *head) folded() (bool, error) {
	n := 0
	for h.err == nil {
		c, err := h.br.ReadByte()
		if err != nil {
			h.err = err // the next line() reports it
			break
		}
		if c != ' ' && c != '\t' {
			h.br.UnreadByte()
			break
		}
		n++
		if h.left--; h.left < 0 {
			return false, errHeadTooLarge
		}
	}
	return n > 0, nil
}

// fields reads header lines up to the empty line that ends them.
func (h *head) fields() ([]field, error) {
	if b, err := h.br.Peek(1); err == nil && (b[0] == ' ' || b[0] == '\t') {
		line, err := h.line()
		if err != nil {
			return nil, err
		}
		if len(line) > 80 {
			return nil, errors.New("message too large") // net/http quoted 80 bytes at most
		}
		return nil, fmt.Errorf("malformed MIME header initial line: %q", line)
	}
	var fs []field
	for {
		line, err := h.line()
		if err != nil {
			return nil, err
		}
		if line == "" {
			return fs, nil
		}
		if !strings.Contains(line, ":") {
			return nil, fmt.Errorf("malformed MIME header: missing colon: %q", line)
		}
		line = trimOWS(line)
		for {
			more, err := h.folded()
			if err != nil {
				return nil, err
			}
			if !more {
				break
			}
			next, err := h.line()
			if err != nil {
				return nil, err
			}
			line += " " + trimOWS(next)
		}
		k, v, _ := strings.Cut(line, ":")
		if !validKey(k) {
			return nil, fmt.Errorf("malformed MIME header line: %q", line)
		}
		if !validValue(v) { // net/http quoted the name as canonicalised by then
			return nil, fmt.Errorf("malformed MIME header line: %q", canonicalKey(k)+":"+v)
		}
		if len(fs) == maxFields {
			return nil, errHeadTooLarge
		}
		fs = append(fs, field{key: k, value: strings.TrimLeft(v, " \t")})
	}
}

// validKey: a token (RFC 9110 section 5.1). A space is let through, as
// net/http did (go.dev/issue/34540), but such a key matches no header we
// look up: its field is ignored.
func validKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c != ' ' && !isTokenChar(c) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || isDigit(c) || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// validValue: visible ASCII, space, tab and obs-text; no other control.
func validValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// canonicalKey writes a token key as net/http does: Content-Length.
func canonicalKey(k string) string {
	if !validKey(k) || strings.IndexByte(k, ' ') >= 0 {
		return k
	}
	b := []byte(k)
	upper := true
	for i, c := range b {
		switch {
		case upper && 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		case !upper && 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		b[i] = c
		upper = c == '-'
	}
	return string(b)
}

// asciiEqualFold compares header names and tokens: ASCII case only, so
// no Unicode folding can make "ſ" an "s".
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// trimOWS trims spaces and tabs (a header line's optional white space).
func trimOWS(s string) string { return strings.Trim(s, " \t") }

// trimSpace trims ASCII white space, CR and LF included.
func trimSpace(s string) string { return strings.Trim(s, " \t\r\n") }

// lengthBody is a body of n bytes; ending sooner is io.ErrUnexpectedEOF.
type lengthBody struct {
	br *bufio.Reader
	n  int64
}

func (b *lengthBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.br.Read(p)
	b.n -= int64(n)
	if err == io.EOF && b.n > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// chunkedBody decodes chunked transfer coding (RFC 9112 section 7.1),
// with net/http's guards: a chunk-size line under 4096 bytes, CRLF line
// ends, and at most 16 KiB more framing than data.
type chunkedBody struct {
	br     *bufio.Reader
	n      uint64 // data left in this chunk
	crlf   bool   // this chunk's data is read: its CRLF comes next
	excess int64
	err    error // sticky; io.EOF after the last chunk and the trailer
}

func (c *chunkedBody) Read(p []byte) (int, error) {
	for c.err == nil {
		if c.crlf {
			var end [2]byte
			if _, err := io.ReadFull(c.br, end[:]); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				c.err = err
				break
			}
			if end != [2]byte{'\r', '\n'} {
				c.err = errors.New("malformed chunked encoding")
				break
			}
			c.crlf = false
		}
		if c.n == 0 {
			c.err = c.begin()
			continue
		}
		if len(p) == 0 {
			return 0, nil
		}
		if uint64(len(p)) > c.n {
			p = p[:c.n]
		}
		n, err := c.br.Read(p)
		c.n -= uint64(n)
		if c.n == 0 && err == nil {
			c.crlf = true
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		c.err = err
		return n, err
	}
	return 0, c.err
}

// begin reads a chunk-size line; after the last chunk, the trailer.
func (c *chunkedBody) begin() error {
	line, err := c.br.ReadSlice('\n')
	switch {
	case err == io.EOF:
		return io.ErrUnexpectedEOF
	case err == bufio.ErrBufferFull:
		return errors.New("header line too long")
	case err != nil:
		return err
	}
	if i := bytes.IndexByte(line, '\r'); i < 0 {
		return errors.New("chunked line ends with bare LF")
	} else if i != len(line)-2 {
		return errors.New("invalid CR in chunked line")
	}
	line = line[:len(line)-2]
	if len(line) >= 4096 {
		return errors.New("header line too long")
	}
	c.excess += int64(len(line)) + 2 // the line, and the CRLF after the data
	line = bytes.TrimRight(line, " \t")
	line, _, _ = bytes.Cut(line, []byte(";")) // chunk extensions mean nothing to us
	if c.n, err = parseHex(line); err != nil {
		return err
	}
	if c.n == 0 {
		return c.trailer()
	}
	c.excess = max(c.excess-16-2*int64(c.n), 0)
	if c.excess > 16<<10 {
		return errors.New("chunked encoding contains too much non-data")
	}
	return nil
}

// trailer reads the header lines after the last chunk; their values are
// not used, but they must be well formed and end within 4096 bytes.
func (c *chunkedBody) trailer() error {
	buf, err := c.br.Peek(2)
	switch {
	case string(buf) == "\r\n":
		c.br.Discard(2)
		return io.EOF
	case len(buf) < 2:
		return errors.New("http: unexpected EOF reading trailer")
	case err != nil:
		return err
	}
	if !upcomingDoubleCRLF(c.br) {
		return errors.New("http: suspiciously long trailer after chunked body")
	}
	h := head{br: c.br, left: c.br.Size()}
	if _, err := h.fields(); err != nil {
		if err == io.EOF {
			return errors.New("http: unexpected EOF reading trailer")
		}
		return err
	}
	return io.EOF
}

// upcomingDoubleCRLF reports whether the buffer, filled as far as it
// goes, holds the CRLFCRLF that ends a trailer.
func upcomingDoubleCRLF(br *bufio.Reader) bool {
	for n := 4; ; n++ {
		buf, err := br.Peek(n)
		if bytes.HasSuffix(buf, []byte("\r\n\r\n")) {
			return true
		}
		if err != nil {
			return false
		}
	}
}

func parseHex(v []byte) (uint64, error) {
	if len(v) == 0 {
		return 0, errors.New("empty hex number for chunk length")
	}
	var n uint64
	for i, b := range v {
		switch {
		case '0' <= b && b <= '9':
			b -= '0'
		case 'a' <= b && b <= 'f':
			b = b - 'a' + 10
		case 'A' <= b && b <= 'F':
			b = b - 'A' + 10
		default:
			return 0, errors.New("invalid byte in chunk length")
		}
		if i == 16 {
			return 0, errors.New("http chunk length too large")
		}
		n = n<<4 | uint64(b)
	}
	return n, nil
}
