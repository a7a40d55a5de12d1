package listener

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/protocol"
)

// TestFaultIDReusedDaysLater: issue 18's "a fault record answers for
// ever". Fault ids are small integers (Nagios' $SERVICEPROBLEMID$ restarts
// from 1 when its retention is reset) or seconds: a restart whose fault id
// matches a record three days old is a new fault, and runs.
func TestFaultIDReusedDaysLater(t *testing.T) {
	h := newHarness(t, opts{})
	_, now, advance := fakeClockServer(t, h)
	c := clockClient(t, h, now)
	if rep := restart(t, c, "demo", "42"); rep.Outcome != protocol.OutcomeOK || rep.Origin != protocol.OriginRun || h.marks("demo") != 1 {
		t.Fatalf("first restart: %+v", rep)
	}
	advance(time.Minute)
	if rep := restart(t, c, "demo", "42"); rep.Origin != protocol.OriginRecorded || h.marks("demo") != 1 {
		t.Fatalf("the same fault a minute later: %+v", rep)
	}
	advance(72 * time.Hour)
	if rep := restart(t, c, "demo", "42"); rep.Outcome != protocol.OutcomeOK || rep.Origin != protocol.OriginRun || h.marks("demo") != 2 {
		t.Fatalf("fault id 42 reused three days later: %+v (%d runs): answered from the old record", rep, h.marks("demo"))
	}
}

// TestSameFaultTwoEndpoints: two monitoring nodes (127.0.0.1 and
// 127.0.0.2) send the same fault 10 times each, all at once, each with its
// own nonce: one restart runs, every other answer is joined or recorded.
func TestSameFaultTwoEndpoints(t *testing.T) {
	h := newHarness(t, opts{allow: []string{"127.0.0.0/8"}})
	var wg sync.WaitGroup
	replies := make(chan string, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%2))}}
			c, err := d.Dial("tcp", h.addr)
			if err != nil {
				replies <- "dial: " + err.Error()
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			c.Write(h.validFault(protocol.VerbRestart, "slow", "7", time.Now()))
			line, _ := bufio.NewReader(c).ReadString('\n')
			replies <- line
		}()
	}
	// slow.sh waits for the release file: every request is in before it ends.
	for deadline := time.Now().Add(20 * time.Second); h.srv.served.Load() < 20; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of 20 requests arrived", h.srv.served.Load())
		}
	}
	os.WriteFile(filepath.Join(h.dir, "release"), nil, 0o600)
	wg.Wait()
	close(replies)
	origins := map[string]int{}
	for r := range replies {
		f := strings.Fields(r)
		if len(f) != 10 || f[2] != "ok" {
			t.Fatalf("reply %q", r)
		}
		origins[f[3]]++
	}
	if origins["run"] != 1 || h.marks("slow") != 1 {
		t.Fatalf("origins %v, %d runs: want one run", origins, h.marks("slow"))
	}
	t.Logf("origins %v", origins)
}
