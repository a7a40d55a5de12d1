// Package worker is the worker demo_worker runs: a small job processor
// that serves the status contract (docs/status-contract.md) and accepts
// injected faults, so that every failure check_worker knows can be shown for
// real. It also holds the daemon mode (pid file, detached re-exec) that the
// listener's start/stop/restart actions drive.
package worker

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/selfheal/selfheal/internal/status"
)

// Fault is a failure injected through the control endpoint.
type Fault string

// The faults. Clear removes every active fault (a crash cannot be undone).
const (
	FaultCrash   Fault = "crash"   // the process exits at once
	FaultHang    Fault = "hang"    // work stops and /status stalls
	FaultDegrade Fault = "degrade" // jobs slow down, the latency sub-check warns
	FaultFail    Fault = "fail"    // jobs fail, the store sub-check is critical
	FaultDepFail Fault = "depfail" // the database the worker needs is down: a dependency-scoped critical
	FaultClear   Fault = "clear"
)

// Faults lists the valid fault names in the order the usage page shows them.
var Faults = []Fault{FaultCrash, FaultHang, FaultDegrade, FaultFail, FaultDepFail, FaultClear}

// ParseFault validates a fault name.
func ParseFault(s string) (Fault, error) {
	for _, f := range Faults {
		if string(f) == s {
			return f, nil
		}
	}
	return "", fmt.Errorf("unknown fault %q (want crash, hang, degrade, fail, depfail or clear)", s)
}

// Defaults for Config fields left zero.
const (
	DefaultQueueCap        = 1000
	DefaultHangStatusDelay = 60 * time.Second
	// idleTick is how often an idle worker proves it is alive: the heartbeat
	// advances even when no job arrives, so a quiet worker is not "stale".
	idleTick = 250 * time.Millisecond
	// Simulated I/O per job, normal and under the degrade fault, and the
	// duration above which the latency sub-check warns.
	normalIO       = 2 * time.Millisecond
	degradedIO     = 80 * time.Millisecond
	latencyWarnAt  = 50 * time.Millisecond
	payloadSize    = 16 << 10
	queueWarnRatio = 0.8
)

// job is one unit of generated work.
type job struct {
	id       uint64
	seed     uint64
	enqueued time.Time
}

// state is everything /status reports; guarded by Worker.mu.
type state struct {
	fault      map[Fault]bool
	resume     chan struct{} // closed when a hang is cleared
	heartbeat  time.Time
	done       uint64
	failed     uint64
	dropped    uint64
	lastDur    time.Duration
	avgDur     time.Duration // exponentially weighted, alpha 1/8
	lastDigest [sha256.Size]byte
}

// Worker processes jobs and answers for itself. Create it with newWorker.
type Worker struct {
	cfg     Config
	now     func() time.Time
	pid     int
	started time.Time
	queue   chan job

	mu sync.Mutex
	st state
}

func newWorker(cfg Config, now func() time.Time, pid int) *Worker {
	w := &Worker{
		cfg:     cfg,
		now:     now,
		pid:     pid,
		started: now(),
		queue:   make(chan job, cfg.QueueCap),
	}
	w.st.fault = map[Fault]bool{}
	w.st.heartbeat = w.started
	return w
}

// inject applies a fault. Crash is handled by the caller (it ends Run).
func (w *Worker) inject(f Fault) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch f {
	case FaultClear:
		if w.st.fault[FaultHang] && w.st.resume != nil {
			close(w.st.resume)
		}
		w.st.resume = nil
		clear(w.st.fault)
	case FaultHang:
		if !w.st.fault[FaultHang] {
			w.st.resume = make(chan struct{})
		}
		w.st.fault[f] = true
	default:
		w.st.fault[f] = true
	}
}

// hung returns the channel that is closed when the current hang is cleared,
// or nil when the worker is not hung.
func (w *Worker) hung() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.st.fault[FaultHang] {
		return nil
	}
	return w.st.resume
}

// generate enqueues jobs at the configured rate until stop is closed. A full
// queue drops the job and counts it, as a real intake would shed load.
func (w *Worker) generate(stop <-chan struct{}) {
	if w.cfg.JobsPerSec <= 0 {
		return
	}
	t := time.NewTicker(time.Duration(float64(time.Second) / w.cfg.JobsPerSec))
	defer t.Stop()
	var id uint64
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			id++
			select {
			case w.queue <- job{id: id, seed: rand.Uint64(), enqueued: w.now()}:
			default:
				w.mu.Lock()
				w.st.dropped++
				w.mu.Unlock()
			}
		}
	}
}

// process runs jobs until stop is closed. While hung it does nothing at all:
// no jobs, no heartbeat, exactly what a deadlocked worker looks like.
func (w *Worker) process(stop <-chan struct{}) {
	idle := time.NewTicker(idleTick)
	defer idle.Stop()
	payload := make([]byte, payloadSize)
	for {
		if resume := w.hung(); resume != nil {
			select {
			case <-stop:
				return
			case <-resume:
			}
			continue
		}
		select {
		case <-stop:
			return
		case <-idle.C:
			w.mu.Lock()
			w.st.heartbeat = w.now()
			w.mu.Unlock()
		case j := <-w.queue:
			w.runJob(j, payload, stop)
		}
	}
}

