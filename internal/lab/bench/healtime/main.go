// Command healtime measures time to heal under a real Nagios Core 4 (run
// by internal/lab/bench/heal.sh, i.e. `make bench`; not a test).
//
// It starts the whole loop once (lab/rig: demo_worker, worker_listener,
// a throwaway Nagios with the sample definitions and interval_length=1), then
// crashes the worker N times, waiting for each heal, and splits every heal
// into the four phases from what the programs recorded:
//
//	detection     fault -> Nagios runs the handler at HARD CRITICAL
//	              (Nagios' debug log, microseconds): configured intervals x attempts
//	decision      handler start -> feedback read by Nagios, minus the listener's
//	              request time: process spawn, budget state, dial, HMAC, comment
//	action        the listener's request time (audit log), of which the
//	              restart script itself (the worker's stop + start-up) is the
//	              action duration the handler logs
//	confirmation  feedback read -> Nagios records the HARD recovery: the
//	              configured re-check delay, then one check_worker run
//
// "ours" is what the handler, the listener and the confirmation add beyond
// the configured intervals and the worker's own start-up: decision +
// listener overhead + (confirmation - configured re-check delay).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/selfheal/selfheal/internal/lab/engine"
	"github.com/selfheal/selfheal/internal/lab/rig"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("healtime", flag.ContinueOnError)
	fs.SetOutput(stderr)
	binDir := fs.String("bin-dir", "bin", "directory holding the four built binaries")
	configDir := fs.String("config-dir", "nagios-config", "the repository's nagios-config directory")
	runs := fs.Int("runs", 10, "heals to measure")
	fault := fs.String("fault", "crash", "fault to inject: crash or hang")
	keep := fs.Bool("keep", false, "keep the work directory")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *runs < 1 || *runs > 100 {
		fmt.Fprintln(stderr, "healtime: -runs must be 1..100")
		return 2
	}
	dir, err := os.MkdirTemp("", "healtime-")
	if err != nil {
		fmt.Fprintln(stderr, "healtime:", err)
		return 1
	}
	if *keep {
		fmt.Fprintln(stderr, "healtime: work directory", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	bins := map[string]string{}
	for _, name := range rig.Binaries {
		bins[name] = filepath.Join(*binDir, name)
	}
	// The whole benchmark is bounded: 30 s per heal plus start-up.
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*runs)*30*time.Second+time.Minute)
	defer cancel()
	opts := rig.LoopOptions{Kind: engine.Nagios4, Dir: dir, ConfigDir: *configDir, Bin: bins,
		// A budget the benchmark never reaches; restarts are >= 3 s apart,
		// and the agent's back-off is off (max_gap = min_gap): ten crashes
		// in a row are what it would space out.
		MaxRestarts: 1000, MinGap: "1s", MaxGap: "1s", Recheck: "1s"}
	l, err := rig.StartLoop(ctx, opts)
	if err != nil {
		fmt.Fprintln(stderr, "healtime:", err)
		return 1
	}
	defer l.Close()

	fmt.Fprintf(stdout, "Time to heal under Nagios Core 4, fault %q, %d runs\n", *fault, *runs)
	fmt.Fprintln(stdout, "configured: interval_length=1, check_interval=1, retry_interval=1, max_check_attempts=3,")
	fmt.Fprintf(stdout, "            check_worker -t %d --max-age %s, handle_worker --recheck-delay %s\n\n", l.Opts.CheckTimeout, l.Opts.MaxAge, l.Opts.Recheck)
	fmt.Fprintf(stdout, "%4s %10s %10s %10s %10s %10s %10s %10s\n", "run", "detect", "decide", "action", "(script)", "confirm", "total", "ours")
	var all []phases
	for i := 1; i <= *runs; i++ {
		p, err := measure(ctx, l, *fault)
		if err != nil {
			fmt.Fprintf(stderr, "healtime: run %d: %v\n%s", i, err, l.Report())
			return 1
		}
		all = append(all, p)
		fmt.Fprintf(stdout, "%4d %s\n", i, p.row())
		// Let the new worker settle (and the min gap pass) before the next fault.
		time.Sleep(2 * time.Second)
	}
	fmt.Fprintf(stdout, "%4s %s\n", "med", summarize(all, median).row())
	fmt.Fprintf(stdout, "%4s %s\n", "max", summarize(all, maxOf).row())
	fmt.Fprintln(stdout, "\nms; detect = fault -> handler started at HARD; decide = handler spawn + its own work;")
	fmt.Fprintln(stdout, "action = listener request (script = the restart script: worker stop + start-up);")
	fmt.Fprintln(stdout, "confirm = feedback -> HARD recovery (includes the 1 s re-check delay);")
	fmt.Fprintln(stdout, "ours = decide + listener overhead + (confirm - re-check delay).")
	return 0
}

// phases of one heal, in milliseconds.
type phases struct {
	Detect, Decide, Action, Script, Confirm, Total, Ours float64
}

func (p phases) row() string {
	return fmt.Sprintf("%10.1f %10.1f %10.1f %10.1f %10.1f %10.1f %10.1f", p.Detect, p.Decide, p.Action, p.Script, p.Confirm, p.Total, p.Ours)
}

