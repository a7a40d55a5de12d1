package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/selfheal/selfheal/internal/proc"
)

// Config is the foreground worker's configuration (`demo_worker run`).
type Config struct {
	Listen     string  // host:port for /status and the control endpoint
	PIDFile    string  // written once listening, removed on a clean exit
	JobsPerSec float64 // generated load; 0 = idle worker
	QueueCap   int
	// HangStatusDelay is how long /status stalls while the worker is hung
	// before it answers with the stale heartbeat: longer than any sane
	// check timeout, so a hung worker looks hung, yet bounded.
	HangStatusDelay time.Duration
	Version         string
}

func (c Config) withDefaults() Config {
	if c.QueueCap <= 0 {
		c.QueueCap = DefaultQueueCap
	}
	if c.HangStatusDelay <= 0 {
		c.HangStatusDelay = DefaultHangStatusDelay
	}
	return c
}

// Deps are Run's collaborators.
type Deps struct {
	Now      func() time.Time // nil = time.Now
	Log      zerolog.Logger
	PID      int          // written to the pid file and shown in /status
	Listener net.Listener // nil = listen on Config.Listen
}

// Result is how Run ended.
type Result struct {
	Code    int   // process exit code
	Crashed bool  // the crash fault was injected: exit at once, leave the pid file
	Err     error // why it failed, when Code != 0
}

// CrashExitCode is the exit code of an injected crash (EX_SOFTWARE).
const CrashExitCode = 70

// Run serves the worker until ctx ends (a clean stop) or a crash is
// injected. It never exits the process itself.
func Run(ctx context.Context, cfg Config, deps Deps) Result {
	cfg = cfg.withDefaults()
	if deps.Now == nil {
		deps.Now = time.Now
	}
	ln := deps.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return Result{Code: 1, Err: fmt.Errorf("listen: %w", err)}
		}
	}
	defer ln.Close()

	w := newWorker(cfg, deps.Now, deps.PID)
	stop := make(chan struct{})
	crash := make(chan struct{}, 1)
	srv := &http.Server{
		Handler:           w.handler(stop, crash, deps.Log),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       30 * time.Second,
	}

	if cfg.PIDFile != "" {
		if err := proc.WritePIDFile(cfg.PIDFile, deps.PID); err != nil {
			return Result{Code: 1, Err: err}
		}
	}
	deps.Log.Info().Str("listen", ln.Addr().String()).Int("pid", deps.PID).
		Float64("jobs_per_sec", cfg.JobsPerSec).Msg("demo worker started")

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); w.generate(stop) }()
	go func() { defer wg.Done(); w.process(stop) }()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	var res Result
	select {
	case <-ctx.Done():
		deps.Log.Info().Msg("stopping")
	case <-crash:
		// A crash leaves everything behind, pid file included, as a real
		// one would; daemon start copes with the stale file.
		deps.Log.Warn().Msg("crashing: injected fault")
		close(stop)
		srv.Close()
		return Result{Code: CrashExitCode, Crashed: true, Err: errors.New("crashed: injected fault")}
	case err := <-served:
		res = Result{Code: 1, Err: fmt.Errorf("serve: %w", err)}
	}
	close(stop)
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	wg.Wait()
	if cfg.PIDFile != "" {
		proc.RemovePIDFile(cfg.PIDFile, deps.PID)
	}
	deps.Log.Info().Msg("stopped")
	return res
}

// handler serves GET /status and the loopback-only POST /fault/{name}.
func (w *Worker) handler(stop <-chan struct{}, crash chan<- struct{}, log zerolog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(rw http.ResponseWriter, r *http.Request) {
		if resume := w.hung(); resume != nil {
			// A hung worker's status page is stuck behind the same lock as
			// its work: answer late, with the stale heartbeat, or not at all.
			t := time.NewTimer(w.cfg.HangStatusDelay)
			defer t.Stop()
			select {
			case <-r.Context().Done():
				return
			case <-stop:
				return
			case <-resume:
			case <-t.C:
			}
		}
		rw.Header().Set("Content-Type", "application/json")
		rw.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(rw)
		enc.SetIndent("", "  ")
		_ = enc.Encode(w.Document())
	})
	mux.HandleFunc("POST /fault/{name}", func(rw http.ResponseWriter, r *http.Request) {
		if !loopbackPeer(r.RemoteAddr) {
			log.Warn().Str("peer", r.RemoteAddr).Msg("fault request refused: not loopback")
			http.Error(rw, "fault injection is allowed from loopback only", http.StatusForbidden)
			return
		}
		f, err := ParseFault(r.PathValue("name"))
		if err != nil {
			http.Error(rw, err.Error(), http.StatusNotFound)
			return
		}
		log.Warn().Str("fault", string(f)).Msg("fault injected")
		if f == FaultCrash {
			fmt.Fprintf(rw, "crashing pid %d\n", w.pid)
			if fl, ok := rw.(http.Flusher); ok {
				fl.Flush()
			}
			select {
			case crash <- struct{}{}:
			default:
			}
			return
		}
		w.inject(f)
		if f == FaultClear {
			fmt.Fprintf(rw, "faults cleared on pid %d\n", w.pid)
			return
		}
		fmt.Fprintf(rw, "fault %s injected into pid %d\n", f, w.pid)
	})
	mux.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
		http.Error(rw, "demo_worker: GET /status, POST /fault/{crash|hang|degrade|fail|depfail|clear} (loopback only)", http.StatusNotFound)
	})
	return mux
}

// loopbackPeer reports whether a RemoteAddr is a loopback address, with
// IPv4-mapped IPv6 unmapped first.
func loopbackPeer(remote string) bool {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false
	}
	return ap.Addr().Unmap().IsLoopback()
}
