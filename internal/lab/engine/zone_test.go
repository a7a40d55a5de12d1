package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/testutil"
	"github.com/selfheal/selfheal/internal/nagios"
)

// The zone's handler says where it ran (NodeName) and what it saw, with
// the wall-clock time of the call.
const zoneHandlerScript = `#!/bin/sh
echo "$(date +%s.%N) $*" >> "$(dirname "$0")/zone.calls"
`

const zoneObjects = `
object CheckCommand "lab_check" { command = [ LabDir + "/check.sh", LabState ] }
object EventCommand "lab_zone_handler" {
  command = [ LabDir + "/zone-handler.sh", NodeName, "$service.state$", "$service.state_type$",
    "$service.check_attempt$", "$service.last_state_change$", "$service.last_hard_state_change$" ]
}
object Host "h1" {
  address = "127.0.0.1"
  check_command = "lab_check"
  enable_active_checks = false
}
object Service "svc" {
  host_name = "h1"
  check_command = "lab_check"
  event_command = "lab_zone_handler"
  max_check_attempts = 2
  check_interval = 1s
  retry_interval = 1s
}
`

// zoneCall is one line of zone.calls.
type zoneCall struct {
	At                                   float64
	Node, State, Type, Attempt, LSC, LHS string
}

func readZoneCalls(t *testing.T, path string) []zoneCall {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []zoneCall
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		w := strings.Fields(sc.Text())
		if len(w) != 7 {
			t.Fatalf("malformed handler call %q", sc.Text())
		}
		at, err := strconv.ParseFloat(w[0], 64)
		if err != nil {
			t.Fatalf("handler call %q: %v", sc.Text(), err)
		}
		out = append(out, zoneCall{at, w[1], w[2], w[3], w[4], w[5], w[6]})
	}
	return out
}