// runJob does real (small) CPU work on a generated payload plus a simulated
// I/O wait, and records the outcome.
func (w *Worker) runJob(j job, payload []byte, stop <-chan struct{}) {
	start := w.now()
	var seed [8]byte
	binary.LittleEndian.PutUint64(seed[:], j.seed)
	for i := 0; i < len(payload); i += 8 {
		copy(payload[i:], seed[:])
		seed[i/8%8] ^= byte(i)
	}
	digest := sha256.Sum256(payload)

	w.mu.Lock()
	io, failing := normalIO, w.st.fault[FaultFail]
	if w.st.fault[FaultDegrade] {
		io = degradedIO
	}
	w.mu.Unlock()
	t := time.NewTimer(io)
	select {
	case <-stop:
		t.Stop()
		return
	case <-t.C:
	}

	d := w.now().Sub(start)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.st.heartbeat = w.now()
	if failing {
		w.st.failed++
		return
	}
	w.st.done++
	w.st.lastDigest = digest
	w.st.lastDur = d
	if w.st.avgDur == 0 {
		w.st.avgDur = d
	} else {
		w.st.avgDur += (d - w.st.avgDur) / 8
	}
}

// Document is the status contract as the worker sees itself right now.
func (w *Worker) Document() status.Document {
	w.mu.Lock()
	st := w.st
	faults := map[Fault]bool{}
	for k, v := range w.st.fault {
		faults[k] = v
	}
	w.mu.Unlock()

	depth := len(w.queue)
	capacity := cap(w.queue)
	checks := []status.Check{queueCheck(depth, capacity, st.dropped)}

	lat := status.Check{Name: "latency", Status: "ok",
		Message: fmt.Sprintf("jobs take %s on average", st.avgDur.Round(time.Microsecond))}
	switch {
	case faults[FaultDegrade]:
		lat.Status = "warning"
		lat.Message = fmt.Sprintf("jobs slowed to %s each by the injected fault degrade (warn above %s)",
			degradedIO, latencyWarnAt)
	case st.avgDur > latencyWarnAt:
		lat.Status = "warning"
		lat.Message = fmt.Sprintf("jobs slow: %s on average (warn above %s)",
			st.avgDur.Round(time.Millisecond), latencyWarnAt)
	}
	checks = append(checks, lat)

	store := status.Check{Name: "store", Status: "ok", Message: "results written"}
	if faults[FaultFail] {
		store.Status = "critical"
		store.Message = "cannot write results: injected fault: fail"
	}
	checks = append(checks, store)

	// The database stands for a service the worker needs but does not own:
	// when it is down the worker is critical for its users, and a restart
	// of the worker would not bring it back.
	db := status.Check{Name: "database", Status: "ok", Scope: "dependency", Message: "reachable (simulated)"}
	if faults[FaultDepFail] {
		db.Status = "critical"
		db.Message = "cannot reach the database: injected fault: depfail"
	}
	checks = append(checks, db)

	overall := "ok"
	for _, c := range checks {
		overall = worse(overall, c.Status)
	}
	msg := fmt.Sprintf("pid %d: %d jobs done, %d failed, queue %d/%d",
		w.pid, st.done, st.failed, depth, capacity)
	if faults[FaultHang] {
		msg += "; hung (injected fault)"
	}

	zero, maxQ := 0.0, float64(capacity)
	hb, started := st.heartbeat.UTC(), w.started.UTC()
	return status.Document{
		Status:    overall,
		Message:   msg,
		Heartbeat: &hb,
		StartedAt: &started,
		Version:   w.cfg.Version,
		Checks:    checks,
		Metrics: []status.Metric{
			{Name: "queue_depth", Value: float64(depth), Min: &zero, Max: &maxQ},
			{Name: "jobs_done", Value: float64(st.done), UOM: "c"},
			{Name: "jobs_failed", Value: float64(st.failed), UOM: "c"},
			{Name: "jobs_dropped", Value: float64(st.dropped), UOM: "c"},
			{Name: "job_duration", Value: msFloat(st.avgDur), UOM: "ms", Min: &zero},
		},
	}
}

func queueCheck(depth, capacity int, dropped uint64) status.Check {
	c := status.Check{Name: "queue", Status: "ok",
		Message: fmt.Sprintf("%d of %d slots used", depth, capacity)}
	switch {
	case depth >= capacity:
		c.Status = "critical"
		c.Message = fmt.Sprintf("queue full (%d), %d jobs dropped", capacity, dropped)
	case float64(depth) >= queueWarnRatio*float64(capacity):
		c.Status = "warning"
		c.Message = fmt.Sprintf("queue backing up: %d of %d slots used", depth, capacity)
	}
	return c
}

// worse returns the worse of two status words (ok < warning < critical).
func worse(a, b string) string {
	rank := map[string]int{"ok": 0, "warning": 1, "critical": 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// msFloat renders a duration in milliseconds with microsecond precision.
func msFloat(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}
