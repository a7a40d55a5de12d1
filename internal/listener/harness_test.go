package listener

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/protocol"
)

// Scripts the test services run. Each appends to $MARK, so "no action
// ran" is "the mark file does not exist".
var scripts = map[string]string{
	"mark.sh": "#!/bin/sh\necho \"ran $ACTION\" >> \"$MARK\"\necho \"did $ACTION\"\n",
	// Waits (bounded) for $RELEASE before marking: lets a test pile up
	// concurrent requests behind one run.
	"slow.sh": "#!/bin/sh\ni=0\nwhile [ ! -e \"$RELEASE\" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done\necho \"ran $ACTION\" >> \"$MARK\"\n",
	// A child that ignores SIGTERM and never ends; the lead hangs too.
	"hang.sh": "#!/bin/sh\nsh -c 'trap \"\" TERM; echo $$ > \"$CHILDPID\"; while :; do sleep 1; done' &\ntrap '' TERM\nwhile :; do sleep 1; done\n",
	// 1 GiB of output.
	"big.sh": "#!/bin/sh\nhead -c 1073741824 /dev/zero\necho tail-marker\n",
	// Starts a worker the right way: new session, stdio detached.
	"good-daemon.sh": "#!/bin/sh\nsetsid sh -c 'echo $$ > \"$CHILDPID\"; exec sleep 120' </dev/null >/dev/null 2>&1 &\necho started\n",
	// Starts a worker the wrong way: the child keeps the agent's pipe.
	"bad-daemon.sh": "#!/bin/sh\nsh -c 'echo $$ > \"$CHILDPID\"; exec sleep 120' &\necho started\n",
	"fail.sh":       "#!/bin/sh\necho 'no such worker' >&2\nprintf 'esc\\033[31m nul\\000 end\\n'\nexit 4\n",
}

