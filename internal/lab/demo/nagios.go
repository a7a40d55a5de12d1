package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/selfheal/selfheal/internal/lab/engine"
	"github.com/selfheal/selfheal/internal/lab/rig"
	"github.com/selfheal/selfheal/internal/nagios"
)

// Nagios names of the demo's host and service: the rig's.
const (
	nagiosHost    = rig.HostName
	nagiosService = rig.ServiceName
)

// sampleDir finds nagios-config/nagios4: next to bin/ in the repository
// (`make demo-nagios`), or under the working directory.
func sampleDir(binDir string) (string, error) {
	for _, d := range []string{filepath.Join(binDir, "..", "nagios-config", "nagios4"), filepath.Join("nagios-config", "nagios4")} {
		if _, err := os.Stat(filepath.Join(d, "commands.cfg")); err == nil {
			return filepath.Abs(d)
		}
	}
	return "", errors.New("nagios-config/nagios4 not found next to --bin-dir or in the working directory: run `make demo-nagios` from the repository")
}

// tellNagios is the same story with a real Nagios Core 4 in charge: it runs
// check_worker every second, goes HARD CRITICAL after 3 attempts and runs
// handle_worker, which talks back through the command file. The demo only
// injects the faults and reports what Nagios recorded.
func (s *story) tellNagios(ctx context.Context) error {
	fmt.Fprintln(s.out, "selfheal demo under a real Nagios Core 4: a worker breaks and Nagios heals it.")
	fmt.Fprintf(s.out, "Nagios runs check_worker every second (interval_length=1, max_check_attempts=3) and\n"+
		"handle_worker at HARD CRITICAL. Restart budget for the demo, kept by the agent: %d restarts per %s,\n"+
		"min gap %s. Times in [brackets] are since the start.\n", maxRestarts, window, minGap)
	samples, err := sampleDir(s.cfg.BinDir)
	if err != nil {
		return err
	}
	// The agent is named after the Nagios host, as the sample's handler
	// command names it ($HOSTNAME$ lower-cased).
	s.agent = strings.ToLower(nagiosHost)
	if err := s.setUp(ctx); err != nil {
		return err
	}

	s.step("2. Start a real Nagios Core 4 with the project's sample commands and templates")
	ndir := filepath.Join(s.dir, "nagios")
	engineOut, err := os.Create(filepath.Join(s.dir, "nagios.out"))
	if err != nil {
		return err
	}
	defer engineOut.Close()
	// The demo's host and service on the sample's templates and commands;
	// $USER3$ is the fleet key. The small budget is in the agent's config.
	site := rig.Site{Kind: engine.Nagios4, Dir: ndir, Stderr: engineOut,
		ConfigDir: filepath.Dir(samples), BinDir: s.binDirAbs(),
		KeyFile: s.fleetFile, StateDir: s.handlerState, HandlerLog: s.handlerLog,
		CheckTimeout: checkTimeout, MaxAge: maxAge, Recheck: "1s"}
	_, wport, _ := strings.Cut(s.w.Addr, ":")
	site.WorkerPort, _ = strconv.Atoi(wport)
	site.ListenerPort, _ = strconv.Atoi(s.listenPort)
	cfg, err := site.Config()
	if err != nil {
		return err
	}
	inst, err := engine.New(cfg)
	if err != nil {
		return fmt.Errorf("%w (install it with: apt-get install nagios4-core)", err)
	}
	s.nagios = inst
	if out, err := inst.Validate(ctx); err != nil {
		return fmt.Errorf("%v\n%s", err, out)
	}
	s.say("nagios4 -v $DEMO/nagios/etc/nagios.cfg: configuration OK")
	if err := inst.Start(ctx); err != nil {
		return err
	}
	s.say("Nagios pid %d is running. Watch it from another terminal while the demo runs:", inst.PID())
	fmt.Fprintf(s.out, "           tail -f %s\n", inst.LogFile)
	fmt.Fprintf(s.out, "           grep -A8 servicecomment %s   (the handler's comments)\n", inst.StatusFile)
	s.say("Below, lines marked 'nagios.log:' are what Nagios itself recorded.")
	if err := s.waitNagios(ctx, "the first OK", 30*time.Second, s.serviceIs(nagios.OK, "")); err != nil {
		return err
	}
	firstPID := s.recordPID()
	svc, _ := s.service()
	s.add("before the fault", svc.Output+" (Nagios: OK)")

	s.step("3. Inject a hang; Nagios detects it, runs the handler, and the listener restarts the worker")
	t0 := s.now()
	if res := s.exec(ctx, 10*time.Second, "demo_worker", s.w.FaultArgs("hang")...); res.Code != 0 {
		return fmt.Errorf("injecting the hang: %v", orCode(res))
	}
	if err := s.waitNagios(ctx, "HARD CRITICAL", 60*time.Second, s.serviceIs(nagios.Critical, "hard")); err != nil {
		return err
	}
	svc, _ = s.service()
	s.add("during the hang", svc.Output+" (Nagios: HARD CRITICAL)")
	if err := s.waitNagios(ctx, "OK again with a new worker", 60*time.Second, s.healedFrom(firstPID)); err != nil {
		return err
	}
	newPID := s.recordPID()
	svc, _ = s.service()
	s.say("Healed: pid %d -> %d, %s after the fault (detection: 3 attempts at 1 s plus the 2 s check timeout).",
		firstPID, newPID, s.now().Sub(t0).Round(100*time.Millisecond))
	s.showComments()
	s.add("healed", fmt.Sprintf("pid %d -> pid %d, %s (Nagios: OK)", firstPID, newPID, svc.Output))

	return s.flapNagios(ctx)
}

