package listener

import (
	"bytes"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/proc"
	"github.com/selfheal/selfheal/internal/protocol"
)

// processGone: no such process, or only a zombie awaiting its reaper.
func processGone(pid int) bool { return !proc.Alive(pid) }

// TestHostileInput sends each hostile frame to a real listener and checks
// the generic denial, the precise reason in the audit log, and that no
// action ran.
func TestHostileInput(t *testing.T) {
	h := newHarness(t, opts{})
	now := time.Now()
	ts := strconv.FormatInt(now.Unix(), 10)
	nonce := func() string { n, _ := protocol.NewNonce(); return n }
	valid := func() []byte { return h.valid(protocol.VerbRestart, "demo", now) }
	setByte := func(b []byte, i int, c byte) []byte { b = bytes.Clone(b); b[i] = c; return b }

	otherFleet, _ := protocol.GenerateFleetKey("fleet1")
	other, _ := otherFleet.ForAgent("worker1")
	wrongKey := protocol.NewRequest(other, protocol.VerbRestart, "demo", "-", now, nonce()).Marshal()
	intruder, _ := protocol.GenerateFleetKey("intruder")
	unknownID, _ := intruder.ForAgent("worker1")
	// This agent's own key, signing for another agent's name.
	forWorker2 := signedFrame(h.key, "fleet1", "worker2", "restart", "demo", "-", ts, nonce())
	fault := func(f string) []byte {
		return signedFrame(h.key, "fleet1", "worker1", "restart", "demo", f, ts, nonce())
	}

	tests := []struct {
		name   string
		frame  []byte
		reason string // in the audit log
		reply  string // "" = any of denied or closed (when the agent reset us); "skew" = a signed skew reply
	}{
		{"oversized frame", append(bytes.Repeat([]byte("a"), 4000), '\n'), "frame too long", deniedLine},
		{"100 MiB without newline", bytes.Repeat([]byte("x"), 100<<20), "frame too long", ""},
		{"NUL byte", setByte(valid(), 20, 0), "malformed frame", deniedLine},
		{"NUL in service", h.signed("fleet1", "restart", "demo\x00x", ts, nonce()), "malformed frame", deniedLine},
		{"CRLF line end", append(bytes.TrimSuffix(valid(), []byte("\n")), '\r', '\n'), "malformed frame", deniedLine},
		{"CRLF injected in service", h.signed("fleet1", "restart", "demo\r\nSH2 x", ts, nonce()), "malformed frame", deniedLine},
		{"pipelined second command", append(valid(), valid()...), "pipelined", deniedLine},
		{"empty frame", []byte("\n"), "malformed frame", deniedLine},
		{"only version", []byte("SH2\n"), "malformed frame", deniedLine},
		{"short fields", []byte("SH2 fleet1 worker1 restart demo - " + ts + "\n"), "malformed frame", deniedLine},
		{"SH1 frame without agent and fault", []byte("SH1 fleet1 restart demo " + ts + " " + nonce() + " " + strings.Repeat("a", 64) + "\n"), "malformed frame", deniedLine},
		{"empty field", h.signed("fleet1", "restart", "", ts, nonce()), "malformed frame", deniedLine},
		{"no newline then EOF", bytes.TrimSuffix(valid(), []byte("\n")), "not terminated", deniedLine},
		{"timestamp not numeric", h.signed("fleet1", "restart", "demo", "12ab", nonce()), "timestamp", deniedLine},
		{"timestamp negative", h.signed("fleet1", "restart", "demo", "-"+ts, nonce()), "timestamp", deniedLine},
		{"timestamp overflowing", h.signed("fleet1", "restart", "demo", "99999999999999999999999", nonce()), "timestamp", deniedLine},
		{"timestamp int64 max+1", h.signed("fleet1", "restart", "demo", "9223372036854775808", nonce()), "timestamp", deniedLine},
		{"timestamp with plus", h.signed("fleet1", "restart", "demo", "+"+ts, nonce()), "timestamp", deniedLine},
		{"stale timestamp", h.valid(protocol.VerbRestart, "demo", now.Add(-2*time.Minute)), "in the past", "skew"},
		{"future timestamp", h.valid(protocol.VerbRestart, "demo", now.Add(2*time.Minute)), "in the future", "skew"},
		{"int64 max timestamp", h.signed("fleet1", "restart", "demo", "9223372036854775807", nonce()), "in the future", "skew"},
		{"truncated MAC", valid()[:len(valid())-2], "", ""},
		{"truncated MAC with newline", append(valid()[:len(valid())-3], '\n'), "mac", deniedLine},
		{"MAC in upper case", append(bytes.ToUpper(valid()[:len(valid())-65]), append(bytes.ToUpper(valid()[len(valid())-65:len(valid())-1]), '\n')...), "malformed", deniedLine},
		{"MAC only upper case", func() []byte {
			v := valid()
			return append(append(bytes.Clone(v[:len(v)-65]), bytes.ToUpper(v[len(v)-65:len(v)-1])...), '\n')
		}(), "mac", deniedLine},
		{"wrong key", wrongKey, "MAC does not verify", deniedLine},
		{"unknown key id", protocol.NewRequest(unknownID, protocol.VerbRestart, "demo", "-", now, nonce()).Marshal(), "unknown key id", deniedLine},
		{"this agent's key signing for another agent", forWorker2, "request for agent worker2, this is worker1", deniedLine},
		{"another agent's name, unsigned", append(bytes.Replace(valid()[:len(valid())-65], []byte(" worker1 "), []byte(" worker2 "), 1), append([]byte(strings.Repeat("0", 64)), '\n')...), "request for agent worker2, this is worker1", deniedLine},
		{"agent upper case", signedFrame(h.key, "fleet1", "Worker1", "restart", "demo", "-", ts, nonce()), "agent", deniedLine},
		{"agent empty-looking", signedFrame(h.key, "fleet1", "-", "restart", "demo", "-", ts, nonce()), "agent", deniedLine},
		{"fault upper case", fault("F1"), "fault", deniedLine},
		{"fault with a slash", fault("a/b"), "fault", deniedLine},
		{"fault starting with a colon", fault(":1"), "fault", deniedLine},
		{"fault too long", fault(strings.Repeat("f", 65)), "fault", deniedLine},
		{"fault shell metachars", fault("1;id"), "fault", deniedLine},
		{"ping with a fault", signedFrame(h.key, "fleet1", "worker1", "ping", "-", "f1", ts, nonce()), "ping takes service - and fault -", deniedLine},
		{"service shell metachars", h.signed("fleet1", "restart", "demo;touch${IFS}x", ts, nonce()), "service", deniedLine},
		{"service command substitution", h.signed("fleet1", "restart", "$(id)", ts, nonce()), "service", deniedLine},
		{"service backticks", h.signed("fleet1", "restart", "`id`", ts, nonce()), "service", deniedLine},
		{"service pipe", h.signed("fleet1", "restart", "demo|sh", ts, nonce()), "service", deniedLine},
		{"service path traversal", h.signed("fleet1", "restart", "../../bin/sh", ts, nonce()), "service", deniedLine},
		{"service traversal inside", h.signed("fleet1", "restart", "demo/../demo", ts, nonce()), "service", deniedLine},
		{"service option injection", h.signed("fleet1", "restart", "--help", ts, nonce()), "service", deniedLine},
		{"service short option", h.signed("fleet1", "restart", "-rf", ts, nonce()), "service", deniedLine},
		// Ten fields read as the extended form (service demo, fault x,
		// since -), whose MAC this is not.
		{"service with space", h.signed("fleet1", "restart", "demo x", ts, nonce()), "MAC does not verify", deniedLine},
		{"service not configured", h.signed("fleet1", "restart", "nosuch", ts, nonce()), "unknown service", deniedLine},
		{"service upper case", h.signed("fleet1", "restart", "DEMO", ts, nonce()), "service", deniedLine},
		{"unknown verb", h.signed("fleet1", "reboot", "demo", ts, nonce()), "verb", deniedLine},
		{"verb upper case", h.signed("fleet1", "RESTART", "demo", ts, nonce()), "verb", deniedLine},
		{"confusable cyrillic e", h.signed("fleet1", "restart", "d\u0435mo", ts, nonce()), "service", deniedLine},
		{"confusable fullwidth", h.signed("fleet1", "restart", "\uff44emo", ts, nonce()), "service", deniedLine},
		{"zero-width space", h.signed("fleet1", "restart", "demo\u200b", ts, nonce()), "service", deniedLine},
		{"confusable key id", h.signed("fl\u0435et1", "restart", "demo", ts, nonce()), "key id", deniedLine},
		{"wrong protocol version", bytes.Replace(valid(), []byte("SH2"), []byte("SH1"), 1), "version", deniedLine},
		{"nonce upper case", h.signed("fleet1", "restart", "demo", ts, strings.ToUpper(nonce())), "nonce", deniedLine},
		{"seed-style plain command", []byte("foo-restart\n"), "malformed", deniedLine},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := strings.Count(h.audit.String(), "\n")
			got := h.raw(tt.frame)
			if tt.reply == "skew" {
				// Authentic but out of the window: a signed skew with the agent's time.
				nonce := strings.Fields(string(tt.frame))[7]
				rep, err := protocol.ParseReply([]byte(strings.TrimSuffix(got, "\n")), h.key, nonce)
				if err != nil || rep.Outcome != protocol.OutcomeSkew || time.Since(rep.AgentTime).Abs() > 5*time.Second {
					t.Errorf("reply %q (%+v, %v), want a signed skew", got, rep, err)
				}
			} else if tt.reply != "" && got != tt.reply {
				t.Errorf("reply %q, want %q", got, tt.reply)
			}
			if tt.reply == "" && got != "" && got != deniedLine {
				t.Errorf("reply %q, want denied or nothing", got)
			}
			if n := h.marks("demo"); n != 0 {
				t.Fatalf("an action ran (%d marks)", n)
			}
			outcome := protocol.OutcomeDenied
			if tt.reply == "skew" {
				outcome = protocol.OutcomeSkew
			}
			waitAuditOutcome(t, h, before, outcome, tt.reason)
		})
	}
	// Still serving, and the very same action does run for a valid request.
	rep, err := h.do(protocol.VerbRestart, "demo")
	if err != nil || rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("valid restart after the hostile table: %+v %v", rep, err)
	}
	if h.marks("demo") != 1 {
		t.Fatalf("valid restart did not run")
	}
	if strings.Contains(h.audit.String(), "\"mac\"") {
		t.Error("audit log holds a MAC field")
	}
	// No MAC that was actually sent (nor a 16-digit prefix of one) reaches the log.
	audit := strings.ToLower(h.audit.String())
	macs := 0
	for _, tt := range tests {
		for _, f := range strings.Fields(string(tt.frame)) {
			if len(f) >= 64 && strings.Trim(strings.ToLower(f), "0123456789abcdef") == "" {
				macs++
				if strings.Contains(audit, strings.ToLower(f[:16])) {
					t.Errorf("audit log holds the MAC of %q", tt.name)
				}
			}
		}
	}
	if macs < 10 {
		t.Fatalf("only %d sent MACs found to look for", macs)
	}
}

