package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/handler"
	"github.com/selfheal/selfheal/internal/lab/rig/rigtest"
	"github.com/selfheal/selfheal/internal/lab/testutil"
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
	if err := os.WriteFile(p, []byte("selfheal-key-v1 nagios1 "+strings.Repeat("ab", 32)+"\n"), mode); err != nil {
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
		{"empty address", append(base, "CRITICAL", "HARD", "3", "", "h", "s"), "HOSTADDRESS is empty"},
		{"bad target", append([]string{"event", "--key-file", k, "--target", "../x"}, ev...), `--target "../x"`},
		{"loose key file", append([]string{"event", "--key-file", loose, "--target", "demo"}, ev...), "chmod 600"},
		{"missing key file", append([]string{"event", "--key-file", k + ".nope", "--target", "demo"}, ev...), "no such file"},
		// A FIFO given by mistake must fail at once, not block until Nagios' SIGKILL.
		{"key file is a FIFO", append([]string{"event", "--key-file", fifo, "--target", "demo"}, ev...), "not a regular file"},
		{"CA file is a FIFO", append(append(base, "--tls-ca", fifo), ev...), "not a regular file"},
		{"client cert is a FIFO", append(append(base, "--tls-cert", fifo, "--tls-key", k), ev...), "not a regular file"},
		{"gap over window", append(append(base, "--min-gap", "2h"), ev...), "--min-gap 2h0m0s is longer than --window"},
		{"zero budget", append(append(base, "--max-restarts", "0"), ev...), "--max-restarts must be at least 1"},
		{"deadline", append(append(base, "--deadline", "0s"), ev...), "--deadline"},
		{"action", append(append(base, "--action", "stop"), ev...), "usage error"},
		{"soft attempt", append(append(base, "--soft-attempt", "-1"), ev...), "--soft-attempt"},
		{"send verb", []string{"send", "reboot", "--host", "h", "--target", "demo", "--key-file", k}, "usage error"},
		{"send host", []string{"send", "ping", "--target", "demo", "--key-file", k}, "--host"},
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
	o = runBin(t, nil, bin, "event", "--help")
	if o.code != 0 || !strings.Contains(o.stdout, "--soft-attempt") || !strings.Contains(o.stdout, "--command-file") {
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

func newSetup(t *testing.T) *setup {
	t.Helper()
	s := &setup{bin: testutil.Binary(t, "handle_worker"), l: rigtest.StartHandlerListener(t)}
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
// worker_listener, through a Nagios-like episode.
func TestEventEndToEnd(t *testing.T) {
	s := newSetup(t)
	ev := []string{"CRITICAL", "HARD", "3", "127.0.0.1", "web1", "Worker Svc"}

	o := runBin(t, nil, s.bin, append(s.event("--dry-run"), ev...)...)
	if o.code != 0 || !strings.Contains(o.stdout, "dry-run: would send restart demo to "+s.l.Addr()) ||
		!strings.Contains(o.stdout, "would write to "+s.fifo+": SCHEDULE_FORCED_SVC_CHECK;web1;Worker Svc;") || s.l.Actions(t) != 0 {
		t.Fatalf("dry-run: %d %q", o.code, o.stdout)
	}

	o = runBin(t, nil, s.bin, append(s.event(), ev...)...)
	line := oneLine(t, o)
	if o.code != 0 || !strings.HasPrefix(line, "handle_worker: web1/Worker Svc CRITICAL HARD 3: restart demo on "+s.l.Addr()+" ok in") {
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
	// same fault (or a HARD after a SOFT restart) must not restart again.
	o = runBin(t, nil, s.bin, append(s.event(), ev...)...)
	if o.code != 0 || !strings.Contains(o.stdout, "already restarted in this episode") || s.l.Actions(t) != 1 {
		t.Fatalf("repeat: %d %q", o.code, o.stdout)
	}

	// Recovery, then a second fault inside --min-gap: held back, exit 1.
	o = runBin(t, nil, s.bin, append(s.event(), "OK", "HARD", "3", "127.0.0.1", "web1", "Worker Svc")...)
	if o.code != 0 || !strings.Contains(o.stdout, "recovered") {
		t.Fatalf("recovery: %d %q", o.code, o.stdout)
	}
	o = runBin(t, nil, s.bin, append(s.event(), ev...)...)
	if o.code != 1 || !strings.Contains(o.stdout, "min gap 2m0s") || s.l.Actions(t) != 1 {
		t.Fatalf("min gap: %d %q", o.code, o.stdout)
	}
	if c := s.commands(); len(c) != 1 || !strings.Contains(c[0], "auto-restart held back") {
		t.Fatalf("command file: %q", c)
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
		if m["prog"] != "handle_worker" || m["service"] != "Worker Svc" {
			t.Fatalf("log line %v", m)
		}
		n++
	}
	if n != 5 {
		t.Fatalf("%d log lines for 5 invocations", n)
	}
}

func TestEventListenerDown(t *testing.T) {
	s := newSetup(t)
	port := rigtest.ClosedPort(t)
	start := time.Now()
	o := runBin(t, nil, s.bin, append([]string{"event", "--key-file", s.l.KeyFile, "--target", "demo", "--port", itoa(port),
		"--state-dir", s.state, "--deadline", "3s"}, "CRITICAL", "HARD", "3", "127.0.0.1", "web1", "w")...)
	if o.code != 2 || !strings.Contains(oneLine(t, o), "unreachable") {
		t.Fatalf("exit %d %q", o.code, o.stdout)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("took %s with --deadline 3s", took)
	}
	// Without --log-file the JSON line goes to stderr.
	var m map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(o.stderr)), &m); err != nil || m["level"] != "error" {
		t.Fatalf("stderr %q: %v", o.stderr, err)
	}
}

// TestEventKilledMidRequest: Nagios SIGKILLs the handler at its timeout.
// The restart was reserved before the request went out, so the state is
// valid and the attempt counts.
func TestEventKilledMidRequest(t *testing.T) {
	s := newSetup(t)
	cmd := exec.Command(s.bin, append([]string{"event", "--key-file", s.l.KeyFile, "--target", "hang", "--port", itoa(s.l.Port),
		"--state-dir", s.state}, "CRITICAL", "HARD", "3", "127.0.0.1", "web1", "w")...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	path := handler.Store{Dir: s.state}.Path("web1", "w")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil && bytes.Contains(b, []byte(`"pending"`)) {
			break
		}
		if time.Now().After(deadline) {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			cmd.Wait()
			t.Fatal("no pending restart recorded")
		}
		time.Sleep(5 * time.Millisecond)
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
	var st handler.StateFile
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("state after SIGKILL: %v\n%s", err, b)
	}
	if len(st.Restarts) != 1 || st.Restarts[0].Outcome != handler.RecordPending {
		t.Fatalf("state %+v", st.Restarts)
	}
	v := handler.DefaultBudget.Check(st.Restarts, time.Now())
	if v.Allowed {
		t.Fatal("a killed attempt does not count against the budget")
	}
}

// TestEventReadOnlyStateDir runs the binary as a user that cannot write
// the state dir (nobody, when the tests run as root): it fails closed.
func TestEventReadOnlyStateDir(t *testing.T) {
	s := newSetup(t)
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
	if os.Geteuid() == 0 {
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
		bin, key = filepath.Join(shared, "handle_worker"), filepath.Join(shared, "k.key")
		copyFile(t, s.bin, bin, 0o755)
		copyFile(t, s.l.KeyFile, key, 0o600)
		os.Chown(key, 65534, 65534)
	} else {
		os.Chmod(state, 0o555)
		defer os.Chmod(state, 0o755)
	}
	o := runBin(t, cred, bin, "event", "--key-file", key, "--target", "demo", "--port", itoa(s.l.Port), "--state-dir", state,
		"CRITICAL", "HARD", "3", "127.0.0.1", "web1", "w")
	if o.code != 1 || !strings.Contains(oneLine(t, o), "failing closed") || !strings.Contains(o.stdout, "permission denied") {
		t.Fatalf("exit %d %q %q", o.code, o.stdout, o.stderr)
	}
	if s.l.Actions(t) != 0 {
		t.Fatal("restarted without a writable budget state")
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
	s := newSetup(t)
	common := []string{"--host", "127.0.0.1", "--port", itoa(s.l.Port), "--target", "demo", "--key-file", s.l.KeyFile,
		"--state-dir", s.state, "--hostname", "web1", "--service", "Worker Svc"}
	o := runBin(t, nil, s.bin, append([]string{"send", "status"}, common...)...)
	if o.code != 0 || !strings.Contains(o.stdout, "status demo on "+s.l.Addr()+" ok in") || !strings.Contains(o.stdout, "demo is running") {
		t.Fatalf("status: %d %q", o.code, o.stdout)
	}
	o = runBin(t, nil, s.bin, append([]string{"send", "restart"}, common...)...)
	if o.code != 0 || !strings.Contains(o.stdout, "restart demo on "+s.l.Addr()+" ok in") || !strings.Contains(o.stdout, "recorded in "+s.state) {
		t.Fatalf("restart: %d %q", o.code, o.stdout)
	}
	// The manual restart counts: the handler now respects the min gap.
	o = runBin(t, nil, s.bin, append(s.event(), "CRITICAL", "HARD", "3", "127.0.0.1", "web1", "Worker Svc")...)
	if o.code != 1 || !strings.Contains(o.stdout, "min gap") {
		t.Fatalf("event after manual restart: %d %q", o.code, o.stdout)
	}
	if s.l.Actions(t) != 1 {
		t.Fatalf("%d actions", s.l.Actions(t))
	}
	o = runBin(t, nil, s.bin, "send", "restart", "--host", "127.0.0.1", "--port", itoa(s.l.Port), "--target", "demo",
		"--key-file", rigtest.OtherKeyFile(t), "--state-dir", s.state)
	if o.code != 2 || !strings.Contains(o.stdout, "denied") {
		t.Fatalf("wrong key: %d %q", o.code, o.stdout)
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
	if s.l.Actions(t) != 0 {
		t.Fatal("an action ran without a key")
	}
}