type harness struct {
	t       *testing.T
	dir     string
	key     protocol.Key
	keyPath string
	cfgPath string
	cfg     *Config
	srv     *Server
	addr    string
	audit   *syncBuf
	stop    context.CancelFunc
	done    chan error
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// opts tweak the YAML config text.
type opts struct {
	allow  string
	limits string
	tls    string
	extra  string
	grace  string // shutdown_grace, default 20s
}

func (h *harness) mark(svc string) string { return filepath.Join(h.dir, "mark-"+svc) }

func (h *harness) configYAML(o opts) string {
	if o.allow == "" {
		o.allow = `["127.0.0.1/32", "::1/128"]`
	}
	if o.limits == "" {
		o.limits = "{rate: 100000, burst: 100000, max_conns: 256, max_conns_per_source: 256, read_timeout: 3s}"
	}
	svc := func(name, script string, timeout string) string {
		return fmt.Sprintf(`  %[1]s:
    actions:
      restart: {argv: [%[2]s/%[3]s], timeout: %[4]s, kill_grace: 1s, env: {MARK: %[2]s/mark-%[1]s, ACTION: restart, RELEASE: %[2]s/release, CHILDPID: %[2]s/childpid-%[1]s}}
      stop:    {argv: [%[2]s/%[3]s], timeout: %[4]s, env: {MARK: %[2]s/mark-%[1]s, ACTION: stop, RELEASE: %[2]s/release}}
      start:   {argv: [%[2]s/%[3]s], timeout: %[4]s, env: {MARK: %[2]s/mark-%[1]s, ACTION: start, RELEASE: %[2]s/release}}
`, name, h.dir, script, timeout)
	}
	if o.grace == "" {
		o.grace = "20s"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "listen: 127.0.0.1:0\nkeys: [%s]\nallow: %s\naudit_log: \"-\"\nstate_dir: %s/state\nshutdown_grace: %s\nlimits: %s\n%s%s",
		h.keyPath, o.allow, h.dir, o.grace, o.limits, o.tls, o.extra)
	b.WriteString("services:\n")
	b.WriteString(svc("demo", "mark.sh", "10s"))
	b.WriteString(svc("slow", "slow.sh", "60s"))
	b.WriteString(svc("hang", "hang.sh", "2s"))
	b.WriteString(svc("big", "big.sh", "120s"))
	b.WriteString(svc("good-daemon", "good-daemon.sh", "10s"))
	b.WriteString(svc("bad-daemon", "bad-daemon.sh", "10s"))
	b.WriteString(svc("fail", "fail.sh", "10s"))
	for i := 0; i < 4; i++ {
		b.WriteString(svc(fmt.Sprintf("svc%d", i), "mark.sh", "10s"))
	}
	return b.String()
}

// newHarness writes scripts, a key and a config into a temp dir, and
// starts a real server on 127.0.0.1:0. Cleanup stops it and checks that
// no goroutine was leaked.
func newHarness(t *testing.T, o opts) *harness {
	t.Helper()
	base := runtime.NumGoroutine()
	h := &harness{t: t, dir: t.TempDir(), audit: &syncBuf{}}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(h.dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	k, err := protocol.GenerateKey("nagios1")
	if err != nil {
		t.Fatal(err)
	}
	h.key, h.keyPath = k, filepath.Join(h.dir, "nagios1.key")
	if err := protocol.WriteKeyFile(h.keyPath, k); err != nil {
		t.Fatal(err)
	}
	h.cfgPath = filepath.Join(h.dir, "listener.yaml")
	if err := os.WriteFile(h.cfgPath, []byte(h.configYAML(o)), 0o600); err != nil {
		t.Fatal(err)
	}
	h.start()
	t.Cleanup(func() {
		h.shutdown()
		checkNoLeak(t, base)
		killChildren(t, h.dir)
	})
	return h
}

func (h *harness) start() {
	h.t.Helper()
	cfg, err := Load(h.cfgPath)
	if err != nil {
		b, _ := os.ReadFile(h.cfgPath)
		h.t.Fatalf("%v\n%s", err, b)
	}
	h.cfg = cfg
	srv, err := NewServer(cfg, Deps{Audit: h.audit})
	if err != nil {
		h.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.t.Fatal(err)
	}
	h.srv, h.addr = srv, ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	h.stop, h.done = cancel, make(chan error, 1)
	go func() { h.done <- srv.Serve(ctx, ln) }()
}

// shutdown stops the server (SIGTERM's path) and waits for the drain.
func (h *harness) shutdown() {
	if h.stop == nil {
		return
	}
	h.stop()
	select {
	case <-h.done:
	case <-time.After(60 * time.Second):
		h.t.Error("server did not stop within 60s")
	}
	h.stop = nil
}

func (h *harness) client() *protocol.Client {
	return protocol.NewClient(protocol.ClientConfig{Addr: h.addr, Key: h.key})
}

func (h *harness) do(verb protocol.Verb, svc string) (protocol.Reply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return h.client().Do(ctx, verb, svc)
}

// raw sends bytes on a fresh connection, half-closes, and returns the
// first reply line ("" if the agent closed without one).
func (h *harness) raw(b []byte) string {
	h.t.Helper()
	c, err := net.DialTimeout("tcp", h.addr, 10*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	c.Write(b) // may fail with a reset once the agent gave up: fine
	c.(*net.TCPConn).CloseWrite()
	line, _ := bufio.NewReader(c).ReadString('\n')
	return line
}

// signed builds a frame with arbitrary fields and a correct MAC, so that
// a refusal is about the field, not the signature.
func (h *harness) signed(keyID, verb, svc, ts, nonce string) []byte {
	mac := protocol.RequestMAC(h.key, keyID, protocol.Verb(verb), svc, ts, nonce)
	return []byte(strings.Join([]string{protocol.Version, keyID, verb, svc, ts, nonce, mac}, " ") + "\n")
}

func (h *harness) valid(verb protocol.Verb, svc string, at time.Time) []byte {
	n, err := protocol.NewNonce()
	if err != nil {
		h.t.Fatal(err)
	}
	return protocol.NewRequest(h.key, verb, svc, at, n).Marshal()
}

func (h *harness) marks(svc string) int {
	b, err := os.ReadFile(h.mark(svc))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// checkNoLeak waits (bounded) for the goroutine count to return to base.
func checkNoLeak(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("goroutine leak: %d running, %d before the test\n%s", n, base, buf)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