// TestBitFlips flips every bit of a valid frame, one at a time: each
// variant must be denied and nothing may run.
func TestBitFlips(t *testing.T) {
	h := newHarness(t, opts{})
	frame := h.valid(protocol.VerbRestart, "demo", time.Now())
	for i := range frame {
		for bit := 0; bit < 8; bit++ {
			f := bytes.Clone(frame)
			f[i] ^= 1 << bit
			if got := h.raw(f); got != deniedLine && got != "" {
				t.Fatalf("byte %d bit %d: reply %q", i, bit, got)
			}
		}
	}
	if n := h.marks("demo"); n != 0 {
		t.Fatalf("a flipped frame ran the action (%d marks)", n)
	}
	// The unflipped frame is still good: the flips were refused for their
	// flips, not because the frame was bad to begin with.
	if got := h.raw(frame); !strings.HasPrefix(got, okPrefix) {
		t.Fatalf("original frame: %q", got)
	}
	if h.marks("demo") != 1 {
		t.Fatal("original frame did not run")
	}
}

// TestReplay covers a replay inside the window, a nonce reused with
// another verb, and a replay after a restart of the agent.
func TestReplay(t *testing.T) {
	h := newHarness(t, opts{})
	n, _ := protocol.NewNonce()
	frame := protocol.NewRequest(h.key, protocol.VerbRestart, "demo", "-", time.Now(), n).Marshal()
	if got := h.raw(frame); !strings.HasPrefix(got, okPrefix) {
		t.Fatalf("first send: %q", got)
	}
	if h.marks("demo") != 1 {
		t.Fatal("first send did not run")
	}
	t.Run("replay inside the window", func(t *testing.T) {
		before := strings.Count(h.audit.String(), "\n")
		if got := h.raw(frame); got != deniedLine {
			t.Fatalf("replay: %q", got)
		}
		waitAudit(t, h, before, "replayed nonce")
	})
	t.Run("reused nonce with another verb", func(t *testing.T) {
		before := strings.Count(h.audit.String(), "\n")
		stop := protocol.NewRequest(h.key, protocol.VerbStop, "demo", "-", time.Now(), n).Marshal()
		if got := h.raw(stop); got != deniedLine {
			t.Fatalf("reused nonce: %q", got)
		}
		waitAudit(t, h, before, "replayed nonce")
	})
	t.Run("replay after a restart of the agent", func(t *testing.T) {
		h.shutdown()
		h.start()
		before := strings.Count(h.audit.String(), "\n")
		if got := h.raw(frame); got != deniedLine {
			t.Fatalf("replay after restart: %q", got)
		}
		waitAudit(t, h, before, "replayed nonce")
		// A fresh request to the restarted agent works.
		if rep, err := h.do(protocol.VerbRestart, "demo"); err != nil || rep.Outcome != protocol.OutcomeOK {
			t.Fatalf("fresh request: %+v %v", rep, err)
		}
	})
	if got := h.marks("demo"); got != 2 {
		t.Fatalf("marks = %d, want 2 (the first send and the fresh request)", got)
	}
}

