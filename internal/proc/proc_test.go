package proc

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as a child that ignores SIGTERM, so one process
// (no grandchildren an init without reaping could leave as zombies) needs
// SIGKILL.
func TestMain(m *testing.M) {
	if os.Getenv("PROC_TEST_CHILD") == "ignore-term" {
		signal.Ignore(syscall.SIGTERM)
		os.Stdout.WriteString("ready\n")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestParseStat(t *testing.T) {
	// tty (field 7) to vsize (field 23): start time is the 16th of them.
	tail := " 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 4242 17\n"
	tests := []struct {
		name, line string
		want       Stat
		ok         bool
	}{
		{"plain", "12 (sleep) S 7 12 5" + tail, Stat{State: 'S', PPID: 7, PGRP: 12, Session: 5, Start: 4242}, true},
		{"name with spaces and parentheses", "12 (a) Z (b c) Z 1 12 12" + tail, Stat{State: 'Z', PPID: 1, PGRP: 12, Session: 12, Start: 4242}, true},
		{"no command name", "12 sleep S 7 12 5" + tail, Stat{}, false},
		{"too few fields", "12 (sleep) S 7 12 5 1 2", Stat{}, false},
		{"state not one letter", "12 (sleep) SS 7 12 5" + tail, Stat{}, false},
		{"ppid not a number", "12 (sleep) S x 12 5" + tail, Stat{}, false},
		{"start not a number", "12 (sleep) S 7 12 5 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 -1 17", Stat{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat(tt.line)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("parseStat = %+v, %v; want %+v, ok=%v", got, err, tt.want, tt.ok)
			}
		})
	}
}

func TestReadStatSelf(t *testing.T) {
	st, err := ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.PPID != os.Getppid() || st.PGRP != syscall.Getpgrp() || st.Start == 0 || st.State == 'Z' {
		t.Fatalf("ReadStat(self) = %+v", st)
	}
	for _, pid := range []int{0, -1} {
		if _, err := ReadStat(pid); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("ReadStat(%d) err = %v, want ErrNotExist", pid, err)
		}
	}
}

func TestAlive(t *testing.T) {
	live := exec.Command("sleep", "60")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = live.Process.Kill(); _ = live.Wait() })

	// A child that exits and is not reaped yet: a zombie.
	zombie := exec.Command("true")
	if err := zombie.Start(); err != nil {
		t.Fatal(err)
	}
	reaped := false
	t.Cleanup(func() {
		if !reaped {
			_ = zombie.Wait()
		}
	})
	waitState(t, zombie.Process.Pid, 'Z')
	if syscall.Kill(zombie.Process.Pid, 0) != nil {
		t.Fatal("kill(zombie, 0) failed: the case under test is not set up")
	}

	tests := []struct {
		name string
		pid  int
		want bool
	}{
		{"self", os.Getpid(), true},
		{"live child", live.Process.Pid, true},
		{"zombie child", zombie.Process.Pid, false},
		{"pid 0", 0, false},
		{"pid -1", -1, false},
		{"negative", -os.Getpid(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Alive(tt.pid); got != tt.want {
				t.Fatalf("Alive(%d) = %v, want %v", tt.pid, got, tt.want)
			}
		})
	}

	// Reaped: the pid names nothing at all.
	_ = zombie.Wait()
	reaped = true
	if Alive(zombie.Process.Pid) {
		t.Fatal("Alive(reaped child) = true")
	}
}

// waitState polls /proc until pid is in state, at most 10 s.
func waitState(t *testing.T, pid int, state byte) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := ReadStat(pid)
		if err == nil && st.State == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d not in state %c after 10 s: %+v %v", pid, state, st, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startGroup starts the test binary in its own process group, reaped in