func (s *story) flapNagios(ctx context.Context) error {
	s.step(fmt.Sprintf("4. Flapping: crash the worker until the budget (%d per %s) is spent", maxRestarts, window))
	restarts := 1
	for round := 1; round <= maxRounds; round++ {
		pid := s.currentPID()
		s.say("-- round %d: crash pid %d", round, pid)
		if res := s.exec(ctx, 10*time.Second, "demo_worker", s.w.FaultArgs("crash")...); res.Code != 0 {
			return fmt.Errorf("injecting the crash: %v", orCode(res))
		}
		s.waitWorkerGone(ctx, pid)
		healed, suspended := s.healedFrom(pid), s.commentHas("auto-healing suspended")
		var stopped bool
		err := s.waitNagios(ctx, "a restart or the budget running out", 60*time.Second, func() (bool, error) {
			if ok, _ := suspended(); ok {
				stopped = true
				return true, nil
			}
			return healed()
		})
		if err != nil {
			return err
		}
		if !stopped {
			restarts++
			s.recordPID()
			continue
		}
		c := s.lastComment("auto-healing suspended")
		s.say("The agent said the budget is spent; the handler told Nagios, in a comment on %s/%s:", nagiosHost, nagiosService)
		fmt.Fprintf(s.out, "           %s\n", c)
		svc, _ := s.service()
		s.say("Nagios shows %s and the worker stays down: on-call takes over.", svc.State)
		s.add("flapping", fmt.Sprintf("%d restarts in the budget, then healing stopped: %s", restarts, c))
		s.showAudit()
		return nil
	}
	return fmt.Errorf("the handler was still restarting after %d flapping rounds: the budget does not hold", maxRounds)
}

// ---- reading what Nagios recorded ----

func (s *story) binDirAbs() string {
	d, _ := filepath.Abs(s.cfg.BinDir)
	return d
}

func (s *story) service() (engine.Service, bool) {
	st, err := s.nagios.Status()
	if err != nil {
		return engine.Service{}, false
	}
	return st.Service(nagiosHost, nagiosService)
}

// serviceIs matches the service's state; typ "hard" also needs HARD.
func (s *story) serviceIs(state nagios.State, typ string) func() (bool, error) {
	return func() (bool, error) {
		svc, ok := s.service()
		return ok && engine.StateIs(state, typ == "hard")(svc), nil
	}
}

// healedFrom holds once Nagios records OK and the worker is a new process.
func (s *story) healedFrom(old int) func() (bool, error) {
	return func() (bool, error) {
		pid := s.currentPID()
		if pid == 0 || pid == old || !s.w.Owns(pid) {
			return false, nil
		}
		svc, ok := s.service()
		return ok && svc.State == nagios.OK && strings.Contains(svc.Output, fmt.Sprintf("pid %d", pid)), nil
	}
}

func (s *story) commentHas(substr string) func() (bool, error) {
	return func() (bool, error) { return s.lastComment(substr) != "", nil }
}

func (s *story) lastComment(substr string) string {
	st, err := s.nagios.Status()
	if err != nil {
		return ""
	}
	found := ""
	for _, c := range st.CommentsFor(nagiosHost, nagiosService) {
		if strings.Contains(c.Text, substr) {
			found = c.Text
		}
	}
	return found
}

func (s *story) showComments() {
	st, err := s.nagios.Status()
	if err != nil {
		return
	}
	cs := st.CommentsFor(nagiosHost, nagiosService)
	s.say("Comments on %s/%s in status.dat (%d):", nagiosHost, nagiosService, len(cs))
	for _, c := range cs {
		fmt.Fprintf(s.out, "           %s: %s\n", c.Author, c.Text)
	}
}

// waitNagios polls cond every 100 ms, narrating new Nagios log lines as they
// appear, until cond holds, Nagios dies, ctx ends or timeout passes.
func (s *story) waitNagios(ctx context.Context, what string, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		s.followLog()
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			s.followLog()
			return nil
		}
		if !s.nagios.Running() {
			return fmt.Errorf("the Nagios process exited while waiting for %s (see $DEMO/nagios.out)", what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			svc, _ := s.service()
			return fmt.Errorf("waited %s for %s; Nagios shows %s: %s", timeout, what, svc.State, svc.Output)
		case <-tick.C:
		}
	}
}

// followLog prints the Nagios log entries about the service that appeared
// since the last call.
func (s *story) followLog() {
	entries, err := s.nagios.Log()
	if err != nil {
		return
	}
	for _, e := range entries[min(s.logSeen, len(entries)):] {
		switch e.Type {
		case "SERVICE ALERT", "SERVICE EVENT HANDLER", "EXTERNAL COMMAND":
			line := e.Type + ": " + strings.Join(e.Fields, ";")
			if len(line) > 150 {
				line = line[:147] + "..."
			}
			s.say("nagios.log: %s", s.shown(line))
		}
	}
	s.logSeen = len(entries)
}
