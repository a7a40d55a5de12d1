package handler

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/selfheal/selfheal/internal/cli"
	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/nodestate"
	"github.com/selfheal/selfheal/internal/protocol"
)

// handle_worker's subcommands: each validates its flags (args.go), calls
// the core (Run, Send, Reevaluate, Status, the state directory's pauses),
// and writes its lines to the writers it is given.

// Exec runs the subcommand ParseArgs chose, as trust's user (the user the
// engine runs the handler as: its files must be its own or root's). Not
// Run: kong would take a Run method as the grammar's own command and stop
// asking for a subcommand.
func (g *Grammar) Exec(ctx context.Context, command string, trust fsutil.Trust, stdout, stderr io.Writer) int {
	switch command {
	case "send <verb>":
		return g.Send.run(ctx, trust, stdout, stderr)
	case "check":
		return g.Check.run(trust, stdout)
	case "genkey":
		return g.Genkey.run(stdout, stderr)
	case "issue-key":
		return g.IssueKey.run(trust, stdout, stderr)
	case "reevaluate":
		return g.Reevaluate.run(ctx, trust, stdout, stderr)
	case "pause":
		return g.Pause.run(ctx, trust, stdout)
	case "resume":
		return g.Resume.run(ctx, trust, stdout)
	case "status":
		return g.Status.run(ctx, trust, stdout)
	default:
		return g.Event.run(ctx, trust, stdout, stderr)
	}
}

// Usage writes a usage error, one line, and returns its exit code.
func Usage(stdout io.Writer, err error) int {
	fmt.Fprintf(stdout, "handle_worker: usage error: %s\n", cli.OneLine(err.Error()))
	return ExitUsage
}

// logger writes JSON lines to --log-file, or stderr when unset or when the
// file cannot be opened or is refused by the trust rule (the reason is
// then logged too). Without --log-file, stderr gets them only when
// wantJSON says so.
func (c conn) logger(trust fsutil.Trust, stderr io.Writer) (zerolog.Logger, func()) {
	return openLog(trust, c.LogFile, false, stderr)
}

func openLog(trust fsutil.Trust, logFile string, asked bool, stderr io.Writer) (zerolog.Logger, func()) {
	w, closer, note := stderr, func() {}, ""
	if !wantJSON(logFile, asked, isTerminal(stderr)) {
		w = io.Discard
	}
	if logFile != "" {
		// Never through a symlink, regular files only, opened without
		// blocking: a FIFO is an error (then stderr), not an open that
		// blocks past --deadline until Nagios' SIGKILL.
		f, err := OpenLog(trust, logFile)
		if err == nil {
			w, closer = f, func() { f.Close() }
		} else {
			note = err.Error()
		}
	}
	l := zerolog.New(w).With().Timestamp().Str("prog", "handle_worker").Logger()
	if note != "" {
		l.Warn().Str("log_file_error", note).Msg("cannot open --log-file, logging to stderr")
	}
	return l, closer
}

// wantJSON says whether the JSON log lines go out: to --log-file when
// given; to stderr when asked (--json), or when stderr is no terminal (an
// engine's pipe, a file, a log collector). A person at a terminal reads
// the one human line on stdout, not a JSON line beside it.
func wantJSON(logFile string, asked, stderrTerminal bool) bool {
	return logFile != "" || asked || !stderrTerminal
}

