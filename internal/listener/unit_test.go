package listener

import (
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/protocol"
)

// TestParseConfig: defaults are applied, and each invalid field is
// refused with a message naming it.
func TestParseConfig(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "k.key")
	k, _ := protocol.GenerateKey("nagios1")
	if err := protocol.WriteKeyFile(key, k); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "a.sh")
	os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755)
	base := "keys: [" + key + "]\nallow: [\"10.0.0.0/8\", \"::ffff:192.168.0.0/112\", 127.0.0.1]\nstate_dir: " + dir + "/s\nservices:\n  demo:\n    actions:\n      restart: {argv: [" + bin + "]}\n"
	c, err := Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	a := c.Services["demo"].Actions["restart"]
	if c.Listen != DefaultListen || c.ReplayWindow != time.Minute || c.Limits != DefaultLimits || a.Timeout != DefaultActionTimeout || a.Dir != "/" {
		t.Fatalf("defaults not applied: %+v %+v", c, a)
	}
	if len(a.env) != 1 || !strings.HasPrefix(a.env[0], "PATH=") {
		t.Fatalf("env %q: want only a default PATH", a.env)
	}
	for addr, want := range map[string]bool{"10.1.2.3": true, "::ffff:10.1.2.3": true, "192.168.7.7": true, "127.0.0.1": true, "127.0.0.2": false, "11.0.0.1": false} {
		if got := c.Allowed(mustAddr(t, addr)); got != want {
			t.Errorf("Allowed(%s) = %v", addr, got)
		}
	}
	for _, tt := range []struct{ name, from, to, want string }{
		{"env with =", "{argv: [" + bin + "]}", "{argv: [" + bin + "], env: {\"A=B\": x}}", "env"},
		{"negative timeout", "{argv: [" + bin + "]}", "{argv: [" + bin + "], timeout: -1s}", "timeout"},
		{"huge timeout", "{argv: [" + bin + "]}", "{argv: [" + bin + "], timeout: 1h}", "timeout"},
		{"missing dir", "{argv: [" + bin + "]}", "{argv: [" + bin + "], dir: /nonexistent}", "dir"},
		{"empty argv", "{argv: [" + bin + "]}", "{argv: []}", "argv is empty"},
		{"unknown action", "restart:", "reboot:", "unknown action"},
		{"ping action", "restart:", "ping:", "unknown action"},
		{"bad cidr", "10.0.0.0/8", "10.0.0.0/33", "not a CIDR"},
		{"no keys", "keys: [" + key + "]", "keys: []", "keys"},
		{"relative state_dir", "state_dir: " + dir + "/s", "state_dir: s", "absolute"},
		{"no state_dir", "state_dir: " + dir + "/s", "", "state_dir is required"},
		{"tiny replay window", "services:", "replay_window: 10ms\nservices:", "replay_window"},
		{"slowloris-friendly read timeout", "services:", "limits: {read_timeout: 1h}\nservices:", "read_timeout 1h0m0s is above the maximum"},
		{"unknown user", "{argv: [" + bin + "]}", "{argv: [" + bin + "], user: no-such-user-xyz}", "no-such-user-xyz"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(strings.Replace(base, tt.from, tt.to, 1)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("want error with %q, got %v", tt.want, err)
			}
		})
	}
}