func summarize(all []phases, f func([]float64) float64) phases {
	pick := func(g func(phases) float64) float64 {
		v := make([]float64, len(all))
		for i, p := range all {
			v[i] = g(p)
		}
		return f(v)
	}
	return phases{
		Detect:  pick(func(p phases) float64 { return p.Detect }),
		Decide:  pick(func(p phases) float64 { return p.Decide }),
		Action:  pick(func(p phases) float64 { return p.Action }),
		Script:  pick(func(p phases) float64 { return p.Script }),
		Confirm: pick(func(p phases) float64 { return p.Confirm }),
		Total:   pick(func(p phases) float64 { return p.Total }),
		Ours:    pick(func(p phases) float64 { return p.Ours }),
	}
}

func median(v []float64) float64 {
	sort.Float64s(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func maxOf(v []float64) float64 {
	m := v[0]
	for _, x := range v[1:] {
		m = max(m, x)
	}
	return m
}

// measure injects one fault, waits for the heal, and reads the phases from
// Nagios' debug log, the handler's log and the listener's audit log.
func measure(ctx context.Context, l *rig.Loop, fault string) (phases, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	debugOff := size(l.Inst.DebugFile)
	handlerOff := size(l.HandlerLog)
	auditOff := size(l.AuditLog)
	mark := l.Mark()
	if err := l.Fault(ctx, fault); err != nil {
		return phases{}, err
	}
	tFault := time.Now()
	if _, err := l.WaitHealed(ctx, mark); err != nil {
		return phases{}, err
	}
	var hl, al map[string]any
	for hl == nil || al == nil {
		hl = lastJSON(l.HandlerLog, handlerOff, func(m map[string]any) bool { return m["decision"] == "restart" })
		al = lastJSON(l.AuditLog, auditOff, func(m map[string]any) bool { return m["verb"] == "restart" })
		select {
		case <-ctx.Done():
			return phases{}, errors.New("no restart in the handler log or the audit log")
		case <-time.After(50 * time.Millisecond):
		}
	}
	d, err := readDebug(l.Inst.DebugFile, debugOff)
	if err != nil {
		return phases{}, err
	}
	listenerMS, _ := hl["action_duration"].(float64)
	requestMS, _ := al["duration_ms"].(float64)
	if requestMS == 0 || listenerMS == 0 {
		return phases{}, fmt.Errorf("missing durations: handler %v, audit %v", hl, al)
	}
	ms := func(a, b time.Time) float64 { return float64(b.Sub(a).Microseconds()) / 1000 }
	recheck, err := time.ParseDuration(l.Opts.Recheck)
	if err != nil {
		return phases{}, err
	}
	p := phases{
		Detect:  ms(tFault, d.handlerStart),
		Decide:  ms(d.handlerStart, d.feedback) - requestMS,
		Action:  requestMS,
		Script:  listenerMS,
		Confirm: ms(d.feedback, d.recovered),
		Total:   ms(tFault, d.recovered),
	}
	p.Ours = p.Decide + (p.Action - p.Script) + (p.Confirm - float64(recheck.Milliseconds()))
	return p, nil
}

func size(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// lastJSON returns the last JSON line after offset that satisfies match.
func lastJSON(path string, offset int64, match func(map[string]any) bool) map[string]any {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil
	}
	var found map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && match(m) {
			found = m
		}
	}
	return found
}

// debugTimes are the moments of one heal in Nagios' debug log.
type debugTimes struct {
	handlerStart time.Time // Nagios runs the handler at HARD CRITICAL
	feedback     time.Time // Nagios reads the handler's ADD_SVC_COMMENT
	recovered    time.Time // Nagios handles the HARD recovery
}

// readDebug finds the heal in the debug log written after offset. Lines
// look like "[1795560961.175968] [016.1] [pid=1205] Running event handler ...".
func readDebug(path string, offset int64) (debugTimes, error) {
	f, err := os.Open(path)
	if err != nil {
		return debugTimes{}, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return debugTimes{}, err
	}
	var d debugTimes
	var lastHandler time.Time
	svc := fmt.Sprintf("service '%s' on host '%s'", rig.ServiceName, rig.HostName)
	comment := fmt.Sprintf("ADD_SVC_COMMENT;%s;%s;", rig.HostName, rig.ServiceName)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		ts, ok := debugTime(line)
		if !ok {
			continue
		}
		switch {
		case strings.Contains(line, "Running event handler for "+svc):
			lastHandler = ts
		case d.feedback.IsZero() && strings.Contains(line, "Read raw external command") && strings.Contains(line, comment):
			d.feedback, d.handlerStart = ts, lastHandler
		case !d.feedback.IsZero() && d.recovered.IsZero() && strings.Contains(line, "Service experienced a HARD recovery"):
			d.recovered = ts
		}
	}
	if d.handlerStart.IsZero() || d.feedback.IsZero() || d.recovered.IsZero() {
		return d, fmt.Errorf("debug log %s lacks the heal (handler %v, feedback %v, recovery %v)", path,
			d.handlerStart, d.feedback, d.recovered)
	}
	return d, sc.Err()
}

func debugTime(line string) (time.Time, bool) {
	if !strings.HasPrefix(line, "[") {
		return time.Time{}, false
	}
	end := strings.IndexByte(line, ']')
	if end < 0 {
		return time.Time{}, false
	}
	sec, frac, _ := strings.Cut(line[1:end], ".")
	s, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	us, _ := strconv.ParseInt((frac + "000000")[:6], 10, 64)
	return time.Unix(s, us*1000), true
}