// isTerminal: a character device is a terminal or /dev/null, and neither
// wants JSON; the file mode suffices, no ioctl (or tty library) needed.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (e *eventCmd) run(ctx context.Context, trust fsutil.Trust, stdout, stderr io.Writer) int {
	files := NagiosFiles{StatusFile: e.StatusFile, CommandFile: e.CommandFile, MainConfig: e.NagiosConfig}.Resolve(trust)
	cmdFile := files.CommandFile
	// A value the engine left empty (a reload, a custom variable unset)
	// is not the admin's typo: say which, on the service when it may
	// need healing, and never as a usage error.
	if miss := e.missing(); len(miss) > 0 {
		msg := "the engine passed an empty " + strings.Join(miss, ", ") + ": nothing was sent"
		if st := strings.TrimSpace(e.State); (st == "" || strings.EqualFold(st, "CRITICAL")) && e.HostName != "" && e.ServiceDesc != "" && !e.DryRun {
			w, _ := e.engine(trust, cmdFile, e.StateDir)
			e.tell(ctx, trust, w, cmdFile, "auto-healing impossible: "+msg+"; a human must look", stderr)
		}
		fmt.Fprintln(stdout, "handle_worker: not run: "+msg)
		return ExitUsage
	}
	attempt, err := strconv.Atoi(strings.TrimSpace(e.Attempt))
	if err != nil {
		return Usage(stdout, fmt.Errorf("ATTEMPT %q: want a number", e.Attempt))
	}
	ev, err := ParseEvent(e.State, e.StateType, attempt)
	if err != nil {
		return Usage(stdout, err)
	}
	if e.SoftAttempt < 0 {
		return Usage(stdout, errors.New("--soft-attempt must be 0 (off) or more"))
	}
	recheck := 2 * time.Second
	if v := strings.TrimSpace(e.RecheckDelay); v != "" {
		if recheck, err = time.ParseDuration(v); err != nil || recheck < 0 {
			return Usage(stdout, fmt.Errorf("--recheck-delay %q: want a duration, 0 or more (e.g. 2s)", e.RecheckDelay))
		}
	}
	addr := e.HostAddress
	if e.Address != "" {
		addr = e.Address
	}
	// A bad fact flag is a configuration error like the others below: on
	// a CRITICAL service it gets the comment too.
	facts, judgment, err := e.facts(trust, files)
	var eng Engine
	if err == nil {
		eng, err = e.engine(trust, cmdFile, e.StateDir)
	}
	if err == nil && eng == nil && files.StatusFile != "" {
		// status.dat is read when a decision needs it, not on every run.
		eng = NagiosEngine{StatusFile: files.StatusFile, CommandFile: cmdFile, Trust: trust}
	}
	var fault string
	if err == nil {
		fault, err = FaultID(e.Fault)
	}
	var cn Conn
	if err == nil {
		var agent string
		if agent, err = AgentName(e.Agent, e.HostName, "HOSTNAME"); err == nil {
			cn, err = e.setup(trust, addr, agent)
		}
	}
	if err != nil {
		// configError's policy: on the CRITICAL service, where on-call looks.
		if ev.State == nagios.Critical && !e.DryRun {
			e.tell(ctx, trust, eng, cmdFile, configError(err)+"; a human must look", stderr)
		}
		return Usage(stdout, err)
	}
	log, closeLog := e.logger(trust, stderr)
	defer closeLog()
	for _, n := range files.Notes {
		log.Warn().Msg(n)
	}
	if files.CommandErr != nil {
		log.Warn().Str("command_file_error", cli.OneLine(files.CommandErr.Error())).Msg("no write-back to Nagios")
	}
	res := Run(ctx, Config{
		Event: ev, Fault: fault, FaultSince: FaultSince(e.FaultSince), HostName: e.HostName, ServiceDesc: e.ServiceDesc, Conn: cn,
		Action: protocol.Verb(e.Action), StateDir: e.StateDir, Trust: trust, SoftAttempt: e.SoftAttempt,
		Deadline: e.Deadline, CommandFile: cmdFile, Recheck: recheck, DryRun: e.DryRun,
		Facts: facts, Judgment: judgment, Engine: eng,
	}, Deps{Log: log})
	fmt.Fprintln(stdout, "handle_worker: "+res.Line)
	if e.DryRun {
		for _, c := range res.Commands {
			fmt.Fprintf(stdout, "would write to %s: %s\n", orNone(cmdFile, e.IcingaAPI), c)
		}
	}
	return res.Code
}

