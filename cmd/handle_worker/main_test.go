package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/lab/rig/rigtest"
	"github.com/selfheal/selfheal/internal/lab/testutil"
	"github.com/selfheal/selfheal/internal/nodestate"
	"github.com/selfheal/selfheal/internal/protocol"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.Cleanup()
	os.Exit(code)
}

type out struct {
	code           int
	stdout, stderr string
}

func runBin(t *testing.T, cred *syscall.Credential, bin string, args ...string) out {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Dir = "/"
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatal(err)
	}
	return out{cmd.ProcessState.ExitCode(), so.String(), se.String()}
}

// oneLine: handle_worker prints exactly one line in event mode.
func oneLine(t *testing.T, o out) string {
	t.Helper()
	if strings.Count(o.stdout, "\n") != 1 || !strings.HasSuffix(o.stdout, "\n") {
		t.Fatalf("stdout is not one line: %q (stderr %q)", o.stdout, o.stderr)
	}
	return strings.TrimSuffix(o.stdout, "\n")
}

func keyFile(t *testing.T, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "k.key")
	if err := os.WriteFile(p, []byte("selfheal-fleet-v1 fleet1 "+strings.Repeat("ab", 32)+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, mode)
	return p
}

func TestUsageErrors(t *testing.T) {
	bin := testutil.Binary(t, "handle_worker")
	k := keyFile(t, 0o600)
	loose := keyFile(t, 0o644)
	st := t.TempDir()
	ev := []string{"CRITICAL", "HARD", "3", "127.0.0.1", "web1", "Worker"}
	base := []string{"event", "--key-file", k, "--target", "demo", "--state-dir", st}
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	hostKey := filepath.Join(t.TempDir(), "web9.key")
	fleet, _ := protocol.LoadKeyFile(k)
	hk, _ := fleet.ForAgent("web9")
	if err := protocol.WriteKeyFile(hostKey, hk); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		msg  string
	}{
		{"no args", nil, "usage error"},
		{"unknown command", []string{"restart"}, "usage error"},
		{"missing key file flag", append([]string{"event", "--target", "demo"}, ev...), "--key-file"},
		{"missing target", append([]string{"event", "--key-file", k}, ev...), "--target"},
		{"missing positional", append(base, "CRITICAL", "HARD", "3"), "usage error"},
		{"bad state", append(base, "DOWN", "HARD", "3", "h", "h", "s"), `unknown service state "DOWN"`},
		{"bad type", append(base, "CRITICAL", "FIRM", "3", "h", "h", "s"), `unknown state type "FIRM"`},
		{"bad attempt", append(base, "CRITICAL", "HARD", "x", "h", "h", "s"), "usage error"},
		{"unexpanded macro", append(base, "$SERVICESTATE$", "HARD", "3", "h", "h", "s"), "unknown service state"},
		{"bad target", append([]string{"event", "--key-file", k, "--target", "../x"}, ev...), `--target "../x"`},
		{"loose key file", append([]string{"event", "--key-file", loose, "--target", "demo"}, ev...), "chmod 600"},
		{"missing key file", append([]string{"event", "--key-file", k + ".nope", "--target", "demo"}, ev...), "no such file"},
		// A FIFO given by mistake must fail at once, not block until Nagios' SIGKILL.
		{"key file is a FIFO", append([]string{"event", "--key-file", fifo, "--target", "demo"}, ev...), "not a regular file"},
		{"CA file is a FIFO", append(append(base, "--tls-ca", fifo), ev...), "not a regular file"},
		{"client cert is a FIFO", append(append(base, "--tls-cert", fifo, "--tls-key", k), ev...), "not a regular file"},
		// The budget is the agent's: the old flags are refused, not ignored.
		{"no local budget: max", append(append(base, "--max-restarts", "3"), ev...), "unknown flag --max-restarts"},
		{"no local budget: window", append(append(base, "--window", "1h"), ev...), "unknown flag --window"},
		{"no local budget: gap", append(append(base, "--min-gap", "2m"), ev...), "unknown flag --min-gap"},
		{"unexpanded fault macro", append(append(base, "--fault", "$SERVICEPROBLEMID$"), ev...), `--fault "$SERVICEPROBLEMID$"`},
		{"fault with a space", append(append(base, "--fault", "1 2"), ev...), `--fault "1 2"`},
		{"bad agent", append(append(base, "--agent", "Web1"), ev...), `--agent "Web1"`},
		{"host name is no agent name", append(base, "CRITICAL", "HARD", "3", "127.0.0.1", "web 1", "s"), `HOSTNAME "web 1" lower-cased is not an agent name`},
		{"host key of another agent", append([]string{"event", "--key-file", hostKey, "--target", "demo"}, ev...), `this host key is for agent "web9", not "web1"`},
		{"deadline", append(append(base, "--deadline", "0s"), ev...), "--deadline"},
		{"action", append(append(base, "--action", "stop"), ev...), "usage error"},
		{"soft attempt", append(append(base, "--soft-attempt", "-1"), ev...), "--soft-attempt"},
		{"send verb", []string{"send", "reboot", "--host", "h", "--target", "demo", "--key-file", k}, "usage error"},
		{"send host", []string{"send", "ping", "--target", "demo", "--key-file", k}, "--host"},
		{"send agent", []string{"send", "ping", "--host", "127.0.0.1", "--hostname", "Web 1", "--target", "demo", "--key-file", k}, `--hostname "Web 1" lower-cased`},
		{"send budget flag", []string{"send", "restart", "--host", "h", "--target", "demo", "--key-file", k, "--max-restarts", "1"}, "unknown flag --max-restarts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := runBin(t, nil, bin, tt.args...)
			if o.code != 3 {
				t.Fatalf("exit %d, want 3; stdout %q stderr %q", o.code, o.stdout, o.stderr)
			}
			line := oneLine(t, o)
			if !strings.HasPrefix(line, "handle_worker: usage error: ") || !strings.Contains(line, tt.msg) {
				t.Fatalf("line %q does not contain %q", line, tt.msg)
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	bin := testutil.Binary(t, "handle_worker")
	o := runBin(t, nil, bin, "--help")
	if o.code != 0 || !strings.Contains(o.stdout, "event") || !strings.Contains(o.stdout, "send") {
		t.Fatalf("--help: %d %q", o.code, o.stdout)
	}
	for _, cmd := range []string{"genkey", "issue-key"} {
		if !strings.Contains(o.stdout, cmd) {
			t.Fatalf("--help does not list %s: %q", cmd, o.stdout)
		}
	}
	o = runBin(t, nil, bin, "event", "--help")
	if o.code != 0 || !strings.Contains(o.stdout, "--soft-attempt") || !strings.Contains(o.stdout, "--command-file") ||
		!strings.Contains(o.stdout, "--fault") || !strings.Contains(o.stdout, "--agent") || strings.Contains(o.stdout, "--max-restarts") {
		t.Fatalf("event --help: %d %q", o.code, o.stdout)
	}
	o = runBin(t, nil, bin, "-V")
	if o.code != 0 || !strings.HasPrefix(o.stdout, "handle_worker ") {
		t.Fatalf("-V: %d %q", o.code, o.stdout)
	}
}

type setup struct {
	bin, state, fifo, log string
	l                     *rigtest.HandlerListener
	fifoR                 *os.File
}

// newSetup starts an agent named web1, so that the HOSTNAME argument
// (web1) is its default --agent. A budget, when given, is the agent's.
func newSetup(t *testing.T, budget ...rig.Budget) *setup {
	t.Helper()
	o := rigtest.HandlerOptions{Agent: "web1"}
	if len(budget) > 0 {
		o.Budget = &budget[0]
	}
	s := &setup{bin: testutil.Binary(t, "handle_worker"), l: rigtest.StartHandlerListener(t, o)}
	dir := t.TempDir()
	s.state, s.fifo, s.log = filepath.Join(dir, "state"), filepath.Join(dir, "nagios.cmd"), filepath.Join(dir, "hw.log")
	os.Mkdir(s.state, 0o700)
	if err := syscall.Mkfifo(s.fifo, 0o660); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Open(s.fifo, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	s.fifoR = os.NewFile(uintptr(fd), s.fifo)
	t.Cleanup(func() { s.fifoR.Close() })
	return s
}

func (s *setup) event(extra ...string) []string {
	return append([]string{"event", "--key-file", s.l.KeyFile, "--target", "demo", "--port", itoa(s.l.Port),
		"--state-dir", s.state, "--command-file", s.fifo, "--log-file", s.log}, extra...)
}

func (s *setup) commands() []string {
	buf := make([]byte, 8192)
	n, _ := syscall.Read(int(s.fifoR.Fd()), buf)
	if n <= 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(buf[:n]), "\n"), "\n")
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestEventEndToEnd: the binary as Nagios runs it, against the real
// worker_listener (with the agent's default min gap of 2m), through a
// Nagios-like fault and a second one.
func TestEventEndToEnd(t *testing.T) {
	s := newSetup(t, rig.Budget{Max: 3, Window: "1h", MinGap: "2m"})
	ev := []string{"CRITICAL", "HARD", "3", "127.0.0.1", "web1", "Worker Svc"}

	began := strconv.FormatInt(time.Now().Add(-10*time.Second).Unix(), 10)
	o := runBin(t, nil, s.bin, append(s.event("--dry-run", "--fault", "7", "--fault-since="+began), ev...)...)
	if o.code != 0 || !strings.Contains(o.stdout, "dry-run: would send restart demo to "+s.l.Addr()+" (agent web1, fault 7, began ") ||
		!strings.Contains(o.stdout, "; HARD CRITICAL); the agent says: a restart would run now (restart 1 of 3 in 1h)") ||
		!strings.Contains(o.stdout, "would write to "+s.fifo+": SCHEDULE_FORCED_SVC_CHECK;web1;Worker Svc;") || s.l.Actions(t) != 0 {
		t.Fatalf("dry-run: %d %q", o.code, o.stdout)
	}

	o = runBin(t, nil, s.bin, append(s.event("--fault", "7", "--fault-since="+began), ev...)...)
	line := oneLine(t, o)
	if o.code != 0 || !strings.HasPrefix(line, "handle_worker: web1/Worker Svc CRITICAL HARD 3: restart demo on "+s.l.Addr()+" ok in") ||
		!strings.HasSuffix(line, "(budget 1/3 per 1h0m0s)") {
		t.Fatalf("restart: exit %d %q", o.code, line)
	}
	if s.l.Actions(t) != 1 {
		t.Fatalf("%d actions", s.l.Actions(t))
	}
	cmds := s.commands()
	if len(cmds) != 2 || !strings.Contains(cmds[0], "] ADD_SVC_COMMENT;web1;Worker Svc;0;handle_worker;auto-restart ok in ") ||
		!strings.Contains(cmds[1], "] SCHEDULE_FORCED_SVC_CHECK;web1;Worker Svc;") {
		t.Fatalf("command file: %q", cmds)
	}
	if o.stderr != "" {
		t.Fatalf("stderr with --log-file: %q", o.stderr)
	}

	// Nagios does not call again while HARD, but a second handler for the
	// same fault (the other HA endpoint, a HARD after a SOFT restart) gets
	// the agent's record: ok, not run again.
	o = runBin(t, nil, s.bin, append(s.event("--fault", "7", "--fault-since="+began), ev...)...)
	if o.code != 0 || !strings.Contains(o.stdout, "ok, not run again, answered from the agent's record") || s.l.Actions(t) != 1 {
		t.Fatalf("repeat: %d %q", o.code, o.stdout)
	}
	s.commands()
	// A split brain's other endpoint names it 9, with the same start: the
	// same fault, not run again.
	o = runBin(t, nil, s.bin, append(s.event("--fault", "9", "--fault-since="+began), ev...)...)
	if o.code != 0 || !strings.Contains(o.stdout, "the same fault under another id") || s.l.Actions(t) != 1 {
		t.Fatalf("split brain: %d %q", o.code, o.stdout)
	}
	s.commands()

	// Recovery, then a second fault inside the agent's min gap, its start
	// not given (an empty macro): it may be a new crash, so it is
	// deferred to the gap's end, never called healed.
	o = runBin(t, nil, s.bin, append(s.event("--fault", "0"), "OK", "HARD", "3", "127.0.0.1", "web1", "Worker Svc")...)
	if o.code != 0 || !strings.Contains(o.stdout, "recovered") {
		t.Fatalf("recovery: %d %q", o.code, o.stdout)
	}
	o = runBin(t, nil, s.bin, append(s.event("--fault", "8", "--fault-since="), ev...)...)
	if o.code != 1 || !strings.Contains(o.stdout, "the request does not say when fault 8 began") || s.l.Actions(t) != 1 {
		t.Fatalf("min gap: %d %q", o.code, o.stdout)
	}
	if c := s.commands(); len(c) != 1 || !strings.Contains(c[0], ";0;handle_worker;auto-healing deferred (backoff): ") {
		t.Fatalf("command file: %q", c)
	}
	// The advisory record says what the agent last answered, and holds it.
	rec, err := nodestate.Store{Dir: s.state}.Read("web1", "Worker Svc")
	if err != nil || rec == nil || rec.Fault != "8" || rec.Outcome != "backoff" || rec.Agent != "web1" || rec.Held == nil {
		t.Fatalf("record %+v, %v", rec, err)
	}

	// Every invocation left one JSON line in --log-file.
	f, err := os.Open(s.log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if m["prog"] != "handle_worker" || m["service"] != "Worker Svc" || m["agent"] != "web1" {
			t.Fatalf("log line %v", m)
		}
		n++
	}
	if n != 6 {
		t.Fatalf("%d log lines for 6 invocations", n)
	}
}

func TestEventListenerDown(t *testing.T) {
	s := newSetup(t)
	port := rigtest.ClosedPort(t)
	start := time.Now()
	o := runBin(t, nil, s.bin, append([]string{"event", "--key-file", s.l.KeyFile, "--target", "demo", "--port", itoa(port),
		"--state-dir", s.state, "--deadline", "3s", "--fault", "7"}, "CRITICAL", "HARD", "3", "127.0.0.1", "web1", "w")...)
	if o.code != 2 || !strings.Contains(oneLine(t, o), "unreachable") {
		t.Fatalf("exit %d %q", o.code, o.stdout)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("took %s with --deadline 3s", took)
	}
	// Without --log-file the JSON line goes to stderr.
	var m map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(o.stderr)), &m); err != nil || m["level"] != "error" || m["result"] != "unreachable" {
		t.Fatalf("stderr %q: %v", o.stderr, err)
	}
}

