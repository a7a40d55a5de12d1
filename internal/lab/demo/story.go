package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// checkArgs is check_worker's command line, as a Nagios service would run it.
func (s *story) checkArgs() []string {
	host, port, _ := strings.Cut(s.w.Addr, ":")
	return []string{"-H", host, "-p", port, "-t", strconv.Itoa(checkTimeout), "--max-age", maxAge}
}

// demoHost is the host name the demo passes as Nagios' $HOSTNAME$; the
// agent is named after it.
const demoHost = "localhost"

// handlerArgs is handle_worker's command line for one event, with the macros
// Nagios passes: $SERVICESTATE$ $SERVICESTATETYPE$ $SERVICEATTEMPT$
// $HOSTADDRESS$ $HOSTNAME$ $SERVICEDESC$, and $SERVICEPROBLEMID$ as the
// fault (0 when OK, as in Nagios). No --agent: it defaults to $HOSTNAME$
// lower-cased, as in the sample commands.cfg. The budget is the agent's.
func (s *story) handlerArgs(state, stype string, attempt int) []string {
	fault := "0"
	if state != "OK" {
		fault = fmt.Sprint(s.problem)
	}
	args := []string{"event", state, stype, fmt.Sprint(attempt), "127.0.0.1", demoHost, "demo", "--fault", fault,
		"--key-file", s.fleetFile, "--target", "demo", "--port", s.listenPort,
		"--state-dir", s.handlerState, "--deadline", "18s", "--log-file", s.handlerLog}
	if s.cmdFile != "" {
		args = append(args, "--command-file", s.cmdFile)
	}
	return args
}

// newProblem is Nagios giving the next problem its own id.
func (s *story) newProblem() { s.problem++ }

func (s *story) check(ctx context.Context) result {
	return s.exec(ctx, 15*time.Second, "check_worker", s.checkArgs()...)
}

// checkBrief shows only the plugin's status line.
func (s *story) checkBrief(ctx context.Context) result {
	args := s.checkArgs()
	return s.execShown(ctx, 15*time.Second, len(args), 1, "check_worker", args...)
}

// handle runs the handler; its long flags are shown in full the first time
// only.
func (s *story) handle(ctx context.Context, state, stype string, attempt int) result {
	args := s.handlerArgs(state, stype, attempt)
	shown := 9 // event, the six macros and the fault
	if !s.handlerShown {
		shown, s.handlerShown = len(args), true
	}
	return s.execShown(ctx, 30*time.Second, shown, 4, "handle_worker", args...)
}

// expect fails the story when a command did not end as the story needs.
func expect(res result, code int, what string) error {
	if res.Err != nil {
		return fmt.Errorf("%s: %w", what, res.Err)
	}
	if res.Code != code {
		return fmt.Errorf("%s: exit %d, want %d: %s", what, res.Code, code, firstLine(res.Stdout))
	}
	return nil
}

// tell is the story without Nagios: the demo plays Nagios' part, running
// the plugin and then the event handler with the macros Nagios would pass.
func (s *story) tell(ctx context.Context) error {
	fmt.Fprintln(s.out, "selfheal demo: a worker breaks and heals itself, with the real binaries and no Nagios.")
	fmt.Fprintf(s.out, "The demo plays Nagios' part: it runs check_worker, and at HARD CRITICAL runs handle_worker\n"+
		"with the macros Nagios would pass. Restart budget for the demo, kept by the agent: %d restarts per %s,\n"+
		"min gap %s (the agent's defaults are 3 per 1h, 2m apart). Times in [brackets] are since the start.\n",
		maxRestarts, window, minGap)
	if err := s.setUp(ctx); err != nil {
		return err
	}

	s.step("2. check_worker: the worker is healthy")
	res := s.check(ctx)
	if err := expect(res, 0, "the first check"); err != nil {
		return err
	}
	s.add("before the fault", firstLine(res.Stdout)+" (exit 0)")
	firstPID := s.recordPID()

	s.step("3. A degraded worker is a WARNING, and a WARNING restarts nothing")
	s.newProblem()
	if res := s.exec(ctx, 10*time.Second, "demo_worker", s.w.FaultArgs("degrade")...); res.Code != 0 {
		return fmt.Errorf("injecting the degradation: %v", orCode(res))
	}
	res = s.exec(ctx, 15*time.Second, "check_worker", s.checkArgs()...)
	if err := expect(res, 1, "the check of the degraded worker"); err != nil {
		return err
	}
	if err := expect(s.handle(ctx, "WARNING", "HARD", 3), 0, "the WARNING handler call"); err != nil {
		return err
	}
	if pid := s.currentPID(); pid != firstPID {
		return fmt.Errorf("a WARNING changed the worker's pid from %d to %d", firstPID, pid)
	}
	s.add("degraded", "WORKER WARNING (exit 1), no restart")
	if res := s.exec(ctx, 10*time.Second, "demo_worker", s.w.FaultArgs("clear")...); res.Code != 0 {
		return fmt.Errorf("clearing the degradation: %v", orCode(res))
	}

	s.step("4. Inject a hang: work stops, /status stops answering")
	s.newProblem()
	if res := s.exec(ctx, 10*time.Second, "demo_worker", s.w.FaultArgs("hang")...); res.Code != 0 {
		return fmt.Errorf("injecting the hang: %v", orCode(res))
	}
	s.say("check_worker gives a worker %ds to answer here (-t %d; the default is 10 s):", checkTimeout, checkTimeout)
	res = s.check(ctx)
	if err := expect(res, 2, "the check of the hung worker"); err != nil {
		return err
	}
	s.add("during the hang", firstLine(res.Stdout)+" (exit 2)")

	s.step("5. Nagios retries, then calls the event handler at HARD CRITICAL")
	s.say("With max_check_attempts=3, Nagios calls the handler at SOFT 1, SOFT 2 and HARD 3, each time with")
	s.say("the problem's id ($SERVICEPROBLEMID$ = %d) as --fault. The handler waits on the SOFT states, and", s.problem)
	s.say("the agent runs at most one restart per fault, so one fault makes one restart:")
	for attempt := 1; attempt <= 2; attempt++ {
		if err := expect(s.handle(ctx, "CRITICAL", "SOFT", attempt), 0, "the SOFT handler call"); err != nil {
			return err
		}
	}
	res = s.handle(ctx, "CRITICAL", "HARD", 3)
	if err := expect(res, 0, "the HARD handler call"); err != nil {
		return err
	}
	healTook := res.Took

	s.step("6. check_worker: healthy again, a new process")
	res = s.check(ctx)
	if err := expect(res, 0, "the check after the restart"); err != nil {
		return err
	}
	newPID := s.recordPID()
	if newPID == firstPID || newPID == 0 {
		return fmt.Errorf("the worker's pid is still %d after the restart", newPID)
	}
	s.say("pid %d -> %d: the hung process was stopped and a fresh one started (heal took %s).",
		firstPID, newPID, healTook.Round(time.Millisecond))
	s.add("healed", fmt.Sprintf("pid %d -> pid %d, %s (exit 0)", firstPID, newPID, firstLine(res.Stdout)))
	s.say("On recovery Nagios calls the handler once more; it closes the episode:")
	if err := expect(s.handle(ctx, "OK", "HARD", 3), 0, "the recovery handler call"); err != nil {
		return err
	}

	return s.flap(ctx)
}

