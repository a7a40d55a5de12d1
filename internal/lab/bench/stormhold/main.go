// Command stormhold times the handler run a storm makes for each of its
// services once the zone rule holds: the whole handle_worker process, as
// the sample EventCommand runs it at HARD CRITICAL, against a real Icinga 2
// (the api feature only, active checks off) with -services services of
// which -failing are CRITICAL, the state directory already holding the
// records an endpoint has at that scale (-prior). It reports the handler's
// CPU and wall and what Icinga 2 spent meanwhile (its query of the zone's
// failing services, the comment), per run. With -vs, another build's
// handler runs in turn with -bin's (A B A B ...), each with its own state
// directory, so that both see the same machine. Run by
// internal/lab/bench/storm_hold.sh (`make bench`); not a test.
//
// -hold keeps everything up and prints a held run's command line.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
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
	var o opts
	flag.IntVar(&o.n, "n", 200, "held runs to time (per side)")
	flag.IntVar(&o.services, "services", 10000, "services in the Icinga 2 instance")
	flag.IntVar(&o.failing, "failing", 1000, "of them CRITICAL (the storm; a multiple of 100)")
	flag.IntVar(&o.prior, "prior", 950, "services whose records the state directory already holds")
	flag.StringVar(&o.binDir, "bin", "bin", "directory with handle_worker and worker_listener")
	flag.StringVar(&o.vs, "vs", "", "another directory with a handle_worker, run in turn with -bin's")
	flag.BoolVar(&o.hold, "hold", false, "print a held run's command line and wait for SIGINT instead of timing")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "stormhold:", err)
		os.Exit(1)
	}
}

type opts struct {
	n, services, failing, prior int
	binDir, vs                  string
	hold                        bool
}

