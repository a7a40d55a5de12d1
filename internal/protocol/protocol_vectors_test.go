package protocol_test

// The test vectors of docs/protocol.md ("Test vectors"), read from the
// document itself, so that what a third-party client is checked against is
// what the code does. Each MAC is also recomputed here from the frame's
// fields by the formula the document states, with crypto/hmac alone.

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/protocol"
)

// vector is one group of "name: value" lines of the block.
type vector map[string]string

// readVectors returns the document's key lines and its vectors, in order.
func readVectors(t *testing.T) (keys vector, vs []vector) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "protocol.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := bytes.Cut(b, []byte("\n## Test vectors\n"))
	if !ok {
		t.Fatal("docs/protocol.md has no \"## Test vectors\" section")
	}
	_, block, ok := bytes.Cut(after, []byte("\n```text\n"))
	block, _, ok2 := bytes.Cut(block, []byte("\n```\n"))
	if !ok || !ok2 {
		t.Fatal("the test vectors section has no ```text block")
	}
	cur := vector{}
	flush := func() {
		if len(cur) == 0 {
			return
		}
		if keys == nil {
			keys = cur
		} else {
			vs = append(vs, cur)
		}
		cur = vector{}
	}
	sc := bufio.NewScanner(bytes.NewReader(block))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			flush()
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, ": ")
		if !ok {
			t.Fatalf("vector line without \"name: value\": %q", line)
		}
		cur[name] = strings.TrimLeft(val, " ")
	}
	flush()
	if len(vs) == 0 {
		t.Fatal("no test vectors")
	}
	return keys, vs
}

// unquote reads a MAC input, written as a JSON string.
func unquote(t *testing.T, s string) string {
	t.Helper()
	var v string
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("MAC input %s: %v", s, err)
	}
	return v
}

func hmacHex(secret []byte, msg string) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// TestVectors: the host key derives from the fleet key; each request frame
// verifies and its MAC is HMAC-SHA256 over the stated input, which is the
// documented formula over the frame's fields; each reply parses under the
// host key and the request's nonce, re-encodes to the same bytes, and its
// MAC is likewise the documented formula's; changing any byte of the
// reply breaks it.
func TestVectors(t *testing.T) {
	keys, vs := readVectors(t)
	var fleet, host protocol.Key
	if err := fleet.UnmarshalText([]byte(keys["fleet-key"])); err != nil || fleet.Kind != protocol.FleetKey {
		t.Fatalf("fleet-key %q: %v", keys["fleet-key"], err)
	}
	if err := host.UnmarshalText([]byte(keys["host-key"])); err != nil || host.Kind != protocol.HostKey {
		t.Fatalf("host-key %q: %v", keys["host-key"], err)
	}
	derived, err := fleet.ForAgent(host.Agent)
	if err != nil || !bytes.Equal(derived.Secret, host.Secret) {
		t.Fatalf("host-key is not the fleet key's key for %s (%v)", host.Agent, err)
	}
	if want := hmacHex(fleet.Secret, "selfheal-host-key-v1\n"+host.Agent+"\n"); hex.EncodeToString(host.Secret) != want {
		t.Fatalf("host key secret %x, the documented derivation gives %s", host.Secret, want)
	}
	for _, v := range vs {
		t.Run(v["name"], func(t *testing.T) {
			// The request.
			req, err := protocol.ParseRequest([]byte(v["request"]))
			if err != nil || !req.Verify(host) {
				t.Fatalf("request %q: parse %v, verifies %v", v["request"], err, err == nil && req.Verify(host))
			}
			f := strings.Split(v["request"], " ")
			in := unquote(t, v["request-mac-input"])
			if want := strings.Join(f[:8], "\n") + "\n"; in != want {
				t.Fatalf("request-mac-input %q, the formula over the frame gives %q", in, want)
			}
			if got := hmacHex(host.Secret, in); got != req.MAC {
				t.Fatalf("request MAC %s, HMAC of the input is %s", req.MAC, got)
			}
			if got := string(protocol.NewRequest(host, req.Verb, req.Service, req.Fault, time.Unix(req.Timestamp, 0), req.Nonce).Marshal()); got != v["request"]+"\n" {
				t.Fatalf("the code signs the request as\n%s", got)
			}

			// The reply.
			frame := v["reply"]
			rep, err := protocol.ParseReply([]byte(frame), host, req.Nonce)
			if err != nil {
				t.Fatalf("reply %q: %v", frame, err)
			}
			r := strings.Split(frame, " ")
			in = unquote(t, v["reply-mac-input"])
			want := strings.Join(append([]string{"SH2-reply", host.ID, host.Agent, req.Nonce}, r[2:9]...), "\n") + "\n"
			if r[1] != host.Agent || in != want {
				t.Fatalf("reply-mac-input %q, the formula over the frame gives %q", in, want)
			}
			if got := hmacHex(host.Secret, in); got != r[9] {
				t.Fatalf("reply MAC %s, HMAC of the input is %s", r[9], got)
			}
			if got := string(protocol.MarshalReply(rep, &host, req.Nonce)); got != frame+"\n" {
				t.Fatalf("the code signs the reply as\n%s", got)
			}
			if v["output"] != "" && unquote(t, v["output"]) != rep.Output {
				t.Fatalf("output %q, the vector says %s", rep.Output, v["output"])
			}
			// Any other nonce, or a changed field, fails.
			if _, err := protocol.ParseReply([]byte(frame), host, strings.Repeat("0", 32)); err == nil {
				t.Fatal("the reply verifies for another request's nonce")
			}
			bad := []byte(frame)
			bad[len("SH2 "+host.Agent+" ")] ^= 1
			if _, err := protocol.ParseReply(bad, host, req.Nonce); err == nil {
				t.Fatal("a changed outcome verifies")
			}
		})
	}
}

