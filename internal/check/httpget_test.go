package check

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/status"
)

// outcome is what a parse of one response yields, compared whole.
type outcome struct {
	code           int
	ctype, loc     string
	length         int64
	body           string
	headErr, bdErr string
}

// ours parses with httpget.go.
func ours(r io.Reader) outcome {
	resp, err := readResponse(bufio.NewReaderSize(r, 4096))
	if err != nil {
		return outcome{headErr: err.Error()}
	}
	b, err := io.ReadAll(resp.body)
	o := outcome{code: resp.code, ctype: resp.get("Content-Type"), loc: resp.get("Location"), length: resp.length, body: string(b)}
	if err != nil {
		o.bdErr = err.Error()
	}
	return o
}

// std parses with net/http, which check_worker used before: the
// reference for what is accepted and for the error texts.
func std(raw []byte) outcome {
	resp, err := http.ReadResponse(bufio.NewReaderSize(bytes.NewReader(raw), 4096), nil)
	if err != nil {
		return outcome{headErr: err.Error()}
	}
	b, err := io.ReadAll(resp.Body)
	o := outcome{code: resp.StatusCode, ctype: resp.Header.Get("Content-Type"), loc: resp.Header.Get("Location"), length: resp.ContentLength, body: string(b)}
	if err != nil {
		o.bdErr = err.Error()
	}
	return o
}

// serveRaw accepts connections on loopback and writes raw to each, then
// closes: a worker that sends exactly these bytes.
func serveRaw(t *testing.T, raw string) string {
	t.Helper()
	return rawListener(t, func(c net.Conn) {
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, raw)
		c.Close()
	})
}

// parseOverLoopback reads raw as a worker sends it on a real socket.
func parseOverLoopback(t *testing.T, raw string) outcome {
	t.Helper()
	c, err := net.Dial("tcp", serveRaw(t, raw))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return ours(c)
}

const ok200 = "HTTP/1.1 200 OK\r\n"

// chunks encodes parts as chunks, with the last chunk.
func chunks(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		fmt.Fprintf(&b, "%x\r\n%s\r\n", len(p), p)
	}
	return b.String() + "0\r\n\r\n"
}

func chunkedHead(extra string) string {
	return ok200 + "Transfer-Encoding: chunked\r\n" + extra + "\r\n"
}