// tell leaves msg as a comment on the service through w, or the command
// file when w is nil; a failure goes to stderr (Nagios logs it).
func (e *eventCmd) tell(ctx context.Context, trust fsutil.Trust, w Engine, cmdFile, msg string, stderr io.Writer) {
	if w == nil {
		if cmdFile == "" {
			return
		}
		w = NagiosEngine{CommandFile: cmdFile}
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// Recorded like every comment of ours, so the recovery removes it.
	if err := ConfigError(wctx, w, nodestate.Store{Dir: e.StateDir, Trust: trust}, e.HostName, e.ServiceDesc, msg, time.Now()); err != nil {
		fmt.Fprintf(stderr, "handle_worker: could not write to %s: %v\n", w.Name(), err)
	}
}

func orNone(cmdFile, api string) string {
	switch {
	case api != "":
		return api
	case cmdFile == "":
		return "(no --command-file)"
	}
	return cmdFile
}

func (s *sendCmd) run(ctx context.Context, trust fsutil.Trust, stdout, stderr io.Writer) int {
	host, svc := s.HostName, s.Service
	if host == "" {
		host = s.Host
	}
	if svc == "" {
		svc = s.Target
	}
	agent, err := AgentName(s.Agent, host, "--hostname")
	if err != nil {
		return Usage(stdout, err)
	}
	cn, err := s.setup(trust, s.Host, agent)
	if err != nil {
		return Usage(stdout, err)
	}
	log, closeLog := openLog(trust, s.LogFile, s.JSON, stderr)
	defer closeLog()
	res := Send(ctx, SendConfig{
		Verb: protocol.Verb(s.Verb), Conn: cn, Deadline: s.Deadline,
		StateDir: s.StateDir, Trust: trust, HostName: host, ServiceDesc: svc,
	}, Deps{Log: log})
	fmt.Fprintln(stdout, res.Line)
	return res.Code
}

// run reports every problem of the files at once, each with its fix, one
// a line: exit 0 when there is none, 3 otherwise (a configuration error,
// as event would exit).
func (c *checkCmd) run(trust fsutil.Trust, stdout io.Writer) int {
	files := Files{KeyFile: c.KeyFile, StateDir: c.StateDir, LogFile: c.LogFile, CommandFile: c.CommandFile}
	found := CheckFiles(trust, files)
	as := trust.Name
	if as == "" {
		as = "uid " + strconv.Itoa(trust.UID)
	}
	if len(found) == 0 {
		fmt.Fprintf(stdout, "handle_worker check: ok: the files pass as %s\n", as)
		return 0
	}
	fmt.Fprintf(stdout, "handle_worker check: %d problem(s) as %s; fix them all, then run it again:\n", len(found), as)
	for _, f := range found {
		fmt.Fprintf(stdout, "%s: %s\n", f.What, cli.OneLine(f.Problem.Error()))
	}
	return ExitUsage
}

// run makes the fleet key. It never overwrites a file: a fleet key lost
// to a typo would orphan every host key issued from it.
func (g *genkeyCmd) run(stdout, stderr io.Writer) int {
	k, err := protocol.GenerateFleetKey(g.ID)
	if err == nil {
		err = writeKey(g.Out, k)
	}
	if err != nil {
		fmt.Fprintf(stderr, "handle_worker genkey: %v\n", err)
		return 1
	}
	// The packaged paths: the plugin dir, and the agent as its own user,
	// who must own the key it trusts.
	fmt.Fprintf(stdout, "wrote fleet key %q to %s (mode 0600): keep it on the monitoring nodes only; give each worker host its own key with: /usr/lib/nagios/plugins/handle_worker issue-key --key-file %s --agent NAME | ssh root@HOST runuser -u selfheal -- /usr/sbin/worker_listener import-key --out /etc/selfheal/keys/%s.key\n",
		k.ID, g.Out, g.Out, k.ID)
	return 0
}

// run issues one agent's host key. On stdout it prints the key line and
// nothing else, for `| ssh root@HOST worker_listener import-key`.
func (c *issueKeyCmd) run(trust fsutil.Trust, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "handle_worker issue-key: %v\n", err)
		return 1
	}
	// Trusted like event's key: host keys issued from a fleet key another
	// user planted would be his to know.
	fleet, err := nodestate.LoadKey(trust, c.KeyFile)
	if err != nil {
		return fail(err)
	}
	host, err := IssueHostKey(fleet, c.Agent)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", c.KeyFile, err))
	}
	if c.Out != "" {
		if err := writeKey(c.Out, host); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "wrote host key for agent %s (fleet %s) to %s (mode 0600)\n", host.Agent, host.ID, c.Out)
		return 0
	}
	b, err := host.MarshalText()
	if err != nil {
		return fail(err)
	}
	if _, err := stdout.Write(b); err != nil {
		return fail(err)
	}
	return 0
}

// writeKey is protocol.WriteKeyFile with a plain word for a file in the way.
func writeKey(path string, k protocol.Key) error {
	err := protocol.WriteKeyFile(path, k)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists: a key file is never overwritten", path)
	}
	return err
}

func (c *reevaluateCmd) run(ctx context.Context, trust fsutil.Trust, stdout, stderr io.Writer) int {
	unknown := func(err error) int {
		fmt.Fprintf(stdout, "UNKNOWN - handle_worker reevaluate: %s\n", cli.OneLine(err.Error()))
		return ExitUsage
	}
	j, err := c.judgment()
	if err != nil {
		return unknown(err)
	}
	if c.Deadline <= 0 || c.PerRequest <= 0 || c.PerRequest > c.Deadline {
		return unknown(errors.New("--deadline and --per-request must be positive, --per-request at most --deadline"))
	}
	key, err := nodestate.LoadKey(trust, c.KeyFile)
	if err != nil {
		return unknown(err)
	}
	var tc *tls.Config
	if c.TLSCA != "" || c.TLSCert != "" || c.TLSKey != "" {
		if tc, err = protocol.ClientTLS(c.TLSCA, c.TLSCert, c.TLSKey, ""); err != nil {
			return unknown(err)
		}
	}
	files := NagiosFiles{StatusFile: c.StatusFile, CommandFile: c.CommandFile, MainConfig: c.NagiosConfig}.Resolve(trust)
	eng, err := c.engine(trust, files.CommandFile, c.StateDir)
	if err != nil {
		return unknown(err)
	}
	var sd *nagios.StatusData
	switch {
	case c.StatusFile != nil && eng != nil:
		return unknown(errors.New("--status-file and --icinga-api: give one engine"))
	case files.StatusErr != nil:
		return unknown(files.StatusErr)
	case files.StatusFile != "":
		if sd, err = ReadStatusFile(trust, files.StatusFile); err != nil {
			return unknown(err)
		}
	case eng == nil:
		return unknown(errors.New("give --status-file (Nagios) or --icinga-api (Icinga 2): the engine's view of each held service"))
	}
	log, closeLog := conn{LogFile: c.LogFile}.logger(trust, stderr)
	defer closeLog()
	for _, n := range files.Notes {
		log.Warn().Msg(n)
	}
	if files.CommandErr != nil {
		log.Warn().Str("command_file_error", cli.OneLine(files.CommandErr.Error())).Msg("no write-back to Nagios")
	}
	j.StatusFile = files.StatusFile
	res := Reevaluate(ctx, ReevalConfig{StateDir: c.StateDir, Trust: trust, Status: sd, StatusAge: c.MaxStatusAge,
		Key: key, TLS: tc, Judgment: j, CommandFile: files.CommandFile, Engine: eng, Deadline: c.Deadline, PerRequest: c.PerRequest},
		Deps{Log: log})
	fmt.Fprintln(stdout, res.Line)
	for _, it := range res.Items {
		fmt.Fprintf(stdout, "%s/%s: %s (%s): %s\n", it.Host, it.Service, it.Outcome, it.Rule, cli.OneLine(it.Text))
	}
	return res.Code
}

