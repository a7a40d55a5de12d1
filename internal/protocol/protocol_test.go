package protocol

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testFleet is a fixed fleet key; testKey is its host key for agent web1.
func testFleet(t testing.TB) Key {
	t.Helper()
	return Key{Kind: FleetKey, ID: "fleet1", Secret: bytes.Repeat([]byte{7}, SecretBytes)}
}

func testKey(t testing.TB) Key {
	t.Helper()
	k, err := testFleet(t).ForAgent("web1")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

const testNonce = "0123456789abcdef0123456789abcdef"

func TestRequestRoundTrip(t *testing.T) {
	k := testKey(t)
	now := time.Unix(1700000000, 0)
	for _, v := range []Verb{VerbPing, VerbStatus, VerbStart, VerbStop, VerbRestart} {
		for _, fault := range []string{"", "4711", "1796143490", "manual-1700000000-0a1b2c3d"} {
			r := NewRequest(k, v, "demo", fault, now, testNonce)
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
			wantFault := fault
			if v == VerbPing || fault == "" {
				wantFault = "-"
			}
			if got.Timestamp != now.Unix() || got.Verb != v || got.Agent != "web1" || got.KeyID != "fleet1" || got.Fault != wantFault {
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
			// The same secret under another agent's name: a host key
			// signs for its own agent only.
			moved := k
			moved.Agent = "web2"
			if got.Verify(moved) {
				t.Fatal("verifies for another agent")
			}
			if got.Verify(testFleet(t)) {
				t.Fatal("verifies under the fleet key itself")
			}
		}
	}
}

// TestHostKeysAreScoped: a request for one agent never verifies at
// another, even one of the same fleet, and one agent's key cannot derive or
// stand in for another's.
func TestHostKeysAreScoped(t *testing.T) {
	fleet := testFleet(t)
	a, _ := fleet.ForAgent("web1")
	b, _ := fleet.ForAgent("web2")
	if bytes.Equal(a.Secret, b.Secret) || bytes.Equal(a.Secret, fleet.Secret) {
		t.Fatal("host keys not distinct")
	}
	again, _ := fleet.ForAgent("web1")
	if !bytes.Equal(a.Secret, again.Secret) {
		t.Fatal("derivation is not deterministic")
	}
	req := NewRequest(a, VerbRestart, "demo", "17", time.Unix(1700000000, 0), testNonce)
	parsed, err := ParseRequest(bytes.TrimSuffix(req.Marshal(), []byte{'\n'}))
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Verify(b) {
		t.Fatal("web1's request verifies at web2")
	}
	// Rewriting the agent field to web2 breaks the MAC under both keys.
	forged := bytes.Replace(req.Marshal(), []byte(" web1 "), []byte(" web2 "), 1)
	fp, err := ParseRequest(bytes.TrimSuffix(forged, []byte{'\n'}))
	if err != nil {
		t.Fatal(err)
	}
	if fp.Verify(a) || fp.Verify(b) {
		t.Fatal("a renamed agent field verifies")
	}
	if _, err := a.ForAgent("web2"); err == nil {
		t.Fatal("web1's host key produced a key for web2")
	}
	if k, err := a.ForAgent("web1"); err != nil || !bytes.Equal(k.Secret, a.Secret) {
		t.Fatalf("a host key for its own agent: %v", err)
	}
	if _, err := fleet.ForAgent("Web 1"); err == nil {
		t.Fatal("bad agent name accepted")
	}
}

func TestParseRequestRejects(t *testing.T) {
	k := testKey(t)
	mac := RequestMAC(k, "fleet1", "web1", VerbRestart, "demo", "4711", "1700000000", testNonce)
	good := "SH2 fleet1 web1 restart demo 4711 1700000000 " + testNonce + " " + mac
	if _, err := ParseRequest([]byte(good)); err != nil {
		t.Fatalf("good frame refused: %v", err)
	}
	for name, line := range map[string]string{
		"empty":            "",
		"short":            "SH2 fleet1 web1 restart demo",
		"double space":     strings.Replace(good, " ", "  ", 1),
		"version":          strings.Replace(good, "SH2", "SH1", 1),
		"old sh1 frame":    "SH1 fleet1 restart demo 1700000000 " + testNonce + " " + mac,
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
		"service colon":    strings.Replace(good, " demo ", " de:mo ", 1),
		"agent upper":      strings.Replace(good, " web1 ", " Web1 ", 1),
		"agent dash":       strings.Replace(good, " web1 ", " - ", 1),
		"agent slash":      strings.Replace(good, " web1 ", " web/1 ", 1),
		"fault shell":      strings.Replace(good, " 4711 ", " 47;11 ", 1),
		"fault leading :":  strings.Replace(good, " 4711 ", " :4711 ", 1),
		"fault too long":   strings.Replace(good, " 4711 ", " "+strings.Repeat("1", 65)+" ", 1),
		"fault upper":      strings.Replace(good, " 4711 ", " A4711 ", 1),
		"ping with svc":    "SH2 fleet1 web1 ping demo - 1700000000 " + testNonce + " " + mac,
		"ping with fault":  "SH2 fleet1 web1 ping - 4711 1700000000 " + testNonce + " " + mac,
		"keyid upper":      strings.Replace(good, "fleet1", "Fleet1", 1),
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
	rep := Reply{Agent: "web1", Outcome: OutcomeOK, Origin: OriginRun, ExitCode: 0, Duration: 1500 * time.Microsecond,
		AgentTime: time.UnixMilli(1700000000123), Budget: Budget{Used: 1, Max: 3, Window: time.Hour, RetryAfter: 2 * time.Minute},
		Output: "restarted demo\nline 2"}
	frame := MarshalReply(rep, &k, testNonce)
	line := bytes.TrimSuffix(frame, []byte{'\n'})
	got, err := ParseReply(line, k, testNonce)
	if err != nil || got != rep {
		t.Fatalf("got %+v, %v\nwant %+v", got, err, rep)
	}
	// The agent field is the key's agent, whatever the Reply said.
	spoof := rep
	spoof.Agent = "web2"
	if got, err := ParseReply(bytes.TrimSuffix(MarshalReply(spoof, &k, testNonce), []byte{'\n'}), k, testNonce); err != nil || got.Agent != "web1" {
		t.Fatalf("agent field: %+v %v", got, err)
	}
	// Bound to the request nonce: the same reply for another request fails.
	if _, err := ParseReply(line, k, strings.Repeat("f", 32)); err == nil {
		t.Fatal("reply verified against another nonce")
	}
	// A reply from another agent of the same fleet is refused, however
	// genuine: the client asked web1.
	other, _ := testFleet(t).ForAgent("web2")
	fromB := bytes.TrimSuffix(MarshalReply(rep, &other, testNonce), []byte{'\n'})
	if _, err := ParseReply(fromB, k, testNonce); err == nil || !strings.Contains(err.Error(), "web2") {
		t.Fatalf("reply from web2 accepted by a client of web1: %v", err)
	}
	// Rewriting the agent field does not help: the MAC covers it.
	renamed := bytes.Replace(fromB, []byte(" web2 "), []byte(" web1 "), 1)
	if _, err := ParseReply(renamed, k, testNonce); err == nil {
		t.Fatal("renamed reply accepted")
	}
	// A forged "ok" without a MAC is refused; a bare "denied" is fine, and
	// an unsigned refusal may carry nothing but its outcome.
	for _, forged := range []string{
		"SH2 web1 ok run 0 10 1700000000000 - - -",
		"SH2 - ok - -1 0 0 - - -",
		"SH2 - skew - -1 0 0 - - -",
		"SH2 - spent - -1 0 0 - - -",
		"SH2 - busy - -1 0 1700000000000 - - -",
		"SH2 web1 denied - -1 0 0 - - -",
		"SH2 - denied - -1 0 0 - aGk= -",
	} {
		if _, err := ParseReply([]byte(forged), k, testNonce); err == nil {
			t.Errorf("unsigned reply accepted: %q", forged)
		}
	}
	for _, o := range []Outcome{OutcomeDenied, OutcomeBusy, OutcomeRateLimited} {
		frame := MarshalReply(Reply{Outcome: o, ExitCode: -1, Output: "why", Agent: "web1"}, nil, "")
		if string(frame) != "SH2 - "+string(o)+" - -1 0 0 - - -\n" {
			t.Fatalf("unsigned %s frame %q", o, frame)
		}
		d, err := ParseReply(bytes.TrimSuffix(frame, []byte{'\n'}), k, testNonce)
		if err != nil || d.Outcome != o || d.ExitCode != -1 || d.Agent != "" {
			t.Fatalf("%s: %+v %v", o, d, err)
		}
	}
	// Flip one field: the MAC must fail.
	for _, pair := range [][2]string{{" run 0 1500 ", " run 1 1500 "}, {" 1/3/3600/120 ", " 0/3/3600/120 "}, {" ok run ", " ok recorded "}, {"1700000000123", "1700000009123"}} {
		bad := bytes.Replace(line, []byte(pair[0]), []byte(pair[1]), 1)
		if bytes.Equal(bad, line) {
			t.Fatalf("test did not change the frame: %q", pair[0])
		}
		if _, err := ParseReply(bad, k, testNonce); err == nil {
			t.Fatalf("tampered %q accepted", pair[0])
		}
	}
	// Skew and spent are signed outcomes.
	for _, o := range []Outcome{OutcomeSkew, OutcomeSpent} {
		r := Reply{Outcome: o, ExitCode: -1, Origin: OriginNone, AgentTime: time.UnixMilli(1700000000000)}
		got, err := ParseReply(bytes.TrimSuffix(MarshalReply(r, &k, testNonce), []byte{'\n'}), k, testNonce)
		if err != nil || got.Outcome != o || !got.AgentTime.Equal(r.AgentTime) {
			t.Fatalf("%s: %+v %v", o, got, err)
		}
	}
}

func TestBudgetField(t *testing.T) {
	for _, tt := range []struct {
		b    Budget
		wire string
	}{
		{Budget{}, "-"},
		{Budget{Used: 3, Max: 3, Window: time.Hour, RetryAfter: 1500 * time.Millisecond}, "3/3/3600/2"},
		{Budget{Used: 0, Max: 1, Window: 90 * time.Second}, "0/1/90/0"},
	} {
		if got := formatBudget(tt.b); got != tt.wire {
			t.Errorf("formatBudget(%+v) = %q, want %q", tt.b, got, tt.wire)
		}
	}
	for _, bad := range []string{"", "1/2/3", "1/0/3/4", "a/3/3600/0", "1/3/3600/0/9", "01/3/3600/0", "-1/3/3600/0"} {
		if _, ok := parseBudget(bad); ok {
			t.Errorf("parseBudget(%q) accepted", bad)
		}
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	fleet, err := GenerateFleetKey("fleet1")
	if err != nil {
		t.Fatal(err)
	}
	host, err := fleet.ForAgent("web1")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []Key{fleet, host} {
		p := filepath.Join(dir, k.Kind.String()+".key")
		if err := WriteKeyFile(p, k); err != nil {
			t.Fatal(err)
		}
		if err := WriteKeyFile(p, k); err == nil {
			t.Fatal("overwrote an existing key file")
		}
		got, err := LoadKeyFile(p)
		if err != nil || got.ID != k.ID || got.Kind != k.Kind || got.Agent != k.Agent || !bytes.Equal(got.Secret, k.Secret) {
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
			f := strings.Fields(string(mustText(t, k)))
			if strings.Contains(err.Error(), f[len(f)-1][:16]) {
				t.Fatal("error leaks the secret")
			}
		}
	}
	if got := string(mustText(t, host)); !strings.HasPrefix(got, "selfheal-host-v1 fleet1 web1 ") {
		t.Fatalf("host key file %q", got)
	}
	if _, err := GenerateFleetKey("Bad Id"); err == nil {
		t.Fatal("bad id accepted")
	}
	hex64 := strings.Repeat("a", 64)
	for _, content := range []string{"", "selfheal-fleet-v1 a", "selfheal-fleet-v1 a " + strings.Repeat("A", 64),
		"selfheal-key-v1 a " + hex64, "selfheal-fleet-v2 a " + hex64, "selfheal-host-v1 a " + hex64,
		"selfheal-host-v1 a Web1 " + hex64, "selfheal-fleet-v1 a web1 " + hex64} {
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
	f.Add([]byte("SH2 a b ping - - 1 " + testNonce + " " + strings.Repeat("0", 64) + "\n"))
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
	f.Add(NewRequest(k, VerbRestart, "demo", "4711", time.Unix(1700000000, 0), testNonce).Marshal())
	f.Add(NewRequest(k, VerbPing, "", "", time.Unix(1, 0), testNonce).Marshal())
	f.Add([]byte("SH2 fleet1 web1 restart demo - 0 x y\n"))
	f.Add(NewExtendedRequest(k, Call{Verb: VerbQuery, Service: "demo", Fault: "4711", Since: time.Unix(1699999990, 0)}, time.Unix(1700000000, 0), testNonce).Marshal())
	f.Add(NewExtendedRequest(k, Call{Verb: VerbRestart, Service: "demo", Fault: "4711"}, time.Unix(1700000000, 0), testNonce).Marshal())
	f.Fuzz(func(t *testing.T, in []byte) {
		line := bytes.TrimSuffix(in, []byte{'\n'})
		r, err := ParseRequest(line)
		if err != nil {
			return
		}
		if !r.Verify(k) {
			return
		}
		want := NewRequest(k, r.Verb, r.Service, r.Fault, time.Unix(r.Timestamp, 0), r.Nonce).Marshal()
		if r.Extended {
			var since time.Time
			if r.FaultAge >= 0 {
				since = time.Unix(r.Timestamp, 0).Add(-time.Duration(r.FaultAge) * time.Millisecond)
			}
			want = NewExtendedRequest(k, Call{Verb: r.Verb, Service: r.Service, Fault: r.Fault, Since: since}, time.Unix(r.Timestamp, 0), r.Nonce).Marshal()
		}
		if !bytes.Equal(append(line, '\n'), want) {
			t.Fatalf("verified non-canonical frame %q (canonical %q)", line, want)
		}
		if _, err := ParseReply(line, k, r.Nonce); err == nil {
			t.Fatal("a request parsed as a reply")
		}
	})
}

// TestExtendedForm: the extended request carries how long before it the
// fault began ("-": not known) under its own MAC, which the short form's cannot stand
// in for; the extended reply carries the age of a recorded answer and
// the agent's note, both under the reply MAC.
func TestExtendedForm(t *testing.T) {
	k := testKey(t)
	now := time.Unix(1700000000, 0)
	for _, since := range []time.Time{{}, time.Unix(1699999950, 0).Add(-250 * time.Millisecond)} {
		r := NewExtendedRequest(k, Call{Verb: VerbRestart, Service: "demo", Fault: "4711", Since: since}, now, testNonce)
		line := bytes.TrimSuffix(r.Marshal(), []byte{'\n'})
		got, err := ParseRequest(line)
		if err != nil || !got.Extended || !got.Verify(k) || got.Fault != "4711" || got.Timestamp != now.Unix() {
			t.Fatalf("%q: %+v %v", line, got, err)
		}
		if (since.IsZero() && got.FaultAge != -1) || (!since.IsZero() && got.FaultAge != 50250) {
			t.Fatalf("fault age %d, for %v", got.FaultAge, since)
		}
		// The short form's MAC on the extended frame, and the since
		// field changed: neither verifies.
		short := NewRequest(k, VerbRestart, "demo", "4711", now, testNonce)
		f := strings.Fields(string(line))
		f[9] = short.MAC
		if g, err := ParseRequest([]byte(strings.Join(f, " "))); err != nil || g.Verify(k) {
			t.Fatalf("short MAC on the extended form: %v", err)
		}
		f = strings.Fields(string(line))
		f[6] = "1"
		if g, err := ParseRequest([]byte(strings.Join(f, " "))); err != nil || g.Verify(k) {
			t.Fatalf("fault age changed: %v", err)
		}
	}
	for _, bad := range []string{"01", "+5", "1.5", "", "99999999999999"} {
		line := "SH2 fleet1 web1 restart demo 4711 " + bad + " 1700000000 " + testNonce + " " + strings.Repeat("a", 64)
		if _, err := ParseRequest([]byte(line)); err == nil {
			t.Errorf("fault age %q accepted", bad)
		}
	}
	if _, err := ParseRequest([]byte("SH2 fleet1 web1 ping - - 5 1700000000 " + testNonce + " " + strings.Repeat("a", 64))); err == nil {
		t.Error("ping with a fault age accepted")
	}

	rep := Reply{Agent: "web1", Outcome: OutcomeOK, Origin: OriginRecorded, ExitCode: 0, AgentTime: time.UnixMilli(1700000000123),
		Budget: Budget{Used: 1, Max: 3, Window: time.Hour}, Output: "did it", Extended: true, Age: 192 * time.Second,
		Note: "fault 4711 was restarted 3m12s ago"}
	frame := bytes.TrimSuffix(MarshalReply(rep, &k, testNonce), []byte{'\n'})
	got, err := ParseReply(frame, k, testNonce)
	if err != nil || got != rep {
		t.Fatalf("round trip: %+v %v\n%s", got, err, frame)
	}
	f := strings.Fields(string(frame))
	if len(f) != 12 || f[9] != "192" {
		t.Fatalf("extended reply %q", frame)
	}
	f[9] = "1"
	if _, err := ParseReply([]byte(strings.Join(f, " ")), k, testNonce); err == nil {
		t.Fatal("a changed age verified")
	}
	// Without the two fields, the MAC is not the short reply's.
	short := append(f[:9:9], f[11])
	if _, err := ParseReply([]byte(strings.Join(short, " ")), k, testNonce); err == nil {
		t.Fatal("an extended reply cut to the short form verified")
	}
	// An age is only said of an answer from the records.
	rep.Origin, rep.Age = OriginRun, 0
	got, err = ParseReply(bytes.TrimSuffix(MarshalReply(rep, &k, testNonce), []byte{'\n'}), k, testNonce)
	if err != nil || got != rep || !strings.Contains(string(MarshalReply(rep, &k, testNonce)), " - ZmF1bHQ") {
		t.Fatalf("run: %+v %v", got, err)
	}
}

// TestReplyLegacyMAC: an agent of SH2 as first released signed its short
// reply with the agent a second time. The client accepts that MAC, flags
// it, and never for an extended reply, nor under another agent's key.
func TestReplyLegacyMAC(t *testing.T) {
	k := testKey(t)
	rep := Reply{Agent: "web1", Outcome: OutcomeOK, Origin: OriginRun, AgentTime: time.UnixMilli(1700000000123), Output: "restarted"}
	f := strings.Fields(strings.TrimSuffix(string(MarshalReply(rep, &k, testNonce)), "\n"))
	legacy := func(k Key, fields []string) string {
		return hex.EncodeToString(mac(k.Secret, append([]string{Version + "-reply", k.ID, k.Agent, testNonce}, fields...)...))
	}
	line := strings.Join(append(f[:9:9], legacy(k, f[1:9])), " ")
	got, err := ParseReply([]byte(line), k, testNonce)
	if err != nil || !got.LegacyMAC || got.Outcome != OutcomeOK {
		t.Fatalf("legacy reply: %+v %v", got, err)
	}
	if got, err := ParseReply([]byte(strings.Join(f, " ")), k, testNonce); err != nil || got.LegacyMAC {
		t.Fatalf("documented reply: %+v %v", got, err)
	}
	other, _ := testFleet(t).ForAgent("web2")
	if _, err := ParseReply([]byte(strings.Join(append(f[:9:9], legacy(other, f[1:9])), " ")), k, testNonce); err == nil {
		t.Fatal("a legacy MAC under another agent's key verified")
	}
	ext := rep
	ext.Extended = true
	e := strings.Fields(strings.TrimSuffix(string(MarshalReply(ext, &k, testNonce)), "\n"))
	e[len(e)-1] = legacy(k, append(e[1:9:9], e[9:len(e)-1]...))
	if _, err := ParseReply([]byte(strings.Join(e, " ")), k, testNonce); err == nil {
		t.Fatal("an extended reply under the legacy MAC verified")
	}
}