// TestPrintVectors prints the vectors block from its fixed inputs, as the
// code encodes and signs them, for whoever changes the wire format:
// SELFHEAL_PRINT_VECTORS=1 go test -run TestPrintVectors -v ./internal/protocol.
// Check what it prints (TestVectors recomputes every MAC by the documented
// formulas) before pasting it into docs/protocol.md.
func TestPrintVectors(t *testing.T) {
	if os.Getenv("SELFHEAL_PRINT_VECTORS") == "" {
		t.Skip("SELFHEAL_PRINT_VECTORS not set")
	}
	secret := make([]byte, protocol.SecretBytes)
	for i := range secret {
		secret[i] = byte(i)
	}
	fleet := protocol.Key{Kind: protocol.FleetKey, ID: "fleet1", Secret: secret}
	host, _ := fleet.ForAgent("web1")
	fk, _ := fleet.MarshalText()
	hk, _ := host.MarshalText()
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	var b strings.Builder
	b.WriteString("fleet-key: " + string(fk) + "host-key: " + string(hk))
	for _, v := range []struct {
		name       string
		verb       protocol.Verb
		svc, fault string
		ts         int64
		nonce      string
		rep        protocol.Reply
	}{
		{"restart-ok-run", protocol.VerbRestart, "demo", "4711", 1764024000, "9f0c4b1e6a3d2c58e7f1a0b9c8d7e6f5",
			protocol.Reply{Outcome: protocol.OutcomeOK, Origin: protocol.OriginRun, Duration: 48213 * time.Microsecond, AgentTime: time.UnixMilli(1764024000051),
				Budget: protocol.Budget{Used: 1, Max: 3, Window: time.Hour, RetryAfter: 120 * time.Second}, Output: "restarted (pid 4212)"}},
		{"restart-skew", protocol.VerbRestart, "demo", "4712", 1764024062, "27aa5e0c913f4b8d6a2e7c1f0b9d8e3a",
			protocol.Reply{Outcome: protocol.OutcomeSkew, Origin: protocol.OriginNone, ExitCode: -1, AgentTime: time.UnixMilli(1764024000420),
				Output: "clock skew: the request's time is outside the agent's replay window"}},
		{"ping", protocol.VerbPing, "", "", 1764024000, "00112233445566778899aabbccddeeff",
			protocol.Reply{Outcome: protocol.OutcomeOK, Origin: protocol.OriginNone, AgentTime: time.UnixMilli(1764024000007), Output: "worker_listener 1.0.0"}},
	} {
		req := strings.TrimSuffix(string(protocol.NewRequest(host, v.verb, v.svc, v.fault, time.Unix(v.ts, 0), v.nonce).Marshal()), "\n")
		rep := strings.TrimSuffix(string(protocol.MarshalReply(v.rep, &host, v.nonce)), "\n")
		f, r := strings.Split(req, " "), strings.Split(rep, " ")
		fmt.Fprintf(&b, "\nname: %s\nrequest: %s\nrequest-mac-input: %s\nreply: %s\nreply-mac-input: %s\noutput: %s\n", v.name, req,
			q(strings.Join(f[:8], "\n")+"\n"), rep, q(strings.Join(append([]string{"SH2-reply", host.ID, host.Agent, v.nonce}, r[2:len(r)-1]...), "\n")+"\n"), q(v.rep.Output))
	}
	t.Log("\n" + b.String())
}