// TestEventKilledMidRequest: Nagios SIGKILLs the handler at its timeout
// while the agent runs the restart. The agent recorded the fault before
// it acted, so the next request for the fault (Nagios' next call, the
// other HA endpoint) gets that restart's outcome and does not run it again.
func TestEventKilledMidRequest(t *testing.T) {
	s := newSetup(t)
	args := append([]string{"event", "--key-file", s.l.KeyFile, "--target", "hang", "--port", itoa(s.l.Port),
		"--state-dir", s.state, "--log-file", s.log, "--fault", "55"}, "CRITICAL", "HARD", "3", "127.0.0.1", "web1", "w")
	cmd := exec.Command(s.bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for s.l.Actions(t) == 0 {
		if time.Now().After(deadline) {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Wait()
			t.Fatal("the restart never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()

	o := runBin(t, nil, s.bin, args...)
	if o.code != 2 || !strings.Contains(oneLine(t, o), "restart hang on "+s.l.Addr()+": timeout (action killed after") {
		t.Fatalf("after the kill: exit %d %q", o.code, o.stdout)
	}
	if s.l.Actions(t) != 1 {
		t.Fatalf("one fault, %d runs", s.l.Actions(t))
	}
	b, _ := os.ReadFile(s.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &m); err != nil || (m["origin"] != "recorded" && m["origin"] != "joined") {
		t.Fatalf("log %q: %v", lines[len(lines)-1], err)
	}
}

// TestEventReadOnlyStateDir runs the binary as a user that cannot write
// the state dir (nobody, when the tests run as root). The record is
// advisory: the restart happens, and the failure to record is logged. A
// state dir that is not the user's own 0700 one is refused by the trust
// rule, with the fix; in its own, a lock it cannot open is "permission
// denied".
func TestEventReadOnlyStateDir(t *testing.T) {
	s := newSetup(t)
	for i, tt := range []struct {
		name string
		own  bool
		want []string
	}{
		{"not its own", false, []string{"state directory ", " refused: ", "not 0700: run ch"}},
		{"its own, lock not writable", true, []string{"permission denied"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			shared, err := os.MkdirTemp("", "hw-ro-")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(shared)
			os.Chmod(shared, 0o755)
			state := filepath.Join(shared, "state")
			os.Mkdir(state, 0o755)
			bin, key := s.bin, s.l.KeyFile
			var cred *syscall.Credential
			uid := os.Getuid()
			if os.Geteuid() == 0 {
				uid = 65534
				cred = &syscall.Credential{Uid: 65534, Gid: 65534}
				bin, key = filepath.Join(shared, "handle_worker"), filepath.Join(shared, "k.key")
				copyFile(t, s.bin, bin, 0o755)
				copyFile(t, s.l.KeyFile, key, 0o600)
				os.Chown(key, 65534, 65534)
			} else if !tt.own {
				os.Chmod(state, 0o555)
				defer os.Chmod(state, 0o755)
			}
			if tt.own {
				os.Chmod(state, 0o700)
				os.Chown(state, uid, uid)
				lock := filepath.Join(state, "web1,w.lock")
				os.WriteFile(lock, nil, 0o400)
				os.Chown(lock, uid, uid) // its owner cannot open it for writing
			}
			o := runBin(t, cred, bin, "event", "--key-file", key, "--target", "demo", "--port", itoa(s.l.Port), "--state-dir", state,
				"--fault", itoa(7+i), "CRITICAL", "HARD", "3", "127.0.0.1", "web1", "w")
			if o.code != 0 || !strings.Contains(oneLine(t, o), "ok in") {
				t.Fatalf("exit %d %q %q", o.code, o.stdout, o.stderr)
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(strings.TrimSpace(o.stderr)), &m); err != nil {
				t.Fatalf("stderr %q: %v", o.stderr, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(fmt.Sprint(m["record_error"]), w) {
					t.Fatalf("record_error %q does not say %q", m["record_error"], w)
				}
			}
			if s.l.Actions(t) != i+1 {
				t.Fatalf("%d actions, want %d", s.l.Actions(t), i+1)
			}
			if _, err := os.Lstat(filepath.Join(state, "web1,w.json")); err == nil {
				t.Fatal("recorded")
			}
		})
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
}

func TestSendEndToEnd(t *testing.T) {
	s := newSetup(t, rig.Budget{Max: 3, Window: "1h", MinGap: "2m"})
	common := []string{"--host", "127.0.0.1", "--port", itoa(s.l.Port), "--target", "demo", "--key-file", s.l.KeyFile,
		"--state-dir", s.state, "--hostname", "web1", "--service", "Worker Svc"}
	o := runBin(t, nil, s.bin, append([]string{"send", "status"}, common...)...)
	if o.code != 0 || !strings.Contains(o.stdout, "status demo on "+s.l.Addr()+" ok in") || !strings.Contains(o.stdout, "demo is running") {
		t.Fatalf("status: %d %q", o.code, o.stdout)
	}
	o = runBin(t, nil, s.bin, append([]string{"send", "restart"}, common...)...)
	if o.code != 0 || !strings.Contains(o.stdout, "restart demo on "+s.l.Addr()+" ok in") || !strings.Contains(o.stdout, "; fault manual-") ||
		!strings.Contains(o.stdout, "recorded in "+s.state) {
		t.Fatalf("restart: %d %q", o.code, o.stdout)
	}
	// The manual restart counts at the agent: a fault that began before it,
	// asked about inside its min gap, gets that restart's answer and is
	// not restarted again.
	began := strconv.FormatInt(time.Now().Add(-30*time.Second).Unix(), 10)
	o = runBin(t, nil, s.bin, append(s.event("--fault", "9", "--fault-since="+began), "CRITICAL", "HARD", "3", "127.0.0.1", "web1", "Worker Svc")...)
	if o.code != 0 || !strings.Contains(o.stdout, "the same fault under another id") {
		t.Fatalf("event after manual restart: %d %q", o.code, o.stdout)
	}
	if s.l.Actions(t) != 1 {
		t.Fatalf("%d actions", s.l.Actions(t))
	}
	o = runBin(t, nil, s.bin, "send", "restart", "--host", "127.0.0.1", "--port", itoa(s.l.Port), "--target", "demo",
		"--key-file", rigtest.OtherKeyFile(t), "--hostname", "web1", "--state-dir", s.state)
	if o.code != 2 || !strings.Contains(o.stdout, "denied") {
		t.Fatalf("wrong key: %d %q", o.code, o.stdout)
	}
	// --agent wins over --hostname; a wrong one is refused by the agent.
	o = runBin(t, nil, s.bin, append([]string{"send", "ping", "--agent", "web2"}, common...)...)
	if o.code != 2 || !strings.Contains(o.stdout, "denied") {
		t.Fatalf("wrong agent: %d %q", o.code, o.stdout)
	}
}

// TestKeys: the fleet key and host keys made the documented way.
func TestKeys(t *testing.T) {
	bin := testutil.Binary(t, "handle_worker")
	dir := t.TempDir()
	fleetFile := filepath.Join(dir, "fleet1.key")
	o := runBin(t, nil, bin, "genkey", "--id", "fleet1", "--out", fleetFile)
	if o.code != 0 || !strings.Contains(o.stdout, `wrote fleet key "fleet1" to `+fleetFile) || !strings.Contains(o.stdout, "issue-key") {
		t.Fatalf("genkey: %d %q %q", o.code, o.stdout, o.stderr)
	}
	fleet, err := protocol.LoadKeyFile(fleetFile)
	if err != nil || fleet.Kind != protocol.FleetKey || fleet.ID != "fleet1" {
		t.Fatalf("fleet key %v, %v", fleet.Kind, err)
	}
	before, _ := os.ReadFile(fleetFile)
	o = runBin(t, nil, bin, "genkey", "--id", "fleet1", "--out", fleetFile)
	if after, _ := os.ReadFile(fleetFile); o.code != 1 || !strings.Contains(o.stderr, "already exists") || !bytes.Equal(before, after) {
		t.Fatalf("genkey over a key: %d %q", o.code, o.stderr)
	}

	// To stdout: the key line and nothing else, for import-key.
	o = runBin(t, nil, bin, "issue-key", "--key-file", fleetFile, "--agent", "web1")
	want, _ := fleet.ForAgent("web1")
	wantText, _ := want.MarshalText()
	if o.code != 0 || o.stdout != string(wantText) || o.stderr != "" {
		t.Fatalf("issue-key: %d %q %q", o.code, o.stdout, o.stderr)
	}
	var got protocol.Key
	if err := got.UnmarshalText([]byte(o.stdout)); err != nil || got.Kind != protocol.HostKey || got.Agent != "web1" || got.ID != "fleet1" {
		t.Fatalf("issued %+v, %v", got.Kind, err)
	}
	hostFile := filepath.Join(dir, "web1.key")
	o = runBin(t, nil, bin, "issue-key", "--key-file", fleetFile, "--agent", "web1", "--out", hostFile)
	if o.code != 0 || !strings.Contains(o.stdout, "wrote host key for agent web1 (fleet fleet1) to "+hostFile) {
		t.Fatalf("issue-key --out: %d %q %q", o.code, o.stdout, o.stderr)
	}
	if fi, err := os.Stat(hostFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("host key file %v %v", fi, err)
	}
	if b, _ := os.ReadFile(hostFile); !bytes.Equal(b, wantText) {
		t.Fatal("--out wrote another key than stdout")
	}
	// Only a fleet key derives: a host key is refused, and stdout stays empty.
	o = runBin(t, nil, bin, "issue-key", "--key-file", hostFile, "--agent", "web2")
	if o.code != 1 || o.stdout != "" || !strings.Contains(o.stderr, "not a fleet key") {
		t.Fatalf("issue-key from a host key: %d %q %q", o.code, o.stdout, o.stderr)
	}
	// Usage errors go to stderr too: stdout may be the pipe to import-key.
	o = runBin(t, nil, bin, "issue-key", "--key-file", fleetFile)
	if o.code != 3 || o.stdout != "" || !strings.Contains(o.stderr, "--agent") {
		t.Fatalf("issue-key without --agent: %d %q %q", o.code, o.stdout, o.stderr)
	}
	o = runBin(t, nil, bin, "issue-key", "--key-file", fleetFile, "--agent", "Web1")
	if o.code != 1 || o.stdout != "" || !strings.Contains(o.stderr, `agent name "Web1"`) {
		t.Fatalf("issue-key bad agent: %d %q %q", o.code, o.stdout, o.stderr)
	}
}

// TestEventLogFileFIFO: a --log-file nobody reads (a FIFO) must not block
// the handler past its deadline: it logs to stderr instead and says why.
func TestEventLogFileFIFO(t *testing.T) {
	bin := testutil.Binary(t, "handle_worker")
	dir := t.TempDir()
	fifo := filepath.Join(dir, "log.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	o := runBin(t, nil, bin, "event", "--key-file", keyFile(t, 0o600), "--target", "demo", "--state-dir", dir,
		"--deadline", "2s", "--log-file", fifo, "OK", "HARD", "1", "127.0.0.1", "web1", "w")
	if o.code != 0 || !strings.Contains(oneLine(t, o), "recovered") {
		t.Fatalf("exit %d %q %q", o.code, o.stdout, o.stderr)
	}
	if !strings.Contains(o.stderr, "cannot open --log-file") {
		t.Errorf("stderr does not say the log file was unusable: %q", o.stderr)
	}
	if took := time.Since(begin); took > 30*time.Second {
		t.Errorf("took %v", took)
	}
}

// TestEventBrokenKeyTellsNagios: when a fault needs healing and the
// handler's own key file is unusable, Nagios gets a persistent comment on
// the service (it only logs a failing handler's output), and exit is 3.
// Non-critical events stay silent.
func TestEventBrokenKeyTellsNagios(t *testing.T) {
	s := newSetup(t)
	args := func(state string) []string {
		return []string{"event", "--key-file", filepath.Join(t.TempDir(), "missing.key"), "--target", "demo",
			"--state-dir", s.state, "--command-file", s.fifo, state, "HARD", "3", "127.0.0.1", "web1", "Worker"}
	}
	if o := runBin(t, nil, s.bin, args("OK")...); o.code != 3 {
		t.Fatalf("OK with a missing key: exit %d %q", o.code, o.stdout)
	}
	if c := s.commands(); len(c) != 0 {
		t.Fatalf("an OK event wrote to the command file: %q", c)
	}
	o := runBin(t, nil, s.bin, args("CRITICAL")...)
	if o.code != 3 || !strings.Contains(o.stdout, "key file") {
		t.Fatalf("CRITICAL with a missing key: exit %d %q", o.code, o.stdout)
	}
	c := s.commands()
	if len(c) != 1 || !strings.Contains(c[0], "] ADD_SVC_COMMENT;web1;Worker;1;handle_worker;auto-healing impossible: handle_worker configuration error: key file:") {
		t.Fatalf("command file: %q", c)
	}
	// The agent's host key cannot sign for another agent: the same.
	o = runBin(t, nil, s.bin, "event", "--key-file", s.l.HostKeyFile, "--agent", "web2", "--target", "demo",
		"--state-dir", s.state, "--command-file", s.fifo, "CRITICAL", "HARD", "3", "127.0.0.1", "web1", "Worker")
	if o.code != 3 || !strings.Contains(o.stdout, `this host key is for agent "web1", not "web2"`) {
		t.Fatalf("host key of another agent: exit %d %q", o.code, o.stdout)
	}
	if c := s.commands(); len(c) != 1 || !strings.Contains(c[0], ";1;handle_worker;auto-healing impossible: handle_worker configuration error: ") {
		t.Fatalf("command file: %q", c)
	}
	if s.l.Actions(t) != 0 {
		t.Fatal("an action ran without a key")
	}
}
