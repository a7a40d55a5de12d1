package main

// Attacks on the agent's promises by a local user (uid 65534) and by
// peers on loopback, against the real binary. Each test first shows the
// rig working (the action runs when it should), then the attack failing.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/testutil"
	"github.com/selfheal/selfheal/internal/protocol"
)

// withRestart points the demo service's restart at argv.
func (e *env) withRestart(argv ...string) {
	e.t.Helper()
	c := e.config(e.keyPath)
	a := c.Services[0].Actions["restart"]
	a.Argv = argv
	c.Services[0].Actions["restart"] = a
	if err := c.Write(e.cfg); err != nil {
		e.t.Fatal(err)
	}
}

// waitAudit waits (bounded) until the audit log holds s.
func waitAudit(t *testing.T, e *env, s string) {
	t.Helper()
	p := filepath.Join(e.dir, "audit.log")
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(readFile(p), s); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the audit log never said %q:\n%s", s, readFile(p))
		}
	}
}

// TestTrustShebangInterpreter: an action's script, root's, starts with
// "#!INTERP": the kernel runs INTERP as root as surely as the script. An
// interpreter a stranger owns, or one in his directory (which he makes a
// script that leaves a mark, then runs /bin/sh) is refused at start and, handed over after start, at the
// next run. The same interpreter, root's, runs.
func TestTrustShebangInterpreter(t *testing.T) {
	requireRoot(t)
	setup := func(t *testing.T) (*env, string, string) {
		e := newEnv(t)
		tools := filepath.Join(e.dir, "tools")
		if err := os.Mkdir(tools, 0o755); err != nil {
			t.Fatal(err)
		}
		interp := filepath.Join(tools, "sh")
		if err := os.WriteFile(interp, []byte("#!/bin/sh\nexec /bin/sh \"$@\"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		script := filepath.Join(e.dir, "shebang.sh")
		if err := os.WriteFile(script, []byte("#! "+interp+" -e\necho ran >> \"$MARK\"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		e.withRestart(script)
		return e, interp, tools
	}
	t.Run("root's interpreter runs", func(t *testing.T) {
		e, _, _ := setup(t)
		d := startServe(t, e, false)
		if rep, err := doFault(t, d.Addr, e.key, protocol.VerbRestart, "demo", "1"); err != nil || rep.Outcome != protocol.OutcomeOK || e.marks("mark") != 1 {
			t.Fatalf("restart: %+v %v (%d marks)", rep, err, e.marks("mark"))
		}
	})
	// evil is what the stranger makes of the interpreter once he can.
	evil := func(t *testing.T, interp string) {
		t.Helper()
		os.Remove(interp) // his directory, or his file
		if err := os.WriteFile(interp, []byte("#!/bin/sh\nid >> \""+filepath.Join(filepath.Dir(filepath.Dir(interp)), "evil-mark")+"\"\nexec /bin/sh \"$@\"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		chown(t, interp, stranger)
	}
	for _, c := range []struct {
		name  string
		own   func(t *testing.T, interp, tools string)
		where func(interp, tools string) string
	}{
		{"interpreter owned by a stranger", func(t *testing.T, interp, _ string) { evil(t, interp) },
			func(interp, _ string) string { return fsutil.Quote(interp) + ": owned by uid 65534" }},
		{"interpreter's directory owned by a stranger", func(t *testing.T, interp, tools string) { chown(t, tools, stranger); evil(t, interp) },
			func(_, tools string) string { return fsutil.Quote(tools) + ": owned by uid 65534" }},
	} {
		t.Run(c.name+", at start", func(t *testing.T) {
			e, interp, tools := setup(t)
			c.own(t, interp, tools)
			refused(t, e, "service demo action restart: interpreter of argv[0] "+fsutil.Quote(interp), c.where(interp, tools))
		})
		t.Run(c.name+", after start", func(t *testing.T) {
			e, interp, tools := setup(t)
			d := startServe(t, e, false)
			if rep, err := doFault(t, d.Addr, e.key, protocol.VerbRestart, "demo", "1"); err != nil || rep.Outcome != protocol.OutcomeOK || e.marks("mark") != 1 {
				t.Fatalf("restart before the hand-over: %+v %v", rep, err)
			}
			c.own(t, interp, tools)
			rep, err := doFault(t, d.Addr, e.key, protocol.VerbRestart, "demo", "2")
			if err != nil || rep.Outcome != protocol.OutcomeDenied || rep.Agent != "worker1" {
				t.Fatalf("restart through a stranger's interpreter: %+v %v", rep, err)
			}
			if e.marks("mark") != 1 {
				t.Fatalf("the action ran: %d marks", e.marks("mark"))
			}
			noEvil(t, e)
			waitAudit(t, e, "interpreter of argv[0] ")
			waitAudit(t, e, c.where(interp, tools))
		})
	}
}

// TestThirdPartyClient: a client written from docs/protocol.md alone, in
// Python with its standard library (testdata/thirdparty_client.py): it
// checks the page's test vectors, then, against the real agent, verifies
// every signed reply; the restart runs
// once for its fault (again: recorded), and a replay of its bytes, a skew
// request's bytes replayed (still outside the window, or not), re-ordered
// fields and non-canonical MACs are refused with the one unsigned denied.
func TestThirdPartyClient(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	e := newEnv(t)
	d := startServe(t, e, false)
	host, port, _ := net.SplitHostPort(d.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, filepath.Join("testdata", "thirdparty_client.py"), e.fleetPath, "worker1", host, port,
		filepath.Join(testutil.ModuleRoot(t), "docs", "protocol.md")).CombinedOutput()
	if err != nil {
		t.Fatalf("client: %v\n%s", err, out)
	}
	type step struct {
		Step, Outcome, Origin, Output, Reply string
		Verified, Unsigned                   bool
	}
	got := map[string]step{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var s step
		if err := json.Unmarshal([]byte(l), &s); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		got[s.Step] = s
	}
	signed := func(name string, outcome protocol.Outcome, origin protocol.Origin) {
		t.Helper()
		s := got[name]
		if !s.Verified || s.Outcome != string(outcome) || s.Origin != string(origin) {
			t.Errorf("%s: %+v, want a verified %s %s", name, s, outcome, origin)
		}
	}
	denied := func(name string) {
		t.Helper()
		if s := got[name]; s.Verified || !s.Unsigned || s.Outcome != "denied" {
			t.Errorf("%s: %+v, want the unsigned denied", name, s)
		}
	}
	if v := got["vectors"]; !v.Verified || v.Outcome != "12" {
		t.Errorf("docs/protocol.md's test vectors: %+v, want the host key and 12 MACs verified (6 requests, 6 replies)", v)
	}
	signed("ping", protocol.OutcomeOK, protocol.OriginNone)
	signed("restart", protocol.OutcomeOK, protocol.OriginRun)
	signed("restart-again", protocol.OutcomeOK, protocol.OriginRecorded)
	signed("skew", protocol.OutcomeSkew, protocol.OriginNone)
	for _, n := range []string{"replay-bytes", "skew-replay", "reordered", "uppercase-mac", "crlf"} {
		denied(n)
	}
	if n := e.marks("mark"); n != 1 {
		t.Fatalf("the restart ran %d times, want 1\n%s", n, out)
	}
}

// TestTrustTakenBackWithHeldDescriptor: a script handed to a stranger
// (issue 18's attack), then taken back. While it was his he opened it for
// writing and kept the descriptor: ownership and mode are checked when a
// file is opened, so the descriptor still writes after root owns the file
// again. Taken back as docs/security.md says (a new file renamed over
// it), his descriptor writes to the old inode, which nothing runs; taken
// back in place (chown, rewrite) it writes to the file the agent runs.
func TestTrustTakenBackWithHeldDescriptor(t *testing.T) {
	requireRoot(t)
	for _, inPlace := range []bool{false, true} {
		name := map[bool]string{false: "replaced", true: "chowned back in place"}[inPlace]
		t.Run(name, func(t *testing.T) {
			if inPlace {
				t.Skip("open: a descriptor opened while the file was the stranger's survives chown and chmod; no check of " +
					"the path can see it (he writes and closes before the run). docs/security.md tells the admin to " +
					"replace the file (a new inode), never to chown it back")
			}
			e := newEnv(t)
			d := startServe(t, e, false)
			script := filepath.Join(e.dir, "mark.sh")
			clean := readFile(script)
			chown(t, script, stranger)
			// What he opens while the file is his: this process opens it for
			// him (the test dir is root's 0700) and hands the descriptor to
			// his process, which waits for a line on stdin, then writes.
			f, err := os.OpenFile(script, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			his := exec.CommandContext(ctx, "/bin/sh", "-c", `read go && echo 'id >> "`+filepath.Join(e.dir, "evil-mark")+`"' >&3`)
			his.ExtraFiles = []*os.File{f}
			his.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: stranger, Gid: stranger}}
			stdin, err := his.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := his.Start(); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if inPlace {
				if err := os.WriteFile(script, []byte(clean), 0o755); err != nil {
					t.Fatal(err)
				}
				chown(t, script, 0)
			} else {
				tmp := script + ".new"
				if err := os.WriteFile(tmp, []byte(clean), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(tmp, script); err != nil {
					t.Fatal(err)
				}
			}
			stdin.Write([]byte("go\n"))
			stdin.Close()
			if err := his.Wait(); err != nil {
				t.Fatalf("his write: %v", err)
			}
			if rep, err := doFault(t, d.Addr, e.key, protocol.VerbRestart, "demo", "1"); err != nil || rep.Outcome != protocol.OutcomeOK || e.marks("mark") != 1 {
				t.Fatalf("restart once root has the script back: %+v %v (%d marks)", rep, err, e.marks("mark"))
			}
			noEvil(t, e)
		})
	}
}

// TestFloodsFromAnotherSource: while 127.0.0.2 (inside the allow list)
// attacks for a bounded time with 40 connections each trickling a byte
// every 300 ms (slowloris), 20 connections writing 2 MiB each (oversized
// frames), 500 silent sockets, and, under mTLS, stalled ClientHellos and
// full handshakes without a client certificate, 5 signed restarts from
// 127.0.0.1 each succeed on their first try, and the action ran 5 times.
func TestFloodsFromAnotherSource(t *testing.T) {
	for _, mtls := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "mtls"}[mtls], func(t *testing.T) {
			e := newEnv(t)
			c := e.config(e.keyPath)
			c.Allow = []string{"127.0.0.0/8"}
			var ctls *tls.Config
			if mtls {
				writePKI(t, e.dir)
				p := func(n string) string { return filepath.Join(e.dir, n) }
				c.TLS = &rig.TLS{Cert: p("server.crt"), Key: p("server.key"), ClientCA: p("ca.crt")}
				var err error
				if ctls, err = protocol.ClientTLS(p("ca.crt"), p("client.crt"), p("client.key"), "127.0.0.1"); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Write(e.cfg); err != nil {
				t.Fatal(err)
			}
			d := startServe(t, e, false)
			from := &net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			var wg sync.WaitGroup
			var attacks atomic.Int64
			run := func(n int, f func(net.Conn)) {
				for range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for ctx.Err() == nil {
							conn, err := from.DialContext(ctx, "tcp", d.Addr)
							if err != nil {
								select {
								case <-ctx.Done():
								case <-time.After(50 * time.Millisecond):
								}
								continue
							}
							attacks.Add(1)
							stop := context.AfterFunc(ctx, func() { conn.Close() })
							f(conn)
							stop()
							conn.Close()
						}
					}()
				}
			}
			run(40, func(conn net.Conn) { // slowloris
				for i := 0; i < 1000 && ctx.Err() == nil; i++ {
					if _, err := conn.Write([]byte("S")); err != nil {
						return
					}
					time.Sleep(300 * time.Millisecond)
				}
			})
			junk := make([]byte, 64<<10)
			for i := range junk {
				junk[i] = 'A'
			}
			run(20, func(conn net.Conn) { // oversized frames
				conn.SetWriteDeadline(time.Now().Add(3 * time.Second))
				for range 32 {
					if _, err := conn.Write(junk); err != nil {
						return
					}
				}
			})
			run(5, func(conn net.Conn) { // silent sockets, 100 at a time
				held := []net.Conn{conn}
				for range 99 {
					if c, err := from.DialContext(ctx, "tcp", d.Addr); err == nil {
						held = append(held, c)
					}
				}
				<-ctx.Done()
				for _, c := range held {
					c.Close()
				}
			})
			if mtls {
				run(8, func(conn net.Conn) { // a ClientHello, then nothing
					tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
					hctx, hcancel := context.WithTimeout(ctx, 200*time.Millisecond)
					tc.HandshakeContext(hctx)
					hcancel()
				})
				run(4, func(conn net.Conn) { // full handshakes, no client certificate
					tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
					tc.Handshake()
					tc.Write([]byte("x"))
				})
			}
			defer func() { cancel(); wg.Wait() }()
			for deadline := time.Now().Add(10 * time.Second); attacks.Load() < 100; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the attack never got going: %d", attacks.Load())
				}
			}
			for i := range 5 {
				cl, err := protocol.NewClient(protocol.ClientConfig{Addr: d.Addr, Key: e.fleet, Agent: "worker1", TLS: ctls})
				if err != nil {
					t.Fatal(err)
				}
				rctx, rcancel := context.WithTimeout(context.Background(), 20*time.Second)
				rep, err := cl.Do(rctx, protocol.VerbRestart, "demo", "flood-"+strconv.Itoa(i))
				rcancel()
				if err != nil || rep.Outcome != protocol.OutcomeOK || rep.Origin != protocol.OriginRun {
					t.Errorf("restart %d under the floods (%d attack connections so far): %+v %v", i, attacks.Load(), rep, err)
				}
			}
			t.Logf("%d attack connections from 127.0.0.2", attacks.Load())
			if n := e.marks("mark"); n != 5 {
				t.Errorf("the action ran %d times, want 5", n)
			}
		})
	}
}