// who names the human behind a pause: sudo's user when there is one.
func who() string {
	for _, k := range []string{"SUDO_USER", "LOGNAME", "USER"} {
		if v := strings.TrimSpace(os.Getenv(k)); v != "" {
			return cli.OneLine(v)
		}
	}
	return "uid " + strconv.Itoa(os.Getuid())
}

func (c *pauseCmd) run(ctx context.Context, trust fsutil.Trust, stdout io.Writer) int {
	if c.Service != "" && c.Host == "" {
		return Usage(stdout, errors.New("--service needs --host"))
	}
	if c.For <= 0 || c.For > nodestate.MaxPause {
		return Usage(stdout, fmt.Errorf("--for %s: want more than 0 and at most %s", c.For, nodestate.MaxPause))
	}
	now := time.Now()
	p := nodestate.Pause{Host: c.Host, Service: c.Service, Reason: cli.OneLine(c.Reason), By: who(), At: now.UTC(), Until: now.Add(c.For).UTC()}
	store := nodestate.Store{Dir: c.StateDir, Trust: trust}
	if _, err := store.SetPause(ctx, now, p, false); err != nil {
		fmt.Fprintf(stdout, "handle_worker pause: %s\n", cli.OneLine(err.Error()))
		return 1
	}
	fmt.Fprintf(stdout, "paused auto-healing for %s until %s (%s): %s\n", p.Scope(), p.Until.Format(time.RFC3339), c.For, p.Reason)
	if c.CommandFile != "" && c.Service != "" {
		text := fmt.Sprintf("auto-healing paused (%s) by %s until %s: %s", p.Scope(), p.By, p.Until.Format(time.RFC3339), p.Reason)
		if err := (CommandFile{Path: c.CommandFile}).Write(now, AddSvcComment(c.Host, c.Service, false, Author, text)); err != nil {
			fmt.Fprintf(stdout, "warning: no comment left: %s\n", cli.OneLine(err.Error()))
		}
	}
	return 0
}

func (c *resumeCmd) run(ctx context.Context, trust fsutil.Trust, stdout io.Writer) int {
	if c.Service != "" && c.Host == "" {
		return Usage(stdout, errors.New("--service needs --host"))
	}
	p := nodestate.Pause{Host: c.Host, Service: c.Service}
	n, err := nodestate.Store{Dir: c.StateDir, Trust: trust}.SetPause(ctx, time.Now(), p, true)
	if err != nil {
		fmt.Fprintf(stdout, "handle_worker resume: %s\n", cli.OneLine(err.Error()))
		return 1
	}
	if n == 0 {
		fmt.Fprintf(stdout, "no pause for %s; nothing changed\n", p.Scope())
		return 1
	}
	fmt.Fprintf(stdout, "resumed auto-healing for %s; reevaluate heals what the pause held back\n", p.Scope())
	return 0
}

func (c *statusCmd) run(ctx context.Context, trust fsutil.Trust, stdout io.Writer) int {
	j, err := c.judgment()
	if err != nil {
		return Usage(stdout, err)
	}
	out, err := Status(ctx, nodestate.Store{Dir: c.StateDir, Trust: trust}, j, time.Now())
	if err != nil {
		fmt.Fprintf(stdout, "handle_worker status: %s\n", cli.OneLine(err.Error()))
		return 1
	}
	fmt.Fprint(stdout, out)
	return 0
}