// TestZoneHASplitBrain proves the rig: connected, an HA zone runs a
// service's event handler on exactly one endpoint; with the link cut, on
// both; restored, on one again.
func TestZoneHASplitBrain(t *testing.T) {
	bin := testutil.LookTool(t, "icinga2", "/usr/sbin/icinga2")
	dir, stateFile := scripts(t)
	if err := os.WriteFile(filepath.Join(dir, "zone-handler.sh"), []byte(zoneHandlerScript), 0o755); err != nil {
		t.Fatal(err)
	}
	callsFile := filepath.Join(dir, "zone.calls")
	setState := func(s nagios.State) {
		t.Helper()
		if err := os.WriteFile(stateFile, []byte(strconv.Itoa(int(s))+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Every wait is bounded on its own.
	step := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		t.Cleanup(cancel)
		return ctx
	}

	z, err := NewZone(ZoneConfig{Binary: bin, Objects: zoneObjects,
		Resources: map[string]string{"LabDir": dir, "LabState": stateFile}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeZone(t, z) })
	for _, e := range z.Endpoints {
		if out, err := e.Validate(step()); err != nil {
			t.Fatalf("%s: %v\n%s", e.Name, err, out)
		}
	}
	started := time.Now()
	if err := z.Start(step()); err != nil {
		t.Fatal(err)
	}
	t.Logf("both endpoints ready %.1fs after exec", time.Since(started).Seconds())
	if err := z.WaitConnected(step()); err != nil {
		t.Fatal(err)
	}
	t.Logf("connected %.1fs after start", time.Since(started).Seconds())
	auth, err := z.WaitAuthorities(step(), "h1", "svc", 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("authority over h1!svc: %s, %.1fs after start", auth[0], time.Since(started).Seconds())
	leader, follower := z.Endpoint(auth[0]), z.Endpoints[0]
	if follower == leader {
		follower = z.Endpoints[1]
	}
	for _, e := range z.Endpoints {
		if _, err := e.WaitService(step(), "h1", "svc", StateIs(nagios.OK, true)); err != nil {
			t.Fatalf("%s: %v", e.Name, err)
		}
	}

	// HA: the fault is handled once, by the endpoint with authority; the
	// other gets the replicated results and skips.
	skipLine := "Skipping event handler for HA-paused checkable 'h1!svc'"
	skipsBefore := countLines(t, follower, skipLine)
	mark := len(readZoneCalls(t, callsFile))
	setState(nagios.Critical)
	for _, e := range z.Endpoints {
		if _, err := e.WaitService(step(), "h1", "svc", StateIs(nagios.Critical, true)); err != nil {
			t.Fatalf("%s: %v", e.Name, err)
		}
	}
	waitFor(t, step(), "the follower to skip the SOFT and HARD handler runs", func() bool {
		return countLines(t, follower, skipLine) >= skipsBefore+2
	})
	waitFor(t, step(), "a CRITICAL HARD handler run", func() bool {
		return len(callsFrom(readZoneCalls(t, callsFile)[mark:], "CRITICAL", "HARD")) > 0
	})
	haCalls := readZoneCalls(t, callsFile)[mark:]
	if nodes := nodesOf(haCalls); len(nodes) != 1 || nodes[0] != leader.Name {
		t.Fatalf("connected zone: handler ran on %q, want only %q; calls %+v", nodes, leader.Name, haCalls)
	}
	if _, err := leader.WaitLog(step(), EventHandler("h1", "svc", "CRITICAL", "HARD")); err != nil {
		t.Fatal(err)
	}
	// Results are replicated: both compat logs carry the alert.
	for _, e := range z.Endpoints {
		if _, err := e.WaitLog(step(), Alert("h1", "svc", "CRITICAL", "HARD")); err != nil {
			t.Fatalf("%s: %v", e.Name, err)
		}
	}
	if entries, _ := follower.Log(); hasEntry(entries, EventHandler("h1", "svc", "CRITICAL", "")) {
		t.Errorf("follower %s logged a SERVICE EVENT HANDLER while connected", follower.Name)
	}
	// Facts the healing design leans on: connected, last_state_change is
	// replicated (the same float on every endpoint), and the handler's
	// macro is it truncated to whole seconds.
	haLSC := lastStateChanges(t, z)
	hard := callsFrom(haCalls, "CRITICAL", "HARD")[0]
	t.Logf("connected: handler %+v; last_state_change, last_hard_state_change per endpoint API %v", hard, haLSC)
	if a, b := haLSC[leader.Name], haLSC[follower.Name]; a != b {
		t.Errorf("connected: last_state_change differs: %s %v, %s %v", leader.Name, a, follower.Name, b)
	}
	if got, want := hard.LSC+" "+hard.LHS, wholeSeconds(haLSC[leader.Name]); got != want {
		t.Errorf("handler got last_state_change, last_hard_state_change %q, want the API's truncated: %q", got, want)
	}

	// Split brain: the link goes, each endpoint takes authority and runs
	// every check and every handler.
	z.Cut()
	cut := time.Now()
	if err := z.WaitSplit(step()); err != nil {
		t.Fatal(err)
	}
	t.Logf("split seen %.2fs after the cut", time.Since(cut).Seconds())
	if _, err := z.WaitAuthorities(step(), "h1", "svc", len(z.Endpoints)); err != nil {
		t.Fatal(err)
	}
	t.Logf("both endpoints hold authority %.1fs after the cut (%.1fs after start)", time.Since(cut).Seconds(), time.Since(started).Seconds())
	for _, want := range []nagios.State{nagios.OK, nagios.Critical} {
		mark = len(readZoneCalls(t, callsFile))
		setState(want)
		waitFor(t, step(), "a "+want.String()+" HARD handler run on every endpoint", func() bool {
			return len(nodesOf(callsFrom(readZoneCalls(t, callsFile)[mark:], want.String(), "HARD"))) == len(z.Endpoints)
		})
		split := callsFrom(readZoneCalls(t, callsFile)[mark:], want.String(), "HARD")
		t.Logf("split, %s HARD: calls %+v; %.3fs between the first and last run", want, split, split[len(split)-1].At-split[0].At)
	}
	for _, e := range z.Endpoints {
		if _, err := e.WaitLog(step(), EventHandler("h1", "svc", "CRITICAL", "HARD")); err != nil {
			t.Fatalf("%s: %v", e.Name, err)
		}
	}
	// Split: each endpoint ran its own checks, so the fault has two times.
	splitLSC := lastStateChanges(t, z)
	t.Logf("split: last_state_change, last_hard_state_change per endpoint API %v", splitLSC)
	if a, b := splitLSC[leader.Name], splitLSC[follower.Name]; a[0] == b[0] {
		t.Errorf("split: last_state_change %v on both endpoints, want each its own", a[0])
	}

	// Restored: one authority again, and the next change is handled once.
	z.Restore()
	restored := time.Now()
	if err := z.WaitConnected(step()); err != nil {
		t.Fatal(err)
	}
	auth, err = z.WaitAuthorities(step(), "h1", "svc", 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restored: reconnected and %s alone has authority %.1fs after the restore", auth[0], time.Since(restored).Seconds())
	leader = z.Endpoint(auth[0])
	follower = z.Endpoints[0]
	if follower == leader {
		follower = z.Endpoints[1]
	}
	skipsBefore = countLines(t, follower, skipLine)
	mark = len(readZoneCalls(t, callsFile))
	setState(nagios.OK)
	for _, e := range z.Endpoints {
		if _, err := e.WaitService(step(), "h1", "svc", StateIs(nagios.OK, true)); err != nil {
			t.Fatalf("%s: %v", e.Name, err)
		}
	}
	waitFor(t, step(), "the follower to skip the recovery handler", func() bool {
		return countLines(t, follower, skipLine) > skipsBefore
	})
	waitFor(t, step(), "an OK HARD handler run", func() bool {
		return len(callsFrom(readZoneCalls(t, callsFile)[mark:], "OK", "HARD")) > 0
	})
	if calls := readZoneCalls(t, callsFile)[mark:]; len(nodesOf(calls)) != 1 || nodesOf(calls)[0] != leader.Name {
		t.Fatalf("restored zone: handler ran on %q, want only %q; calls %+v", nodesOf(calls), leader.Name, calls)
	}
}

// closeZone stops the zone and checks that nothing of it is left: no
// engine process, no proxy listening.
func closeZone(t *testing.T, z *Zone) {
	t.Helper()
	var pids []int
	for _, e := range z.Endpoints {
		if pid := e.PID(); pid != 0 {
			pids = append(pids, pid)
		}
	}
	var ports []int
	for _, p := range z.proxies {
		ports = append(ports, p.Port())
	}
	if err := z.Close(); err != nil {
		t.Error(err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process group %d still has members after Close: %v", pid, err)
		}
	}
	for _, port := range ports {
		if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second); err == nil {
			c.Close()
			t.Errorf("proxy port %d still accepts after Close", port)
		}
	}
	if _, err := os.Stat(z.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("zone dir %s left behind: %v", z.Dir, err)
	}
}

func waitFor(t *testing.T, ctx context.Context, what string, f func() bool) {
	t.Helper()
	if err := poll(ctx, 100*time.Millisecond, func() (bool, error) { return f(), nil }); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func countLines(t *testing.T, e *ZoneEndpoint, substr string) int {
	t.Helper()
	lines, err := e.MainLogLines(substr)
	if err != nil {
		t.Fatal(err)
	}
	return len(lines)
}

func callsFrom(calls []zoneCall, state, typ string) []zoneCall {
	var out []zoneCall
	for _, c := range calls {
		if c.State == state && c.Type == typ {
			out = append(out, c)
		}
	}
	return out
}

func nodesOf(calls []zoneCall) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range calls {
		if !seen[c.Node] {
			seen[c.Node] = true
			out = append(out, c.Node)
		}
	}
	sort.Strings(out)
	return out
}

func hasEntry(entries []LogEntry, match func(LogEntry) bool) bool {
	for _, e := range entries {
		if match(e) {
			return true
		}
	}
	return false
}

// lastStateChanges returns each endpoint's last_state_change and
// last_hard_state_change as the API prints them (float seconds).
func lastStateChanges(t *testing.T, z *Zone) map[string][2]string {
	t.Helper()
	out := map[string][2]string{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, e := range z.Endpoints {
		a, err := e.ServiceAttrs(ctx, "h1", "svc", "last_state_change", "last_hard_state_change")
		if err != nil {
			t.Fatal(err)
		}
		lsc, ok1 := a["last_state_change"].(json.Number)
		lhs, ok2 := a["last_hard_state_change"].(json.Number)
		if !ok1 || !ok2 {
			t.Fatalf("%s: state change times %v", e.Name, a)
		}
		out[e.Name] = [2]string{lsc.String(), lhs.String()}
	}
	return out
}

// wholeSeconds renders both times as Icinga's macros do (Timestamp
// fields are cast to long).
func wholeSeconds(ts [2]string) string {
	a, _, _ := strings.Cut(ts[0], ".")
	b, _, _ := strings.Cut(ts[1], ".")
	return a + " " + b
}

// TestZoneProxyCutRestore checks the link proxy alone: it forwards, Cut
// ends live connections at once and refuses new ones, Restore lets them
// through again, Close leaves nothing listening.
func TestZoneProxyCutRestore(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	p, err := newLinkProxy(echo.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port()))
	roundTrip := func(c net.Conn) error {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return err
		}
		b := make([]byte, 5)
		if _, err := io.ReadFull(c, b); err != nil {
			return err
		}
		if string(b) != "ping\n" {
			return errors.New("echo mismatch: " + string(b))
		}
		return nil
	}
	dial := func() net.Conn {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	live := dial()
	defer live.Close()
	if err := roundTrip(live); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	p.Cut()
	_ = live.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := live.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("live connection after Cut: read err = %v, want it closed at once", err)
	}
	// Accepted by the kernel, then reset by the proxy: the reset may even
	// beat the end of connect.
	if refused, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
		if err := roundTrip(refused); err == nil {
			t.Fatal("a new connection got through a cut link")
		}
		refused.Close()
	} else if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("dial through a cut link: %v, want a reset", err)
	}
	p.Restore()
	again := dial()
	defer again.Close()
	if err := roundTrip(again); err != nil {
		t.Fatalf("after Restore: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := roundTrip(again); err == nil {
		t.Fatal("connection survived Close")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("proxy still listening after Close")
	}
}

// TestZoneConfigRejects checks what NewZone refuses before it runs anything.
func TestZoneConfigRejects(t *testing.T) {
	for name, cfg := range map[string]ZoneConfig{
		"one endpoint":        {Endpoints: []string{"a"}},
		"repeated endpoint":   {Endpoints: []string{"a", "a"}},
		"slash in name":       {Endpoints: []string{"a", "b/c"}},
		"NodeName resource":   {Resources: map[string]string{"NodeName": "x"}},
		"ZoneName constant":   {Constants: map[string]string{"ZoneName": `"x"`}},
		"CA directory name":   {Endpoints: []string{"a", "pki"}},
		"empty endpoint name": {Endpoints: []string{"a", ""}},
	} {
		if z, err := NewZone(cfg); err == nil {
			z.Close()
			t.Errorf("%s: NewZone accepted %+v", name, cfg)
		}
	}
}
