package protocol

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAgent answers each connection with reply(request) on 127.0.0.1:0.
func fakeAgent(t *testing.T, reply func(req Request) []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				line, err := ReadFrame(bufio.NewReader(c), MaxRequestFrame)
				if err != nil {
					return
				}
				req, err := ParseRequest(line)
				if err != nil {
					return
				}
				if b := reply(req); b != nil {
					c.Write(b)
				} else {
					// Say nothing until the client gives up.
					c.Read(make([]byte, 1))
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func doWith(t *testing.T, addr string, timeout time.Duration) (Reply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return NewClient(ClientConfig{Addr: addr, Key: testKey(t)}).Do(ctx, VerbRestart, "demo")
}

func TestClientRefusesForgedReply(t *testing.T) {
	k := testKey(t)
	other := Key{ID: "nagios1", Secret: bytes.Repeat([]byte{9}, SecretBytes)}
	for _, tt := range []struct {
		name  string
		reply func(Request) []byte
	}{
		{"unsigned ok", func(Request) []byte { return []byte("SH1 ok 0 10 - -\n") }},
		{"ok for another request", func(Request) []byte { return MarshalReply(Reply{Outcome: OutcomeOK}, &k, strings.Repeat("a", 32)) }},
		{"ok signed with another key", func(r Request) []byte { return MarshalReply(Reply{Outcome: OutcomeOK}, &other, r.Nonce) }},
		{"garbage", func(Request) []byte { return []byte("HTTP/1.0 200 OK\n") }},
		{"no newline", func(Request) []byte { return []byte("SH1 ok") }},
		{"closed without reply", func(Request) []byte { return []byte{} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr := fakeAgent(t, tt.reply)
			if rep, err := doWith(t, addr, 10*time.Second); err == nil {
				t.Fatalf("accepted %+v", rep)
			}
		})
	}
	// The genuine reply and a plain denial are replies, not errors.
	addr := fakeAgent(t, func(r Request) []byte {
		if !r.Verify(k) {
			return nil
		}
		return MarshalReply(Reply{Outcome: OutcomeFailed, ExitCode: 3, Output: "x"}, &k, r.Nonce)
	})
	if rep, err := doWith(t, addr, 10*time.Second); err != nil || rep.Outcome != OutcomeFailed || rep.ExitCode != 3 {
		t.Fatalf("genuine: %+v %v", rep, err)
	}
	addr = fakeAgent(t, func(Request) []byte { return MarshalReply(Reply{Outcome: OutcomeDenied, ExitCode: -1}, nil, "") })
	if rep, err := doWith(t, addr, 10*time.Second); err != nil || rep.Outcome != OutcomeDenied {
		t.Fatalf("denied: %+v %v", rep, err)
	}
}

func TestClientTransportErrors(t *testing.T) {
	// Refused: a port nobody listens on any more.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	if _, err := doWith(t, dead, 10*time.Second); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	// Silent agent: Do returns when the context ends, not later.
	addr := fakeAgent(t, func(Request) []byte { return nil })
	start := time.Now()
	_, err := doWith(t, addr, 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("silent agent: %v", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("Do outlived its context by far: %s", el)
	}
	// Invalid input is refused before dialling.
	c := NewClient(ClientConfig{Addr: addr, Key: testKey(t)})
	for _, svc := range []string{"", "../x", "demo;id", "Demo"} {
		if _, err := c.Do(context.Background(), VerbRestart, svc); err == nil {
			t.Errorf("service %q accepted", svc)
		}
	}
	if _, err := c.Do(context.Background(), Verb("reboot"), "demo"); err == nil {
		t.Error("unknown verb accepted")
	}
}

func TestClientTLSConfig(t *testing.T) {
	if _, err := ClientTLS("", "only-cert.pem", "", ""); err == nil {
		t.Fatal("cert without key accepted")
	}
	if _, err := ClientTLS("/nonexistent/ca.pem", "", "", ""); err == nil {
		t.Fatal("missing CA accepted")
	}
	cfg, err := ClientTLS("", "", "", "agent.example")
	if err != nil || cfg.MinVersion != 0x0304 || cfg.ServerName != "agent.example" {
		t.Fatalf("%+v %v", cfg, err)
	}
}