// flap crashes the worker again and again until the agent's restart budget
// is spent and it refuses ("spent"), which is the point: a worker that
// keeps dying needs a person, not a restart loop.
func (s *story) flap(ctx context.Context) error {
	s.step(fmt.Sprintf("7. Flapping: crash the worker until the budget (%d per %s) is spent", maxRestarts, window))
	restarts := 1 // the heal above
	for round := 1; round <= maxRounds; round++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		pid := s.currentPID()
		s.newProblem()
		s.say("-- round %d: crash pid %d (a new problem: id %d)", round, pid, s.problem)
		if res := s.exec(ctx, 10*time.Second, "demo_worker", s.w.FaultArgs("crash")...); res.Code != 0 {
			return fmt.Errorf("injecting the crash: %v", orCode(res))
		}
		s.waitWorkerGone(ctx, pid)
		if err := expect(s.checkBrief(ctx), 2, "the check of the crashed worker"); err != nil {
			return err
		}
		res := s.handle(ctx, "CRITICAL", "HARD", 3)
		if res.Err != nil {
			return res.Err
		}
		if res.Code == 0 {
			restarts++
			if err := expect(s.checkBrief(ctx), 0, "the check after a flapping restart"); err != nil {
				return err
			}
			s.recordPID()
			if err := expect(s.handle(ctx, "OK", "HARD", 3), 0, "the recovery handler call"); err != nil {
				return err
			}
			continue
		}
		// The agent refused: healing stopped, and the handler said why.
		s.say("The agent said the budget is spent; handle_worker exits %d: healing stopped and said so.", res.Code)
		s.say("The worker stays down:")
		final := s.checkBrief(ctx)
		if err := expect(final, 2, "the check after healing stopped"); err != nil {
			return err
		}
		s.say("Nagios keeps showing CRITICAL; with --command-file the handler also adds a comment there.")
		s.say("On-call fixes the cause, then restarts by hand (the agent counts it against the same budget):")
		s.say("  handle_worker send restart --host 127.0.0.1 --port %s --agent %s --target demo --key-file $DEMO/monitoring/%s.key",
			s.listenPort, s.agent, fleetID)
		s.add("flapping", fmt.Sprintf("%d restarts in the budget, then healing stopped: %s (exit %d)",
			restarts, strings.TrimPrefix(firstLine(res.Stdout), "handle_worker: "), res.Code))
		s.showAudit()
		return nil
	}
	return fmt.Errorf("the handler was still restarting after %d flapping rounds: the budget does not hold", maxRounds)
}

// showAudit prints the listener's audit log: what it ran, for whom.
func (s *story) showAudit() {
	b, err := os.ReadFile(s.audit)
	if err != nil {
		return
	}
	lines := outputLines(string(b), false)
	s.say("The agent's audit log ($DEMO/audit.log) has %d entries; the last:", len(lines))
	if len(lines) > 0 {
		fmt.Fprintf(s.out, "           %s\n", s.shown(lines[len(lines)-1]))
	}
}