func run(o opts) error {
	n, services, failing, binDir, vs := o.n, o.services, o.failing, o.binDir, o.vs
	if failing%100 != 0 || failing <= 0 || failing > services || n*2+20 > failing {
		return fmt.Errorf("-failing %d: a multiple of 100, at most -services, and room for the runs (2 × (-n + 10))", failing)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	binDir, err := filepath.Abs(binDir)
	if err != nil {
		return err
	}
	hw := filepath.Join(binDir, "handle_worker")
	dir, err := os.MkdirTemp("", "stormhold")
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
	objs.WriteString("object EventCommand \"selfheal-handle-worker\" { command = [ \"/bin/true\" ] }\n")
	for i := 0; i < services; i++ {
		h := fmt.Sprintf("h%03d", i/100)
		if i%100 == 0 {
			fmt.Fprintf(&objs, "object Host %q { check_command = \"lab-true\"; enable_active_checks = false }\n", h)
		}
		fmt.Fprintf(&objs, "object Service \"s%d\" { host_name = %q; check_command = \"lab-true\"; enable_active_checks = false; max_check_attempts = 1; event_command = \"selfheal-handle-worker\" }\n", i, h)
	}
	perms := []string{`"objects/query/Service"`, `"objects/query/Host"`, `"objects/query/Comment"`,
		`"actions/add-comment"`, `"actions/remove-comment"`, `"actions/reschedule-check"`, `"filter-expression"`}
	a, err := engine.NewAPI(engine.APIConfig{Objects: objs.String(),
		Users: []engine.APIUser{{Name: "selfheal", Password: "bench-password", Permissions: perms},
			{Name: "feeder", Password: "feeder-password", Permissions: []string{`"actions/process-check-result"`, `"objects/query/Service"`}}}})
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.Start(ctx); err != nil {
		return err
	}
	// The storm: the first -failing services CRITICAL (HARD: one attempt),
	// set as the lab's "feeder", an ApiUser the handler is not.
	ca, err := os.ReadFile(a.CAFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		return fmt.Errorf("no certificate in %s", a.CAFile)
	}
	hc := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: a.NodeName}}}
	post := func(path, override string, body any) ([]byte, error) {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, "POST", a.URL+path, bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		req.SetBasicAuth("feeder", "feeder-password")
		req.Header.Set("Accept", "application/json")
		if override != "" {
			req.Header.Set("X-HTTP-Method-Override", override)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var out bytes.Buffer
		if _, err := out.ReadFrom(resp.Body); err != nil {
			return nil, err
		}
		if resp.StatusCode != 200 {
			return nil, fmt.Errorf("%s: %s: %s", path, resp.Status, out.String())
		}
		return out.Bytes(), nil
	}
	hosts := failing / 100
	if _, err := post("/v1/actions/process-check-result", "", map[string]any{"type": "Service",
		"filter": fmt.Sprintf(`service.host_name < "h%03d"`, hosts), "exit_status": 2, "plugin_output": "storm"}); err != nil {
		return err
	}
	b, err := post("/v1/objects/services", "GET", map[string]any{"filter": "service.state == 2", "attrs": []string{"last_state_change", "host_name", "name"}})
	if err != nil {
		return err
	}
	var res struct {
		Results []struct {
			Attrs struct {
				LSC  float64 `json:"last_state_change"`
				Host string  `json:"host_name"`
				Name string  `json:"name"`
			} `json:"attrs"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return err
	}
	if len(res.Results) != failing {
		return fmt.Errorf("%d services CRITICAL, want %d", len(res.Results), failing)
	}
	creds := filepath.Join(dir, "credentials")
	if err := os.WriteFile(creds, []byte("selfheal:bench-password\n"), 0o600); err != nil {
		return err
	}
	// Side A is -bin's handler, side B -vs's: each its own state directory
	// (its own zone rule, holding the storm from its first run).
	type side struct{ hw, state string }
	sides := []side{{hw: hw, state: filepath.Join(dir, "state-a")}}
	if vs != "" {
		sides = append(sides, side{hw: filepath.Join(vs, "handle_worker"), state: filepath.Join(dir, "state-b")})
	}
	for _, sd := range sides {
		if err := os.Mkdir(sd.state, 0o700); err != nil {
			return err
		}
		// An endpoint's state directory in the scale lab: a record and
		// its lock for each service it ran the handler for.
		for i := range o.prior {
			for _, ext := range []string{".json", ".lock"} {
				if err := os.WriteFile(filepath.Join(sd.state, fmt.Sprintf("p%03d,w%d%s", i/100, i, ext)), nil, 0o600); err != nil {
					return err
				}
			}
		}
	}
	// What the sample EventCommand passes at HARD CRITICAL.
	event := func(sd side, host, svc, fault string) []string {
		args := []string{sd.hw, "event", "CRITICAL", "HARD", "1", "127.0.0.1", host, svc,
			"--key-file", files.FleetFile, "--target", "demo", "--port", strconv.Itoa(lport), "--agent", "worker1",
			"--state-dir", sd.state, "--fault", fault, "--deadline", "18s", "--recheck-delay", "2s",
			"--service-downtime", "0", "--host-downtime", "0", "--host-state", "UP", "--ack", "0", "--perfdata=",
			"--icinga-api", a.URL, "--icinga-ca", a.CAFile, "--icinga-credentials", creds, "--icinga-server-name", a.NodeName}
		return args
	}
	if o.hold {
		fmt.Printf("URL=%s CA=%s CREDS=%s NAME=%s PIDDIR=%s\n", a.URL, a.CAFile, creds, a.NodeName, a.Dir)
		fmt.Println(strings.Join(event(sides[0], res.Results[0].Attrs.Host, res.Results[0].Attrs.Name, "1"), " "))
		<-ctx.Done()
		return nil
	}
	icpu := func() time.Duration {
		out, _ := exec.Command("pgrep", "-f", "icinga2 .*"+a.Dir).Output()
		var t int64
		for _, p := range strings.Fields(string(out)) {
			b, err := os.ReadFile("/proc/" + p + "/stat")
			if err != nil {
				continue
			}
			f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			t += u + s
		}
		return time.Duration(t) * 10 * time.Millisecond
	}
	const warm = 10 // per side, untimed: the storm's first runs read the zone and start holding
	type stat struct {
		wall, cpu []time.Duration
		icinga    time.Duration
	}
	stats := make([]stat, len(sides))
	next := 0
	for round := range warm + n {
		for k, sd := range sides {
			if next >= len(res.Results) {
				return fmt.Errorf("only %d failing services for %d runs", len(res.Results), (warm+n)*len(sides))
			}
			s := res.Results[next]
			next++
			args := event(sd, s.Attrs.Host, s.Attrs.Name, strconv.FormatFloat(s.Attrs.LSC, 'f', -1, 64))
			cmd := exec.CommandContext(ctx, args[0], args[1:]...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			i0 := icpu()
			start := time.Now()
			err := cmd.Run()
			wall := time.Since(start)
			ic := icpu() - i0
			if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 || !strings.Contains(out.String(), "held back (mass failure)") {
				return fmt.Errorf("run %d of %s: not held by the zone rule (%v): %s", round, sd.hw, err, out.String())
			}
			if round < warm {
				continue
			}
			stats[k].wall = append(stats[k].wall, wall)
			stats[k].cpu = append(stats[k].cpu, cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
			stats[k].icinga += ic
		}
	}
	med := func(ds []time.Duration) float64 {
		s := slices.Clone(ds)
		slices.Sort(s)
		return float64(s[len(s)/2].Microseconds()) / 1000
	}
	fmt.Printf("== A storm's held run (HARD CRITICAL, the zone rule holding; %d of %d services failing), whole handler process\n", len(res.Results), services)
	for k, sd := range sides {
		fmt.Printf("%s: %d runs: wall median %.1f ms, CPU median %.1f ms; Icinga 2 CPU %.1f ms per run (the comment, and the zone queries that fell in this pace's runs)\n",
			sd.hw, len(stats[k].wall), med(stats[k].wall), med(stats[k].cpu), float64(stats[k].icinga.Microseconds())/1000/float64(len(stats[k].wall)))
	}
	return nil
}
