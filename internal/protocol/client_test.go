package protocol

import (
	"bufio"
	"bytes"
	"context"
	"errors"
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

func newClient(t *testing.T, addr string) *Client {
	t.Helper()
	c, err := NewClient(ClientConfig{Addr: addr, Key: testFleet(t), Agent: "web1"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func doWith(t *testing.T, addr string, timeout time.Duration) (Reply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return newClient(t, addr).Do(ctx, VerbRestart, "demo", "4711")
}

func TestClientRefusesForgedReply(t *testing.T) {
	k := testKey(t)
	other := Key{Kind: HostKey, ID: "fleet1", Agent: "web1", Secret: bytes.Repeat([]byte{9}, SecretBytes)}
	web2, _ := testFleet(t).ForAgent("web2")
	for _, tt := range []struct {
		name  string
		reply func(Request) []byte
	}{
		{"unsigned ok", func(Request) []byte { return []byte("SH2 - ok - -1 0 0 - - -\n") }},
		{"ok for another request", func(Request) []byte { return MarshalReply(Reply{Outcome: OutcomeOK}, &k, strings.Repeat("a", 32)) }},
		{"ok signed with another key", func(r Request) []byte { return MarshalReply(Reply{Outcome: OutcomeOK}, &other, r.Nonce) }},
		{"ok from another agent of the fleet", func(r Request) []byte { return MarshalReply(Reply{Outcome: OutcomeOK}, &web2, r.Nonce) }},
		{"garbage", func(Request) []byte { return []byte("HTTP/1.0 200 OK\n") }},
		{"no newline", func(Request) []byte { return []byte("SH2 web1 ok") }},
		{"closed without reply", func(Request) []byte { return []byte{} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr := fakeAgent(t, tt.reply)
			rep, err := doWith(t, addr, 10*time.Second)
			if err == nil {
				t.Fatalf("accepted %+v", rep)
			}
			// The request reached the agent: it may have acted.
			if !errors.Is(err, ErrNoReply) || errors.Is(err, ErrNotSent) {
				t.Fatalf("error %v is not ErrNoReply", err)
			}
		})
	}
	// The genuine reply and a plain denial are replies, not errors.
	addr := fakeAgent(t, func(r Request) []byte {
		if !r.Verify(k) {
			return nil
		}
		if r.Fault != "4711" || r.Agent != "web1" {
			return nil
		}
		return MarshalReply(Reply{Outcome: OutcomeFailed, Origin: OriginRun, ExitCode: 3, Output: "x"}, &k, r.Nonce)
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
	if _, err := doWith(t, dead, 10*time.Second); !errors.Is(err, ErrNotSent) {
		t.Fatalf("dial to a closed port: %v, want ErrNotSent", err)
	}
	// Silent agent: Do returns when the context ends, not later.
	addr := fakeAgent(t, func(Request) []byte { return nil })
	start := time.Now()
	_, err := doWith(t, addr, 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "deadline") || !errors.Is(err, ErrNoReply) {
		t.Fatalf("silent agent: %v", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("Do outlived its context by far: %s", el)
	}
	// Invalid input is refused before dialling.
	c := newClient(t, addr)
	for _, svc := range []string{"", "../x", "demo;id", "Demo"} {
		if _, err := c.Do(context.Background(), VerbRestart, svc, "1"); err == nil {
			t.Errorf("service %q accepted", svc)
		}
	}
	for _, fault := range []string{"a b", "x;y", ":1", "F1"} {
		if _, err := c.Do(context.Background(), VerbRestart, "demo", fault); err == nil {
			t.Errorf("fault %q accepted", fault)
		}
	}
	if _, err := c.Do(context.Background(), Verb("reboot"), "demo", ""); err == nil {
		t.Error("unknown verb accepted")
	}
	// A host key cannot make a client for another agent.
	if _, err := NewClient(ClientConfig{Addr: addr, Key: testKey(t), Agent: "web2"}); err == nil {
		t.Error("web1's host key made a client for web2")
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