// TestOneByteChurn: a local user on the monitoring node (the handler's
// own address) opens a connection every 10 ms, writes one byte of an
// opening message (of a frame; under mTLS, of a TLS record), and keeps it
// open, silent (200 at a time). No connection of his trickles: each speaks
// once. Before the fix every per-source slot was always held by one of
// his, younger than the idle grace: of 3 handle_worker restarts, one was
// "rate-limited on every try" (14 attempts), the others took 14 and 7
// attempts (16 s and 6 s). Now 5 restarts, plain and mTLS, each ok on its
// first attempt.
func TestOneByteChurn(t *testing.T) {
	for _, mode := range []string{"plain", "mtls", "mtls, a whole ClientHello each"} {
		t.Run(mode, func(t *testing.T) {
			mtls := mode != "plain"
			if mode == "mtls, a whole ClientHello each" {
				t.Skip("open (documented in security.md as not defended): a whole ClientHello per connection, 100 a second, " +
					"each left unanswered, holds the source's slots within the 1 s grace: 3 of 5 restarts ok (one after 12 tries), " +
					"2 unreachable after 13-14 tries")
			}
			e := newEnv(t)
			var tlsArgs []string
			first := []byte("S")
			if mtls {
				writePKI(t, e.dir)
				c := e.config(e.keyPath)
				p := func(n string) string { return filepath.Join(e.dir, n) }
				c.TLS = &rig.TLS{Cert: p("server.crt"), Key: p("server.key"), ClientCA: p("ca.crt")}
				if err := c.Write(e.cfg); err != nil {
					t.Fatal(err)
				}
				tlsArgs = []string{"--tls-ca", p("ca.crt"), "--tls-cert", p("client.crt"), "--tls-key", p("client.key")}
				first = []byte{22}
				if mode == "mtls, a whole ClientHello each" {
					first = clientHello(t)
				}
			}
			d := startServe(t, e, false)
			host, port, _ := net.SplitHostPort(d.Addr)
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			var wg sync.WaitGroup
			var opened atomic.Int64
			wg.Add(1)
			go func() {
				defer wg.Done()
				var ring []net.Conn
				defer func() {
					for _, c := range ring {
						c.Close()
					}
				}()
				tick := time.NewTicker(10 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
					}
					c, err := net.DialTimeout("tcp", d.Addr, time.Second)
					if err != nil {
						continue
					}
					c.Write(first)
					opened.Add(1)
					if ring = append(ring, c); len(ring) > 200 {
						ring[0].Close()
						ring = ring[1:]
					}
				}
			}()
			defer func() { cancel(); wg.Wait() }()
			// Two seconds of churn: every slot is his, each younger than the grace.
			for deadline := time.Now().Add(20 * time.Second); opened.Load() < 200; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the churn never got going: %d", opened.Load())
				}
			}
			hstate := filepath.Join(e.dir, "handler-state")
			if err := os.Mkdir(hstate, 0o700); err != nil {
				t.Fatal(err)
			}
			for i := range 5 {
				rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
				args := append([]string{"send", "restart", "--host", host, "--port", port, "--key-file", e.fleetPath,
					"--agent", "worker1", "--target", "demo", "--deadline", "18s", "--state-dir", hstate}, tlsArgs...)
				out, err := exec.CommandContext(rctx, testutil.Binary(t, "handle_worker"), args...).CombinedOutput()
				rcancel()
				if err != nil || !strings.Contains(string(out), " ok in ") || !strings.Contains(string(out), `"attempts":1,`) {
					t.Errorf("restart %d under the one-byte churn: %v\n%s", i, err, out)
				}
			}
			if n := e.marks("mark"); n != 5 {
				t.Errorf("the action ran %d times, want 5 (%d churn connections)", n, opened.Load())
			}
			t.Logf("%d churn connections", opened.Load())
		})
	}
}

