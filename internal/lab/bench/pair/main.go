// Command pair times two commands as whole processes, in turn (A B A B
// ...), and prints each one's median wall and CPU time (user + system, the
// kernel's own accounting of the reaped child) and the medians of the
// per-pair ratios A/B. Pairing is what makes a ratio hold on a shared
// machine whose load drifts: both sides of a pair see the same load. The
// load average is printed before and after. Run by
// internal/lab/bench/check_worker.sh (`make bench`); not a test.
//
// Usage: pair -n 500 -warmup 20 -a 'CMD ARGS' -b 'CMD ARGS'
//
// Commands are split on spaces and run without a shell; their output
// goes to /dev/null. A run that exits non-zero is counted and reported.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"
)

type sample struct{ wall, cpu time.Duration }

func main() {
	n := flag.Int("n", 500, "counted pairs")
	warm := flag.Int("warmup", 20, "uncounted pairs first")
	a := flag.String("a", "", "command A")
	b := flag.String("b", "", "command B")
	envA := flag.String("env-a", "", "extra environment for A only: K=V, space-separated (variants of one binary)")
	flag.Parse()
	if *a == "" || *b == "" || *n < 1 {
		fmt.Fprintln(os.Stderr, "usage: pair -n N -warmup W -a 'CMD' -b 'CMD'")
		os.Exit(2)
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ca, cb := strings.Fields(*a), strings.Fields(*b)
	fmt.Printf("load average before: %s\n", loadavg())
	var as, bs []sample
	var failA, failB int
	for i := 0; i < *warm+*n; i++ {
		sa, okA := run(ca, strings.Fields(*envA), null)
		sb, okB := run(cb, nil, null)
		if i < *warm {
			continue
		}
		as, bs = append(as, sa), append(bs, sb)
		if !okA {
			failA++
		}
		if !okB {
			failB++
		}
	}
	fmt.Printf("load average after:  %s\n", loadavg())
	if *envA != "" {
		*a = *envA + " " + *a
	}
	fmt.Printf("A = %s\nB = %s\n%d pairs after %d warm-up pairs; non-zero exits: A %d, B %d\n", *a, *b, *n, *warm, failA, failB)
	fmt.Printf("%-10s %12s %12s %12s %12s\n", "", "A median", "B median", "A/B median", "A/B p25-p75")
	for _, f := range []struct {
		name string
		get  func(sample) time.Duration
	}{{"wall", func(s sample) time.Duration { return s.wall }}, {"cpu", func(s sample) time.Duration { return s.cpu }}} {
		var va, vb, r []float64
		for i := range as {
			x, y := f.get(as[i]).Seconds(), f.get(bs[i]).Seconds()
			va, vb = append(va, x), append(vb, y)
			if y > 0 {
				r = append(r, x/y)
			}
		}
		fmt.Printf("%-10s %9.3f ms %9.3f ms %11.3fx %6.2f-%.2fx\n", f.name, 1000*q(va, .5), 1000*q(vb, .5), q(r, .5), q(r, .25), q(r, .75))
	}
}

// run starts one command and waits for it; the CPU time is the reaped
// child's rusage.
func run(argv, env []string, null *os.File) (sample, bool) {
	cmd := exec.Command(argv[0], argv[1:]...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = null, null
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	var cpu time.Duration
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return sample{wall: wall, cpu: cpu}, err == nil
}

// q is the p-quantile of v (nearest rank).
func q(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[int(p*float64(len(s)-1)+0.5)]
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