// TestAllowList: a source outside the list is denied before anything is
// read; IPv4-mapped IPv6 peers match their IPv4 entries.
func TestAllowList(t *testing.T) {
	h := newHarness(t, opts{allow: []string{"127.0.0.1/32"}})
	c := h.client()
	c.SetLocalAddr(&net.TCPAddr{IP: net.ParseIP("127.0.0.3")})
	before := strings.Count(h.audit.String(), "\n")
	rep, err := c.Do(t.Context(), protocol.VerbRestart, "demo", "-")
	if err != nil || rep.Outcome != protocol.OutcomeDenied {
		t.Fatalf("from 127.0.0.3: %+v %v", rep, err)
	}
	waitAudit(t, h, before, "source not in allow list")
	if h.marks("demo") != 0 {
		t.Fatal("action ran for a source not on the allow list")
	}
	for _, tt := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1", true}, {"::ffff:127.0.0.1", true}, {"127.0.0.2", false}, {"::1", false}, {"::ffff:127.0.0.2", false},
	} {
		if got := h.cfg.Allowed(mustAddr(t, tt.addr)); got != tt.want {
			t.Errorf("Allowed(%s) = %v", tt.addr, got)
		}
	}
}

// A dual-stack socket sees IPv4 peers as ::ffff:a.b.c.d; they must match
// the IPv4 allow entry (and nothing else must).
func TestAllowListDualStack(t *testing.T) {
	h := newHarness(t, opts{allow: []string{"127.0.0.1/32"}})
	ln, err := net.Listen("tcp", "[::]:0")
	if err != nil {
		t.Skipf("no dual-stack IPv6 socket here: %v", err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Go reports such a peer as a 16-byte IPv4-mapped address.
			if ip := c.RemoteAddr().(*net.TCPAddr).IP; len(ip) != net.IPv6len {
				t.Errorf("peer IP has %d bytes", len(ip))
			}
			h.srv.ServeConn(c)
		}
	}()
	c := newClient(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), h.fleet, h.agent, nil)
	rep, err := c.Do(t.Context(), protocol.VerbRestart, "demo", "-")
	if err != nil || rep.Outcome != protocol.OutcomeOK {
		t.Fatalf("IPv4 peer on a dual-stack socket: %+v %v", rep, err)
	}
	if h.marks("demo") != 1 {
		t.Fatal("action did not run")
	}
}