// the background so that its exit empties the group.
func startGroup(t *testing.T, ignoreTerm bool) (pgid int, exited <-chan struct{}) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if ignoreTerm {
		cmd.Env = append(os.Environ(), "PROC_TEST_CHILD=ignore-term")
	} else {
		cmd = exec.Command("sleep", "60")
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if ignoreTerm { // SIGTERM must not arrive before signal.Ignore
		buf := make([]byte, 6)
		if _, err := out.Read(buf); err != nil || string(buf) != "ready\n" {
			t.Fatalf("child did not get ready: %q %v", buf, err)
		}
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); <-done })
	return cmd.Process.Pid, done
}

func TestGroupAlive(t *testing.T) {
	pgid, exited := startGroup(t, false)
	if !GroupAlive(pgid) {
		t.Fatal("GroupAlive(live group) = false")
	}
	for _, g := range []int{0, 1, -1, -pgid} {
		if GroupAlive(g) {
			t.Fatalf("GroupAlive(%d) = true", g)
		}
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-exited
	if GroupAlive(pgid) {
		t.Fatal("GroupAlive(emptied group) = true")
	}
}

func TestTerminateGroup(t *testing.T) {
	e := Escalation{Grace: 200 * time.Millisecond, KillWait: 10 * time.Second, Poll: 5 * time.Millisecond}

	t.Run("goes on SIGTERM", func(t *testing.T) {
		pgid, _ := startGroup(t, false)
		killed, stopped := e.TerminateGroup(context.Background(), pgid)
		if killed || !stopped || GroupAlive(pgid) {
			t.Fatalf("killed=%v stopped=%v alive=%v; want a clean SIGTERM stop", killed, stopped, GroupAlive(pgid))
		}
	})
	t.Run("ignores SIGTERM, gets SIGKILL", func(t *testing.T) {
		pgid, _ := startGroup(t, true)
		start := time.Now()
		killed, stopped := e.TerminateGroup(context.Background(), pgid)
		if !killed || !stopped || GroupAlive(pgid) {
			t.Fatalf("killed=%v stopped=%v alive=%v; want SIGKILL", killed, stopped, GroupAlive(pgid))
		}
		if d := time.Since(start); d < e.Grace {
			t.Fatalf("SIGKILL after %s, before the %s grace", d, e.Grace)
		}
	})
	t.Run("refuses pgid 1 and below", func(t *testing.T) {
		for _, g := range []int{1, 0, -1} {
			if killed, stopped := e.TerminateGroup(context.Background(), g); killed || !stopped {
				t.Fatalf("TerminateGroup(%d) = %v, %v", g, killed, stopped)
			}
		}
	})
}

func TestTerminate(t *testing.T) {
	e := Escalation{Grace: 50 * time.Millisecond, KillWait: 50 * time.Millisecond, Poll: time.Millisecond}
	tests := []struct {
		name        string
		goneAfter   syscall.Signal // 0 = never
		cancel      bool
		wantSignals []syscall.Signal
		wantKilled  bool
		wantStopped bool
	}{
		{"gone on SIGTERM", syscall.SIGTERM, false, []syscall.Signal{syscall.SIGTERM}, false, true},
		{"gone on SIGKILL", syscall.SIGKILL, false, []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}, true, true},
		{"survives both", 0, false, []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}, true, false},
		{"cancelled context cuts the waits", 0, true, []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			wait := e
			if tt.cancel {
				cancel()
				wait = Escalation{Grace: time.Hour, KillWait: time.Hour}
			}
			var sent []syscall.Signal
			gone := false
			signal := func(s syscall.Signal) {
				sent = append(sent, s)
				gone = gone || s == tt.goneAfter
			}
			start := time.Now()
			killed, stopped := wait.Terminate(ctx, signal, func() bool { return gone })
			if killed != tt.wantKilled || stopped != tt.wantStopped || !equal(sent, tt.wantSignals) {
				t.Fatalf("got killed=%v stopped=%v signals=%v; want %v %v %v",
					killed, stopped, sent, tt.wantKilled, tt.wantStopped, tt.wantSignals)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("Terminate took %s", d)
			}
		})
	}
}

func equal(a, b []syscall.Signal) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