// clientHello is a whole TLS ClientHello record, as crypto/tls writes it.
func clientHello(t *testing.T) []byte {
	a, b := net.Pipe()
	go tls.Client(a, &tls.Config{InsecureSkipVerify: true}).Handshake()
	defer a.Close()
	defer b.Close()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// TestTrustDirHandedOverRace: argv[0] is reached through a symlink
// (/…/bin -> real); after start the directory the link points into is
// handed to a stranger, who swaps his script in and out as fast as he can
// (bounded: 3 s) while 15 signed restarts arrive (the source's burst is 20): none runs his script,
// and none runs at all (the directory is his: every run is refused).
func TestTrustDirHandedOverRace(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	real := filepath.Join(e.dir, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	clean := readFile(filepath.Join(e.dir, "mark.sh"))
	if err := os.WriteFile(filepath.Join(real, "run.sh"), []byte(clean), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", filepath.Join(e.dir, "bin")); err != nil {
		t.Fatal(err)
	}
	e.withRestart(filepath.Join(e.dir, "bin", "run.sh"))
	d := startServe(t, e, false)
	if rep, err := doFault(t, d.Addr, e.key, protocol.VerbRestart, "demo", "0"); err != nil || rep.Outcome != protocol.OutcomeOK || e.marks("mark") != 1 {
		t.Fatalf("restart before the hand-over: %+v %v", rep, err)
	}
	chown(t, real, stranger)
	evil := attackerScript(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // what he does in his directory: swap by rename, evil and clean
		defer wg.Done()
		b, _ := os.ReadFile(evil)
		for i := 0; ctx.Err() == nil && i < 100000; i++ {
			body := []byte(clean)
			if i%2 == 0 {
				body = b
			}
			tmp := filepath.Join(real, "tmp")
			if os.WriteFile(tmp, body, 0o755) == nil {
				os.Lchown(tmp, stranger, stranger)
				os.Rename(tmp, filepath.Join(real, "run.sh"))
			}
		}
	}()
	for i := range 15 {
		rep, err := doFault(t, d.Addr, e.key, protocol.VerbRestart, "demo", "r"+strconv.Itoa(i))
		if err != nil || rep.Outcome != protocol.OutcomeDenied || rep.Agent != "worker1" {
			t.Errorf("restart %d during the swaps: %+v %v", i, rep, err)
		}
	}
	cancel()
	wg.Wait()
	noEvil(t, e)
	if n := e.marks("mark"); n != 1 {
		t.Fatalf("the action ran %d times after the hand-over", n-1)
	}
}

// setACL gives uid rwx on path by a POSIX access ACL (the xattr's binary
// form: version 2, then tag, perm, id per entry), with the mask rwx as
// setfacl sets it: the mode's group bits then show the mask.
func setACL(t *testing.T, path string, uid uint32) {
	t.Helper()
	b := []byte{2, 0, 0, 0}
	entry := func(tag, perm uint16, id uint32) {
		b = append(b, byte(tag), byte(tag>>8), byte(perm), byte(perm>>8), byte(id), byte(id>>8), byte(id>>16), byte(id>>24))
	}
	const undefined = 0xffffffff
	entry(0x01, 7, undefined) // user::rwx
	entry(0x02, 7, uid)       // user:UID:rwx
	entry(0x04, 5, undefined) // group::r-x
	entry(0x10, 7, undefined) // mask::rwx
	entry(0x20, 5, undefined) // other::r-x
	if err := syscall.Setxattr(path, "system.posix_acl_access", b, 0); err != nil {
		t.Skipf("no POSIX ACLs here: %v", err)
	}
}

// TestTrustACLAfterStart: after start, an ACL entry gives a stranger
// write on the action's script (mode still reads root's 0755 to a
// careless eye); he appends his line. The next restart is refused: the
// ACL's mask shows in the mode's group bits.
func TestTrustACLAfterStart(t *testing.T) {
	requireRoot(t)
	e := newEnv(t)
	d := startServe(t, e, false)
	if rep, err := doFault(t, d.Addr, e.key, protocol.VerbRestart, "demo", "1"); err != nil || rep.Outcome != protocol.OutcomeOK || e.marks("mark") != 1 {
		t.Fatalf("restart before the ACL: %+v %v", rep, err)
	}
	script := filepath.Join(e.dir, "mark.sh")
	setACL(t, script, stranger)
	f, err := os.OpenFile(script, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	// What he can now write (this process writes it for him: the test
	// dir is root's 0700).
	f.WriteString("id >> \"" + filepath.Join(e.dir, "evil-mark") + "\"\n")
	f.Close()
	rep, err := doFault(t, d.Addr, e.key, protocol.VerbRestart, "demo", "2")
	if err != nil || rep.Outcome != protocol.OutcomeDenied || rep.Agent != "worker1" {
		t.Fatalf("restart of a script with a stranger's ACL: %+v %v", rep, err)
	}
	noEvil(t, e)
	waitAudit(t, e, "argv[0] "+script+": writable by group")
}
