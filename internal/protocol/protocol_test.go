package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testKey(t testing.TB) Key {
	t.Helper()
	return Key{ID: "nagios1", Secret: bytes.Repeat([]byte{7}, SecretBytes)}
}

const testNonce = "0123456789abcdef0123456789abcdef"

func TestRequestRoundTrip(t *testing.T) {
	k := testKey(t)
	now := time.Unix(1700000000, 0)
	for _, v := range []Verb{VerbPing, VerbStatus, VerbStart, VerbStop, VerbRestart} {
		r := NewRequest(k, v, "demo", now, testNonce)
		frame := r.Marshal()
		line, err := ReadFrame(bufio.NewReader(bytes.NewReader(frame)), MaxRequestFrame)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseRequest(line)
		if err != nil {
			t.Fatalf("%s: %v (%q)", v, err, frame)
		}
		if !got.Verify(k) {
			t.Fatalf("%s: valid request does not verify", v)
		}
		if got.Timestamp != now.Unix() || got.Verb != v {
			t.Fatalf("parsed %+v", got)
		}
		if v == VerbPing && got.Service != "-" {
			t.Fatalf("ping service %q", got.Service)
		}
		other := k
		other.Secret = bytes.Repeat([]byte{8}, SecretBytes)
		if got.Verify(other) {
			t.Fatal("verifies under another secret")
		}
		renamed := k
		renamed.ID = "other"
		if got.Verify(renamed) {
			t.Fatal("verifies under another key id")
		}
	}
}

func TestParseRequestRejects(t *testing.T) {
	k := testKey(t)
	mac := RequestMAC(k, "nagios1", VerbRestart, "demo", "1700000000", testNonce)
	good := "SH1 nagios1 restart demo 1700000000 " + testNonce + " " + mac
	if _, err := ParseRequest([]byte(good)); err != nil {
		t.Fatalf("good frame refused: %v", err)
	}
	for name, line := range map[string]string{
		"empty":            "",
		"short":            "SH1 nagios1 restart demo",
		"double space":     strings.Replace(good, " ", "  ", 1),
		"version":          strings.Replace(good, "SH1", "SH2", 1),
		"verb":             strings.Replace(good, "restart", "reboot", 1),
		"upper verb":       strings.Replace(good, "restart", "RESTART", 1),
		"ts negative":      strings.Replace(good, "1700000000", "-1700000000", 1),
		"ts plus":          strings.Replace(good, "1700000000", "+1700000000", 1),
		"ts leading zero":  strings.Replace(good, "1700000000", "01700000000", 1),
		"ts overflow":      strings.Replace(good, "1700000000", "99999999999999999999", 1),
		"ts int64 over":    strings.Replace(good, "1700000000", "9223372036854775808", 1),
		"ts alpha":         strings.Replace(good, "1700000000", "17000000x0", 1),
		"nonce upper":      strings.Replace(good, testNonce, strings.ToUpper(testNonce), 1),
		"nonce short":      strings.Replace(good, testNonce, testNonce[:30], 1),
		"mac upper":        strings.Replace(good, mac, strings.ToUpper(mac), 1),
		"mac truncated":    strings.Replace(good, mac, mac[:63], 1),
		"mac long":         good + "0",
		"service traverse": strings.Replace(good, " demo ", " ../demo ", 1),
		"service option":   strings.Replace(good, " demo ", " -rf ", 1),
		"service shell":    strings.Replace(good, " demo ", " demo;id ", 1),
		"service unicode":  strings.Replace(good, " demo ", " dеmo ", 1),
		"ping with svc":    "SH1 nagios1 ping demo 1700000000 " + testNonce + " " + mac,
		"keyid upper":      strings.Replace(good, "nagios1", "Nagios1", 1),
		"trailing field":   good + " x",
	} {
		if _, err := ParseRequest([]byte(line)); err == nil {
			t.Errorf("%s: accepted %q", name, line)
		}
	}
}

