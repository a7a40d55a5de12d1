// Command writeback measures what the Icinga 2 REST API write-back costs
// a heal as the user pays it: the whole handle_worker process, run by
// hand as an EventCommand would run it, with --icinga-api against the same
// process without any write-back, paired (A B, B A, ... alternating, so
// that a drift of the machine's speed hits both). Each run is a real heal
// of a new fault: a worker_listener on loopback runs /bin/true as the
// restart. The API is a real Icinga 2 (the api feature only) holding
// -services services (active checks off, so the machine does not run
// 10,000 plugins meanwhile), as the ApiUser of docs/icinga-api.md.
//
// It also times the run the engine's start makes for every service (OK
// HARD 1, nothing on record) with and without --icinga-api.
//
// -hold keeps everything up and prints the two command lines, to time
// them with another tool.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/selfheal/selfheal/internal/lab/engine"
	"github.com/selfheal/selfheal/internal/lab/rig"
)

func main() {
	n := flag.Int("n", 40, "pairs of heals to time")
	services := flag.Int("services", 10000, "services in the Icinga 2 instance")
	binDir := flag.String("bin", "bin", "directory with handle_worker and worker_listener")
	hold := flag.Bool("hold", false, "print the commands and wait for SIGINT instead of timing")
	flag.Parse()
	if err := run(*n, *services, *binDir, *hold); err != nil {
		fmt.Fprintln(os.Stderr, "writeback:", err)
		os.Exit(1)
	}
}

func run(n, services int, binDir string, hold bool) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	binDir, err := filepath.Abs(binDir)
	if err != nil {
		return err
	}
	hw := filepath.Join(binDir, "handle_worker")
	dir, err := os.MkdirTemp("", "writeback")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// Every run is a new fault: no budget, gap or breaker may hold one.
	files, ln, lport, err := rig.StartTrueAgent(ctx, dir, binDir)
	if err != nil {
		return err
	}
	defer ln.Stop(10 * time.Second)

	var objs strings.Builder
	objs.WriteString("object CheckCommand \"lab-true\" { command = [ \"/bin/true\" ] }\n")
	objs.WriteString("object Host \"web1\" { check_command = \"lab-true\"; enable_active_checks = false }\n")
	objs.WriteString("object Service \"worker\" { host_name = \"web1\"; check_command = \"lab-true\"; enable_active_checks = false }\n")
	for i := 1; i < services; i++ {
		h := fmt.Sprintf("h%03d", i/100)
		if i%100 == 0 || i == 1 {
			fmt.Fprintf(&objs, "object Host %q { check_command = \"lab-true\"; enable_active_checks = false }\n", h)
		}
		fmt.Fprintf(&objs, "object Service \"s%d\" { host_name = %q; check_command = \"lab-true\"; enable_active_checks = false }\n", i, h)
	}
	perms := []string{`"objects/query/Service"`, `"objects/query/Host"`, `"objects/query/Comment"`,
		`"actions/add-comment"`, `"actions/remove-comment"`, `"actions/reschedule-check"`, `"filter-expression"`}
	a, err := engine.NewAPI(engine.APIConfig{Objects: objs.String(),
		Users: []engine.APIUser{{Name: "selfheal", Password: "bench-password", Permissions: perms}}})
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.Start(ctx); err != nil {
		log, _ := os.ReadFile(a.MainLog)
		con, _ := os.ReadFile(a.ConsoleLog)
		return fmt.Errorf("%w\n%s\n%s", err, tail(log), tail(con))
	}
	creds := filepath.Join(dir, "credentials")
	if err := os.WriteFile(creds, []byte("selfheal:bench-password\n"), 0o600); err != nil {
		return err
	}
	stateDir := func(name string) (string, error) {
		d := filepath.Join(dir, name)
		return d, os.Mkdir(d, 0o700)
	}
	withDir, err := stateDir("state-api")
	if err != nil {
		return err
	}
	withoutDir, err := stateDir("state-none")
	if err != nil {
		return err
	}
	// What the sample EventCommand passes, for one heal of a new fault.
	event := func(state, stateDir, fault string, api bool) []string {
		args := []string{hw, "event", state, "HARD", "1", "127.0.0.1", "web1", "worker",
			"--key-file", files.FleetFile, "--target", "demo", "--port", strconv.Itoa(lport), "--agent", "worker1",
			"--state-dir", stateDir, "--fault", fault, "--deadline", "18s", "--recheck-delay", "2s",
			"--service-downtime", "0", "--host-downtime", "0", "--host-state", "UP", "--ack", "0", "--perfdata="}
		if api {
			args = append(args, "--icinga-api", a.URL, "--icinga-ca", a.CAFile, "--icinga-credentials", creds,
				"--icinga-server-name", a.NodeName)
		}
		return args
	}
	if hold {
		q := func(args []string) string { return strings.Join(args, " ") }
		fmt.Printf("with write-back:    sh -c 'exec %s'\n", q(event("CRITICAL", withDir, "$$", true)))
		fmt.Printf("without write-back: sh -c 'exec %s'\n", q(event("CRITICAL", withoutDir, "$$", false)))
		fmt.Printf("OK, with the API:   %s\n", q(event("OK", withDir, "0", true)))
		fmt.Printf("OK, without:        %s\n", q(event("OK", withoutDir, "0", false)))
		fmt.Println("holding; ^C ends")
		<-ctx.Done()
		return nil
	}
	type sample struct{ wall, cpu time.Duration }
	fault := 1796000000
	exe := func(args []string, want string) (sample, error) {
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		err := cmd.Run()
		wall := time.Since(start)
		if err != nil || !strings.Contains(out.String(), want) || strings.Contains(out.String(), "not told") {
			return sample{}, fmt.Errorf("%s: %v: %s", strings.Join(args[2:8], " "), err, out.String())
		}
		return sample{wall, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}, nil
	}
	pair := func(state, want string) (sample, sample, error) {
		var with, without sample
		var err error
		first, second := true, false
		if fault%2 == 0 {
			first, second = false, true
		}
		for _, api := range []bool{first, second} {
			d := withoutDir
			if api {
				d = withDir
			}
			fault++
			s, e := exe(event(state, d, strconv.Itoa(fault), api), want)
			if e != nil {
				err = e
			}
			if api {
				with = s
			} else {
				without = s
			}
		}
		return with, without, err
	}
	// Warm-up: the first heal of each kind fills the caches.
	if _, _, err := pair("CRITICAL", "ok in"); err != nil {
		return err
	}
	report := func(what string, kind, want string) error {
		var w, wo, dw, dc []time.Duration
		for range n {
			a, b, err := pair(kind, want)
			if err != nil {
				return err
			}
			w, wo = append(w, a.wall), append(wo, b.wall)
			dw, dc = append(dw, a.wall-b.wall), append(dc, a.cpu-b.cpu)
		}
		med := func(ds []time.Duration) float64 {
			s := slices.Clone(ds)
			slices.Sort(s)
			return float64(s[len(s)/2].Microseconds()) / 1000
		}
		fmt.Printf("%s (%d pairs, %d services): handler process wall median %.1f ms with the write-back, %.1f ms without; paired difference median %.1f ms wall, %.1f ms CPU\n",
			what, n, services, med(w), med(wo), med(dw), med(dc))
		return nil
	}
	fmt.Println("== Icinga 2 API write-back, whole handler process, paired with and without --icinga-api")
	if err := report("heal (remove the last comment by name, add, reschedule)", "CRITICAL", "ok in"); err != nil {
		return err
	}
	return report("engine start, OK HARD 1 (no API call)", "OK", "no action")
}

func tail(b []byte) string {
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}
