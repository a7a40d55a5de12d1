package main

import (
	"bytes"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/testutil"
	"github.com/selfheal/selfheal/internal/protocol"
)

// inetdd stands in for xinetd: it accepts on a loopback port and starts
// one `worker_listener inetd` per connection, the connection on its stdin
// and stdout, all at once: several processes on one state_dir.
type inetdd struct {
	addr string
	log  string // the processes' --log-file
}

func startInetd(t *testing.T, e *env) *inetdd {
	t.Helper()
	bin := testutil.Binary(t, "worker_listener")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &inetdd{addr: ln.Addr().String(), log: filepath.Join(e.dir, "inetd.log")}
	var procs sync.WaitGroup
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f, err := c.(*net.TCPConn).File()
			c.Close()
			if err != nil {
				t.Error(err)
				continue
			}
			cmd := exec.Command(bin, "inetd", "--config", e.cfg, "--log-file", d.log)
			var stderr bytes.Buffer
			cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, &stderr
			err = cmd.Start()
			f.Close()
			if err != nil {
				t.Error(err)
				continue
			}
			procs.Add(1)
			go func() {
				defer procs.Done()
				if err := cmd.Wait(); err != nil {
					t.Errorf("inetd process: %v: %s", err, stderr.String())
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done; procs.Wait() })
	return d
}

// waits counts the processes that logged waiting for svc's lock.
func (d *inetdd) waits(svc string) int {
	n := 0
	for _, l := range strings.Split(readFile(d.log), "\n") {
		if strings.Contains(l, `"service":"`+svc+`"`) && strings.Contains(l, "waiting for the service's lock") {
			n++
		}
	}
	return n
}

func (d *inetdd) waitWaits(t *testing.T, svc string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for d.waits(svc) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d inetd processes wait for %s's lock, want %d:\n%s", d.waits(svc), svc, n, readFile(d.log))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestInetdRestartsRunOnce: 8 concurrent identical restarts, each its own
// worker_listener inetd process on one state_dir, run once, as in serve:
// with one fault, the 7 others get the recorded answer; without a fault
// ("-"), they share the run that had not finished when they arrived.
func TestInetdRestartsRunOnce(t *testing.T) {
	e := newEnv(t)
	d := startInetd(t, e)
	t.Cleanup(func() { e.release("slow"); e.release("slow2") }) // a failed test must not wait 30s
	for _, tc := range []struct {
		svc, fault string
		others     string // the origin of the 7 that did not run
	}{
		{"slow", "4711", "recorded"},
		{"slow2", "-", "joined"},
	} {
		t.Run(tc.svc+" fault "+tc.fault, func(t *testing.T) {
			var wg sync.WaitGroup
			reps := make([]protocol.Reply, 8)
			for i := range reps {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rep, err := doFault(t, d.addr, e.fleet, protocol.VerbRestart, tc.svc, tc.fault)
					if err != nil {
						t.Error(err)
					}
					reps[i] = rep
				}()
			}
			// One runs (and waits for its release); 7 wait for the lock.
			d.waitWaits(t, tc.svc, 7)
			e.release(tc.svc)
			wg.Wait()
			origins := map[protocol.Origin]int{}
			for _, r := range reps {
				if r.Outcome != protocol.OutcomeOK {
					t.Fatalf("reply %+v", r)
				}
				origins[r.Origin]++
			}
			if origins[protocol.OriginRun] != 1 || origins[protocol.Origin(tc.others)] != 7 {
				t.Fatalf("origins %v, want 1 run and 7 %s\n%s\n%s\n%s", origins, tc.others, readFile(filepath.Join(e.dir, "audit.log")), readFile(filepath.Join(e.dir, "state", "services", tc.svc+".json")), readFile(d.log))
			}
			if n, m := e.marks("mark-"+tc.svc+".started"), e.marks("mark-"+tc.svc); n != 1 || m != 1 {
				t.Fatalf("the action started %d times and finished %d times, want once", n, m)
			}
			// Each process answers first and audits after: wait (bounded).
			var c rig.AuditCounts
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				recs, err := rig.ReadAudit(filepath.Join(e.dir, "audit.log"))
				if err != nil {
					t.Fatal(err)
				}
				var mine []rig.AuditRecord
				for _, r := range recs {
					if r.Service == tc.svc {
						mine = append(mine, r)
					}
				}
				if c = rig.CountRestarts(mine); len(mine) >= 8 || time.Now().After(deadline) {
					break
				}
			}
			if c.Run != 1 || c.Run+c.Joined+c.Recorded != 8 {
				t.Fatalf("audit: %s", c)
			}
		})
	}
}

// TestInetdStopStartNeverOverlap: stop, start and restart of one service,
// sent together, each in its own inetd process, run one at a time: every
// run's begin (logged by the action itself) comes after the previous
// run's end.
func TestInetdStopStartNeverOverlap(t *testing.T) {
	e := newEnv(t)
	d := startInetd(t, e)
	verbs := []protocol.Verb{protocol.VerbStop, protocol.VerbStart, protocol.VerbRestart, protocol.VerbStop,
		protocol.VerbStart, protocol.VerbRestart, protocol.VerbStop, protocol.VerbStart}
	var wg sync.WaitGroup
	reps := make([]protocol.Reply, len(verbs))
	for i, v := range verbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fault := "-"
			if v == protocol.VerbRestart {
				fault = "r" + strconv.Itoa(i)
			}
			rep, err := doFault(t, d.addr, e.fleet, v, "iv", fault)
			if err != nil {
				t.Error(err)
			}
			reps[i] = rep
		}()
	}
	wg.Wait()
	ran := map[protocol.Verb]int{}
	for i, r := range reps {
		if r.Outcome != protocol.OutcomeOK {
			t.Fatalf("%s: %+v", verbs[i], r)
		}
		if r.Origin == protocol.OriginRun {
			ran[verbs[i]]++
		}
	}
	type event struct {
		what, verb string
		at         int64
	}
	var events []event
	for _, l := range strings.Split(strings.TrimSpace(readFile(filepath.Join(e.dir, "iv.log"))), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			t.Fatalf("iv.log line %q", l)
		}
		at, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			t.Fatalf("iv.log line %q: %v", l, err)
		}
		events = append(events, event{f[0], f[1], at})
	}
	runs := map[protocol.Verb]int{}
	for i := 0; i < len(events); i += 2 {
		b := events[i]
		if i+1 >= len(events) || b.what != "begin" || events[i+1].what != "end" || events[i+1].verb != b.verb {
			t.Fatalf("runs overlap or are torn at event %d:\n%s", i, readFile(filepath.Join(e.dir, "iv.log")))
		}
		if i > 0 && b.at < events[i-1].at {
			t.Fatalf("%s began at %d, before the previous %s ended at %d", b.verb, b.at, events[i-1].verb, events[i-1].at)
		}
		runs[protocol.Verb(b.verb)]++
	}
	for _, v := range []protocol.Verb{protocol.VerbStop, protocol.VerbStart, protocol.VerbRestart} {
		if runs[v] == 0 || runs[v] != ran[v] {
			t.Fatalf("%s ran %d times, %d replies say they ran it", v, runs[v], ran[v])
		}
	}
	// They did contend: some processes waited for the lock.
	if d.waits("iv") == 0 {
		t.Fatalf("no process ever waited for the lock: the test proved nothing\n%s", readFile(d.log))
	}
}