func TestReadFrame(t *testing.T) {
	tests := []struct {
		name string
		in   string
		max  int
		want string
		err  error
	}{
		{"line", "abc\nrest", 10, "abc", nil},
		{"exact max", "abcdefghi\n", 10, "abcdefghi", nil},
		{"too long", "abcdefghij\n", 10, "", ErrFrameTooLong},
		{"no newline", "abc", 10, "", ErrNoNewline},
		{"nul", "a\x00c\n", 10, "", ErrMalformed},
		{"cr", "abc\r\n", 10, "", ErrMalformed},
		{"long no newline", strings.Repeat("x", 100000), 1024, "", ErrFrameTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadFrame(bufio.NewReaderSize(strings.NewReader(tt.in), 16), tt.max)
			if !errors.Is(err, tt.err) || string(got) != tt.want {
				t.Fatalf("got %q, %v; want %q, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestReplyAuthenticated(t *testing.T) {
	k := testKey(t)
	rep := Reply{Outcome: OutcomeOK, ExitCode: 0, Duration: 1500 * time.Microsecond, Output: "restarted demo\nline 2"}
	frame := MarshalReply(rep, &k, testNonce)
	line := bytes.TrimSuffix(frame, []byte{'\n'})
	got, err := ParseReply(line, k, testNonce)
	if err != nil || got != rep {
		t.Fatalf("got %+v, %v", got, err)
	}
	// Bound to the request nonce: the same reply for another request fails.
	if _, err := ParseReply(line, k, strings.Repeat("f", 32)); err == nil {
		t.Fatal("reply verified against another nonce")
	}
	// A forged "ok" without a MAC is refused; a bare "denied" is fine.
	if _, err := ParseReply([]byte("SH1 ok 0 10 - -"), k, testNonce); err == nil {
		t.Fatal("unsigned ok accepted")
	}
	d, err := ParseReply(bytes.TrimSuffix(MarshalReply(Reply{Outcome: OutcomeDenied, ExitCode: -1}, nil, ""), []byte{'\n'}), k, testNonce)
	if err != nil || d.Outcome != OutcomeDenied || d.ExitCode != -1 {
		t.Fatalf("denied: %+v %v", d, err)
	}
	// Flip one output byte: the MAC must fail.
	bad := bytes.Replace(line, []byte(" 0 1500 "), []byte(" 1 1500 "), 1)
	if _, err := ParseReply(bad, k, testNonce); err == nil {
		t.Fatal("tampered exit code accepted")
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	k, err := GenerateKey("nagios1")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "k.key")
	if err := WriteKeyFile(p, k); err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyFile(p, k); err == nil {
		t.Fatal("overwrote an existing key file")
	}
	got, err := LoadKeyFile(p)
	if err != nil || got.ID != k.ID || !bytes.Equal(got.Secret, k.Secret) {
		t.Fatalf("load: %+v %v", got, err)
	}
	if err := os.Chmod(p, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(p); err != nil {
		t.Fatalf("0400 refused: %v", err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644, 0o660} {
		os.Chmod(p, mode)
		_, err := LoadKeyFile(p)
		if err == nil || !strings.Contains(err.Error(), "must not be accessible") {
			t.Fatalf("mode %o: %v", mode, err)
		}
		if strings.Contains(err.Error(), strings.Split(string(mustText(t, k)), " ")[2][:16]) {
			t.Fatal("error leaks the secret")
		}
	}
	if _, err := GenerateKey("Bad Id"); err == nil {
		t.Fatal("bad id accepted")
	}
	for _, content := range []string{"", "selfheal-key-v1 a", "selfheal-key-v1 a " + strings.Repeat("A", 64), "selfheal-key-v2 a " + strings.Repeat("a", 64)} {
		var kk Key
		if err := kk.UnmarshalText([]byte(content)); err == nil {
			t.Fatalf("accepted %q", content)
		}
	}
}

func mustText(t *testing.T, k Key) []byte {
	b, err := k.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzReadFrame: never panics, never returns more than max bytes, and a
// returned frame holds no newline, CR or NUL.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte("SH1 a ping - 1 " + testNonce + " " + strings.Repeat("0", 64) + "\n"))
	f.Add([]byte("abc"))
	f.Add([]byte("\n\n"))
	f.Add([]byte("a\x00\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		line, err := ReadFrame(bufio.NewReaderSize(bytes.NewReader(in), 16), 64)
		if err != nil {
			return
		}
		if len(line) >= 64 || bytes.ContainsAny(line, "\n\r\x00") {
			t.Fatalf("bad frame %q", line)
		}
		if !bytes.HasPrefix(in, append(line, '\n')) {
			t.Fatal("frame is not the input's first line")
		}
	})
}

// FuzzVerify: any frame that parses and verifies must be byte-for-byte the
// canonical signing of its own fields (no alternative encodings), and
// parsing never panics.
func FuzzVerify(f *testing.F) {
	k := testKey(f)
	f.Add(NewRequest(k, VerbRestart, "demo", time.Unix(1700000000, 0), testNonce).Marshal())
	f.Add(NewRequest(k, VerbPing, "", time.Unix(1, 0), testNonce).Marshal())
	f.Add([]byte("SH1 nagios1 restart demo 0 x y\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		line := bytes.TrimSuffix(in, []byte{'\n'})
		r, err := ParseRequest(line)
		if err != nil {
			return
		}
		if !r.Verify(k) {
			return
		}
		want := NewRequest(k, r.Verb, r.Service, time.Unix(r.Timestamp, 0), r.Nonce).Marshal()
		if !bytes.Equal(append(line, '\n'), want) {
			t.Fatalf("verified non-canonical frame %q (canonical %q)", line, want)
		}
		if _, err := ParseReply(line, k, r.Nonce); err == nil {
			t.Fatal("a request parsed as a reply")
		}
	})
}
