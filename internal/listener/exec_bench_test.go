package listener

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/protocol"
)

// BenchmarkRunAction: the executor's cost per run of /bin/true, next to a
// bare exec.Command(...).Run() (go test -bench . -run '^$').
func BenchmarkRunAction(b *testing.B) {
	a := Action{Argv: []string{"/bin/true"}, Timeout: 10 * time.Second, KillGrace: time.Second, Dir: "/", env: []string{"PATH=" + DefaultPath}}
	e := NewExecutor(b.TempDir(), nil)
	for b.Loop() {
		if r := e.runAction(a); r.Outcome != "ok" {
			b.Fatal(r)
		}
	}
}

func BenchmarkBareExec(b *testing.B) {
	for b.Loop() {
		if err := exec.Command("/bin/true").Run(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBareExecPgid(b *testing.B) {
	for b.Loop() {
		c := exec.Command("/bin/true")
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := c.Run(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBareExecPipe(b *testing.B) {
	for b.Loop() {
		c := exec.Command("/bin/true")
		t := &tailBuffer{max: 4000}
		c.Stdout, c.Stderr = t, t
		if err := c.Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServerRestart: full authenticated restarts of /bin/true through
// a real listener and client, 8 services in parallel (no coalescing), each
// with its own fault: the fault record and the restart time are written
// (fsync'ed) before each run and the outcome after it.
func BenchmarkServerRestart(b *testing.B) {
	dir := b.TempDir()
	fleet, _ := protocol.GenerateFleetKey("bench")
	k, _ := fleet.ForAgent("bench1")
	kp := dir + "/k.key"
	protocol.WriteKeyFile(kp, k)
	y := "agent: bench1\nkeys: [" + kp + "]\nallow: [\"127.0.0.1/32\"]\nstate_dir: " + dir + "/state\n" +
		"limits: {rate: 1000000, burst: 1000000, max_conns_per_source: 256}\nbudget: {max: 10000, window: 1s, min_gap: 0s}\nservices:\n"
	for i := range 8 {
		y += "  svc" + strconv.Itoa(i) + ":\n    actions:\n      restart: {argv: [/bin/true]}\n"
	}
	cfg, err := Parse([]byte(y))
	if err != nil {
		b.Fatal(err)
	}
	srv, err := NewServer(cfg, Deps{Audit: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln); close(done) }()
	cl, err := protocol.NewClient(protocol.ClientConfig{Addr: ln.Addr().String(), Key: fleet, Agent: "bench1"})
	if err != nil {
		b.Fatal(err)
	}
	var next, faults atomic.Int64
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		svc := "svc" + strconv.Itoa(int(next.Add(1)%8))
		for pb.Next() {
			fault := "f" + strconv.FormatInt(faults.Add(1), 10)
			rep, err := cl.Do(context.Background(), protocol.VerbRestart, svc, fault)
			if err != nil || rep.Outcome != protocol.OutcomeOK {
				b.Error(rep, err)
				return
			}
		}
	})
	b.StopTimer()
	cancel()
	<-done
}

// BenchmarkJudgeAction: the trust rule judged again before every run, for
// an interpreter and its script.
func BenchmarkJudgeAction(b *testing.B) {
	script := filepath.Join(b.TempDir(), "restart.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755); err != nil {
		b.Fatal(err)
	}
	t := fsutil.Self()
	for b.Loop() {
		if err := judgeAction(t, "service demo action restart", []string{"/bin/sh", script}); err != nil {
			b.Fatal(err)
		}
	}
}