// TestNonceCache: persistence, expiry of old entries on load, a torn last
// line, compaction, and the lock between two caches on one directory.
func TestNonceCache(t *testing.T) {
	dir := t.TempDir()
	now := time.Unix(1_700_000_000, 0)
	c, err := OpenNonceCache(dir, time.Minute, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenNonceCache(dir, time.Minute, now, 0); err == nil {
		t.Fatal("two caches on one state_dir")
	}
	old, fresh := strings.Repeat("a", 32), strings.Repeat("b", 32)
	if err := c.Use(old, now.Unix()-50, now); err != nil {
		t.Fatal(err)
	}
	if err := c.Use(fresh, now.Unix(), now); err != nil {
		t.Fatal(err)
	}
	if err := c.Use(fresh, now.Unix(), now); err != ErrReplay {
		t.Fatalf("replay: %v", err)
	}
	c.Close()
	f, _ := os.OpenFile(filepath.Join(dir, "nonces"), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("17000000") // torn line, as after a crash mid-write
	f.Close()
	// 20 s later "old" (ts now-50) has left the 60 s window; "fresh" has not.
	later := now.Add(20 * time.Second)
	c, err = OpenNonceCache(dir, time.Minute, later, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Use(fresh, now.Unix(), later); err != ErrReplay {
		t.Fatalf("fresh nonce forgotten across restart: %v", err)
	}
	if _, ok := c.seen[old]; ok {
		t.Fatal("expired nonce kept")
	}
	b, _ := os.ReadFile(filepath.Join(dir, "nonces"))
	if strings.Count(string(b), "\n") != 1 {
		t.Fatalf("not compacted on load: %q", b)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "nonces")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("nonce file mode %v", fi.Mode())
	}
}

func TestRateLimiter(t *testing.T) {
	l := newLimiter()
	lim := Limits{Rate: 2, Burst: 3, MaxConnsPerSource: 2}
	a, b := mustAddr(t, "10.0.0.1"), mustAddr(t, "10.0.0.2")
	now := time.Unix(1000, 0)
	for i := 0; i < 3; i++ {
		ok, _ := l.admit(a, now, lim)
		if i < 2 && !ok {
			t.Fatalf("admit %d refused", i)
		}
		if i == 2 && ok {
			t.Fatal("third concurrent connection admitted")
		}
	}
	l.release(a)
	l.release(a)
	if ok, _ := l.admit(a, now, lim); !ok {
		t.Fatal("third token refused")
	}
	l.release(a)
	if ok, why := l.admit(a, now, lim); ok || !strings.Contains(why, "rate") {
		t.Fatalf("empty bucket admitted: %v %s", ok, why)
	}
	if ok, _ := l.admit(b, now, lim); !ok {
		t.Fatal("another source starved by the first")
	}
	l.release(b)
	if ok, _ := l.admit(a, now.Add(600*time.Millisecond), lim); !ok {
		t.Fatal("bucket did not refill at 2/s")
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"ok\n":                 "ok",
		"a\x1b[31mb":           "a?[31mb",
		"nul\x00cr\rtab\tend":  "nul?cr?tab\tend",
		"bad \xff utf8":        "bad ? utf8",
		"ünïcode ✓":            "ünïcode ✓",
		"line\u2028sep\u0085x": "line?sep?x",
		"rlo\u202eevil\u2066x": "rlo?evil?x",
	} {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
	tb := &tailBuffer{max: 8}
	tb.Write([]byte("0123456789"))
	tb.Write([]byte("ab"))
	if got := tb.String(); got != "[4 bytes of output dropped]\n456789ab" {
		t.Fatalf("tail %q", got)
	}
}

// As root, an action with user: runs as that user (uid, gid and groups).
func TestActionRunsAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch users")
	}
	dir := t.TempDir()
	key := filepath.Join(dir, "k.key")
	k, _ := protocol.GenerateKey("nagios1")
	protocol.WriteKeyFile(key, k)
	c, err := Parse([]byte("keys: [" + key + "]\nallow: [127.0.0.1]\nstate_dir: " + dir + "/s\nservices:\n  demo:\n    actions:\n      status: {argv: [/usr/bin/id, -u], user: nobody}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := NewExecutor().Run(t.Context(), "demo", protocol.VerbStatus, c.Services["demo"].Actions["status"])
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	if r.Outcome != protocol.OutcomeOK || r.Output != u.Uid {
		t.Fatalf("id -u as nobody: %+v", r)
	}
}