// responseCases: each is parsed by ours over loopback and must give
// exactly net/http's outcome: the same code, headers, body and error text.
var responseCases = []struct {
	name string
	raw  string
	want outcome // checked on top of the comparison with net/http
}{
	// Status lines.
	{"content-length", ok200 + "Content-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}", outcome{code: 200, ctype: "application/json", length: 15, body: `{"status":"ok"}`}},
	{"no reason phrase", "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nhi", outcome{code: 200, length: 2, body: "hi"}},
	{"spaces before the code", "HTTP/1.1   503 Busy\r\nContent-Length: 0\r\n\r\n", outcome{code: 503}},
	{"bare LF line ends", "HTTP/1.1 200 OK\nContent-Length: 2\n\nhi", outcome{code: 200, length: 2, body: "hi"}},
	{"HTTP/1.0 read to EOF", "HTTP/1.0 200 OK\r\n\r\nto the end", outcome{code: 200, length: -1, body: "to the end"}},
	{"HTTP/1.1 without framing read to EOF", ok200 + "\r\nto the end", outcome{code: 200, length: -1, body: "to the end"}},
	{"other version digits", "HTTP/2.0 200 OK\r\n\r\nx", outcome{code: 200, length: -1, body: "x"}},
	{"two-digit code", "HTTP/1.1 20 OK\r\n\r\n", outcome{headErr: `malformed HTTP status code "20"`}},
	{"four-digit code", "HTTP/1.1 2000 OK\r\n\r\n", outcome{headErr: `malformed HTTP status code "2000"`}},
	{"letters for a code", "HTTP/1.1 abc OK\r\n\r\n", outcome{headErr: `malformed HTTP status code "abc"`}},
	{"negative code", "HTTP/1.1 -12 OK\r\n\r\n", outcome{headErr: `malformed HTTP status code "-12"`}},
	{"no space in the status line", "HTTP/1.1\r\n\r\n", outcome{headErr: `malformed HTTP response "HTTP/1.1"`}},
	{"bad version", "HTTP/1.x 200 OK\r\n\r\n", outcome{headErr: `malformed HTTP version "HTTP/1.x"`}},
	{"lower-case protocol", "http/1.1 200 OK\r\n\r\n", outcome{headErr: `malformed HTTP version "http/1.1"`}},
	{"long version", "HTTP/1.10 200 OK\r\n\r\n", outcome{headErr: `malformed HTTP version "HTTP/1.10"`}},
	{"not HTTP at all", "SSH-2.0-OpenSSH_9.6\r\n", outcome{headErr: `malformed HTTP response "SSH-2.0-OpenSSH_9.6"`}},
	{"cut head without a colon", ok200 + "Content-Ty", outcome{headErr: `malformed MIME header: missing colon: "Content-Ty"`}},
	{"nothing", "", outcome{headErr: "unexpected EOF"}},
	{"status line then close", ok200, outcome{headErr: "unexpected EOF"}},
	{"status line cut", "HTTP/1.1 20", outcome{headErr: `malformed HTTP status code "20"`}},
	{"cut in the head", ok200 + "Content-Type: appl", outcome{headErr: "unexpected EOF"}},
	{"no blank line", ok200 + "Content-Length: 2\r\n", outcome{headErr: "unexpected EOF"}},

	// Header lines.
	{"folded header", ok200 + "Location: /a\r\n  /b\r\n\t/c\r\nContent-Length: 0\r\n\r\n", outcome{code: 200, loc: "/a /b /c"}},
	{"fold of blanks only", ok200 + "Location: /a\r\n   \r\nContent-Length: 0\r\n\r\n", outcome{code: 200, loc: "/a "}},
	{"value trimmed", ok200 + "Content-Type: \t application/json \t\r\nContent-Length: 0\r\n\r\n", outcome{code: 200, ctype: "application/json"}},
	{"lower-case names", ok200 + "content-type: text/plain\r\ncontent-length: 1\r\n\r\nx", outcome{code: 200, ctype: "text/plain", length: 1, body: "x"}},
	{"first value wins", ok200 + "Content-Type: a/b\r\nContent-Type: c/d\r\nContent-Length: 0\r\n\r\n", outcome{code: 200, ctype: "a/b"}},
	{"leading blank on the first header", ok200 + " Content-Type: x\r\n\r\n", outcome{headErr: `malformed MIME header initial line: " Content-Type: x"`}},
	{"long leading-blank line", ok200 + " " + strings.Repeat("x", 100) + "\r\n\r\n", outcome{headErr: "message too large"}},
	{"missing colon", ok200 + "NoColon\r\n\r\n", outcome{headErr: `malformed MIME header: missing colon: "NoColon"`}},
	{"empty name", ok200 + ": v\r\n\r\n", outcome{headErr: `malformed MIME header line: ": v"`}},
	{"bad byte in a name", ok200 + "Bad(Key): v\r\n\r\n", outcome{headErr: `malformed MIME header line: "Bad(Key): v"`}},
	{"space in a name is ignored", ok200 + "Content-Type : text/html\r\nContent-Length: 2\r\n\r\nhi", outcome{code: 200, length: 2, body: "hi"}},
	{"control byte in a value", ok200 + "X-A: a\x01b\r\n\r\n", outcome{headErr: `malformed MIME header line: "X-A: a\x01b"`}},
	{"DEL in a value", ok200 + "X-A: a\x7fb\r\n\r\n", outcome{headErr: `malformed MIME header line: "X-A: a\x7fb"`}},
	{"bare CR in a value", ok200 + "X-A: a\rb\r\n\r\n", outcome{headErr: `malformed MIME header line: "X-A: a\rb"`}},
	{"NUL in a value", ok200 + "X-A: a\x00b\r\n\r\n", outcome{headErr: `malformed MIME header line: "X-A: a\x00b"`}},
	{"obs-text in a value", ok200 + "Content-Type: caf\xe9\r\nContent-Length: 0\r\n\r\n", outcome{code: 200, ctype: "caf\xe9"}},

	// Framing.
	{"chunked", chunkedHead("") + "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", outcome{code: 200, length: -1, body: "hello world"}},
	{"chunk extension, upper-case hex", chunkedHead("") + "A;name=\"v\"\r\n0123456789\r\n0\r\n\r\n", outcome{code: 200, length: -1, body: "0123456789"}},
	{"blanks after the chunk size", chunkedHead("") + "2 \t\r\nhi\r\n0\r\n\r\n", outcome{code: 200, length: -1, body: "hi"}},
	{"chunked trailer", chunkedHead("Trailer: X-Sum\r\n") + "2\r\nhi\r\n0\r\nX-Sum: 1\r\n\r\n", outcome{code: 200, length: -1, body: "hi"}},
	{"Chunked in any case", ok200 + "Transfer-Encoding: Chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", outcome{code: 200, length: -1, body: "hi"}},
	{"chunked beats Content-Length", chunkedHead("Content-Length: 100\r\n") + "2\r\nhi\r\n0\r\n\r\n", outcome{code: 200, length: -1, body: "hi"}},
	{"chunk without its CRLF", chunkedHead("") + "5\r\nhelloXX0\r\n\r\n", outcome{code: 200, length: -1, body: "hello", bdErr: "malformed chunked encoding"}},
	{"chunk-size line with bare LF", chunkedHead("") + "5\nhello\r\n0\r\n\r\n", outcome{code: 200, length: -1, bdErr: "chunked line ends with bare LF"}},
	{"CR inside a chunk-size line", chunkedHead("") + "5\r5\r\nhello\r\n", outcome{code: 200, length: -1, bdErr: "invalid CR in chunked line"}},
	{"bad hex", chunkedHead("") + "zz\r\n", outcome{code: 200, length: -1, bdErr: "invalid byte in chunk length"}},
	{"empty chunk size", chunkedHead("") + "\r\n", outcome{code: 200, length: -1, bdErr: "empty hex number for chunk length"}},
	{"chunk size over 64 bits", chunkedHead("") + "11111111111111111\r\n", outcome{code: 200, length: -1, bdErr: "http chunk length too large"}},
	{"chunk size line too long", chunkedHead("") + strings.Repeat("0", 5000) + "1\r\nx\r\n0\r\n\r\n", outcome{code: 200, length: -1, bdErr: "header line too long"}},
	{"chunk data cut", chunkedHead("") + "a\r\nhello", outcome{code: 200, length: -1, body: "hello", bdErr: "unexpected EOF"}},
	{"no last chunk", chunkedHead("") + "5\r\nhello\r\n", outcome{code: 200, length: -1, body: "hello", bdErr: "unexpected EOF"}},
	{"no CRLF after the last chunk", chunkedHead("") + "5\r\nhello\r\n0\r\n", outcome{code: 200, length: -1, body: "hello", bdErr: "http: unexpected EOF reading trailer"}},
	{"malformed trailer", chunkedHead("") + "0\r\nbad trailer\r\n\r\n", outcome{code: 200, length: -1, bdErr: `malformed MIME header: missing colon: "bad trailer"`}},
	{"endless trailer", chunkedHead("") + "0\r\n" + strings.Repeat("X-T: v\r\n", 1000), outcome{code: 200, length: -1, bdErr: "http: suspiciously long trailer after chunked body"}},
	{"too much framing for the data", chunkedHead("") + strings.Repeat("1;"+strings.Repeat("x", 100)+"\r\na\r\n", 300) + "0\r\n\r\n", outcome{code: 200, length: -1, body: strings.Repeat("a", 190), bdErr: "chunked encoding contains too much non-data"}},
	{"two transfer encodings", ok200 + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", outcome{headErr: `too many transfer encodings: ["chunked" "chunked"]`}},
	{"gzip transfer encoding", ok200 + "Transfer-Encoding: gzip\r\n\r\n", outcome{headErr: `unsupported transfer encoding: "gzip"`}},
	{"transfer encoding list", ok200 + "Transfer-Encoding: gzip, chunked\r\n\r\n", outcome{headErr: `unsupported transfer encoding: "gzip, chunked"`}},
	{"Transfer-Encoding ignored in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello", outcome{code: 200, length: -1, body: "5\r\nhello"}},
	{"forbidden trailer key", chunkedHead("Trailer: Content-Length\r\n") + "0\r\n\r\n", outcome{headErr: `bad trailer key "Content-Length"`}},
	{"forbidden trailer key in a list", chunkedHead("Trailer: X-A, transfer-encoding\r\n") + "0\r\n\r\n", outcome{headErr: `bad trailer key "Transfer-Encoding"`}},
	{"Trailer without chunked", ok200 + "Trailer: Content-Length\r\nContent-Length: 1\r\n\r\nx", outcome{code: 200, length: 1, body: "x"}},
	{"bad Content-Length", ok200 + "Content-Length: abc\r\n\r\n", outcome{headErr: `bad Content-Length "abc"`}},
	{"negative Content-Length", ok200 + "Content-Length: -1\r\n\r\n", outcome{headErr: `bad Content-Length "-1"`}},
	{"signed Content-Length", ok200 + "Content-Length: +5\r\n\r\nhello", outcome{headErr: `bad Content-Length "+5"`}},
	{"Content-Length over 63 bits", ok200 + "Content-Length: 99999999999999999999\r\n\r\n", outcome{headErr: `bad Content-Length "99999999999999999999"`}},
	{"empty Content-Length", ok200 + "Content-Length: \r\n\r\n", outcome{headErr: `invalid empty Content-Length ""`}},
	{"Content-Length list", ok200 + "Content-Length: 5, 5\r\n\r\nhello", outcome{headErr: `bad Content-Length "5, 5"`}},
	{"equal Content-Lengths", ok200 + "Content-Length: 2\r\nContent-Length:  2\r\n\r\nhi", outcome{code: 200, length: 2, body: "hi"}},
	{"different Content-Lengths", ok200 + "Content-Length: 2\r\nContent-Length: 3\r\n\r\nhi!", outcome{headErr: `http: message cannot contain multiple Content-Length headers; got ["2" "3"]`}},
	{"body shorter than Content-Length", ok200 + "Content-Length: 10\r\n\r\nhello", outcome{code: 200, length: 10, body: "hello", bdErr: "unexpected EOF"}},
	{"bytes after Content-Length ignored", ok200 + "Content-Length: 2\r\n\r\nhello", outcome{code: 200, length: 2, body: "he"}},
	{"204 has no body", "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello", outcome{code: 204}},
	{"304 has no body, chunked or not", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", outcome{code: 304}},
	{"1xx has no body", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", outcome{code: 100}},
	{"redirect", "HTTP/1.1 302 Found\r\nLocation: /v2/status\r\nContent-Length: 0\r\n\r\n", outcome{code: 302, loc: "/v2/status"}},
}

func TestReadResponse(t *testing.T) {
	for _, tt := range responseCases {
		t.Run(tt.name, func(t *testing.T) {
			got := parseOverLoopback(t, tt.raw)
			if ref := std([]byte(tt.raw)); got != ref {
				t.Errorf("differs from net/http\n ours    %+v\n net/http %+v", got, ref)
			}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestReadResponseBounds: the head is bounded where net/http only had
// the size cap on the whole answer: maxHeader bytes and maxFields lines.
func TestReadResponseBounds(t *testing.T) {
	many := ok200
	for range maxFields + 1 {
		many += "X-N: v\r\n"
	}
	fits := ok200 + "X-Big: " + strings.Repeat("a", maxHeader-200) + "\r\nContent-Length: 2\r\n\r\nhi"
	for name, raw := range map[string]string{
		"status line over the cap": "HTTP/1.1 200 " + strings.Repeat("O", maxHeader) + "\r\n\r\n",
		"one header over the cap":  ok200 + "X-Big: " + strings.Repeat("a", maxHeader) + "\r\n\r\n",
		"folds over the cap":       ok200 + "X-Big: a\r\n" + strings.Repeat(" "+strings.Repeat("a", 1000)+"\r\n", maxHeader/1000+1) + "\r\n",
		"blanks over the cap":      ok200 + "X-Big: a\r\n" + strings.Repeat(" ", maxHeader) + "\r\n\r\n",
		"too many header lines":    many + "\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := readResponse(bufio.NewReaderSize(strings.NewReader(raw), 4096))
			if !errors.Is(err, status.ErrTooLarge) {
				t.Errorf("err %v, want the size cap", err)
			}
		})
	}
	if got := parseOverLoopback(t, fits); got.headErr != "" || got.body != "hi" {
		t.Errorf("a head just under the cap: %+v", got)
	}
}

// TestResponseStates: what the plugin prints for a broken answer, over a
// real socket, end to end.
func TestResponseStates(t *testing.T) {
	for _, tt := range []struct {
		name, raw string
		want      nagios.State
		line1     string
	}{
		{"chunked document", chunkedHead("Content-Type: application/json\r\n") + chunks(`{"status`, `":"ok","message":"`, "chunked", `"}`), nagios.OK, "WORKER OK - chunked"},
		{"folded content type", ok200 + "Content-Type: application/json;\r\n charset=utf-8\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}", nagios.OK, "WORKER OK - status ok"},
		{"HTTP/1.0 until close", "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"status\":\"ok\",\"message\":\"old\"}", nagios.OK, "WORKER OK - old"},
		{"not HTTP", "SSH-2.0-OpenSSH_9.6\r\n", nagios.Unknown, `WORKER UNKNOWN - check failed: malformed HTTP response "SSH-2.0-OpenSSH_9.6"`},
		{"bad header line", ok200 + "Bad Line\r\n\r\n", nagios.Unknown, "WORKER UNKNOWN - check failed: malformed MIME header: missing colon"},
		{"bad Content-Length", ok200 + "Content-Length: x\r\n\r\n", nagios.Unknown, `WORKER UNKNOWN - check failed: bad Content-Length "x"`},
		{"bad chunk", chunkedHead("") + "zz\r\n", nagios.Unknown, "WORKER UNKNOWN - check failed: invalid byte in chunk length"},
		{"chunked body cut", chunkedHead("Content-Type: application/json\r\n") + "20\r\n{\"status\":", nagios.Critical, "WORKER CRITICAL - connection closed before a complete answer"},
		{"head cut", ok200 + "Content-Type: appl", nagios.Critical, "WORKER CRITICAL - connection closed before a complete answer"},
		{"head over the cap", ok200 + "X-Big: " + strings.Repeat("a", maxHeader) + "\r\n\r\n", nagios.Unknown, "WORKER UNKNOWN - status answer over the size cap"},
		{"3xx without Location", "HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n", nagios.Unknown, "WORKER UNKNOWN - HTTP 302 Found"},
		{"204 has no document", "HTTP/1.1 204 No Content\r\n\r\n", nagios.Unknown, "WORKER UNKNOWN - worker broke the status contract: malformed"},
		{"1xx", "HTTP/1.1 100 Continue\r\n\r\n", nagios.Unknown, "WORKER UNKNOWN - HTTP 100 Continue"},
		{"unknown code", "HTTP/1.1 599 Odd\r\nContent-Length: 4\r\n\r\noops", nagios.Critical, "WORKER CRITICAL - HTTP 599 : oops"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			url := rawServer(t, func(c net.Conn) {
				defer c.Close()
				readRequest(c)
				io.WriteString(c, tt.raw)
			})
			res := run(t, Config{URL: url}, Deps{})
			if res.State != tt.want || !strings.HasPrefix(res.Output, tt.line1) {
				t.Errorf("got %v %q\nwant %v %q", res.State, res.Output, tt.want, tt.line1)
			}
		})
	}
}

// TestRequestOnTheWire: the exact GET, and --header values cannot add a
// line to it.
func TestRequestOnTheWire(t *testing.T) {
	got := make(chan string, 1)
	url := rawServer(t, func(c net.Conn) {
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var req []byte
		buf := make([]byte, 4096)
		for !bytes.Contains(req, []byte("\r\n\r\n")) {
			n, err := c.Read(buf)
			req = append(req, buf[:n]...)
			if err != nil {
				break
			}
		}
		got <- string(req)
		io.WriteString(c, ok200+"Content-Length: 15\r\n\r\n{\"status\":\"ok\"}")
	})
	fl := Flags{URL: url + "?q=1", Timeout: "5", Header: []string{"X-Env: prod", "x-token: a b:c"}}
	cfg, _, err := fl.Config("check_worker/test")
	if err != nil {
		t.Fatal(err)
	}
	if res := run(t, cfg, Deps{}); res.State != nagios.OK {
		t.Fatalf("%v %q", res.State, res.Output)
	}
	req := <-got
	host := strings.TrimPrefix(strings.TrimSuffix(url, "/status"), "http://")
	lines := strings.Split(strings.TrimSuffix(req, "\r\n\r\n"), "\r\n")
	if lines[0] != "GET /status?q=1 HTTP/1.1" || lines[1] != "Host: "+host {
		t.Errorf("request line and Host: %q", lines[:2])
	}
	rest := append([]string(nil), lines[2:]...)
	sort.Strings(rest)
	want := []string{"Accept: application/json", "Connection: close", "User-Agent: check_worker/test", "X-Env: prod", "X-Token: a b:c"}
	if strings.Join(rest, "|") != strings.Join(want, "|") {
		t.Errorf("headers %q\nwant    %q", rest, want)
	}
	if lines[len(lines)-1] != "Connection: close" {
		t.Errorf("Connection: close must come last: %q", lines)
	}

	for _, bad := range []string{
		"X-A: a\r\nX-B: b", "X-A: a\nX-B: b", "X-A: a\rX-B: b", "X-A: a\x00b",
		"X-A\r\nX-B: b", "X-\nA: b", "Host: x\r\n\r\nGET / HTTP/1.1",
	} {
		fl := Flags{URL: url, Timeout: "5", Header: []string{bad}}
		if _, _, err := fl.Config("ua"); err == nil {
			t.Errorf("header %q accepted", bad)
		}
	}
}

// FuzzReadResponse holds the reader to net/http's on any input within
// the head bounds: the same outcome, error texts included.
func FuzzReadResponse(f *testing.F) {
	for _, tt := range responseCases {
		f.Add([]byte(tt.raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > maxHeader || bytes.Count(raw, []byte("\n")) > maxFields {
			return // past our bounds on the head, which net/http lacked
		}
		got, ref := ours(bytes.NewReader(raw)), std(raw)
		if got != ref {
			t.Errorf("%q\n ours     %+v\n net/http %+v", raw, got, ref)
		}
	})
}
