package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"

	"github.com/selfheal/selfheal/internal/breaker"
	"github.com/selfheal/selfheal/internal/cli"
	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/handler"
	"github.com/selfheal/selfheal/internal/icingaapi"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/nodestate"
	"github.com/selfheal/selfheal/internal/protocol"
	"github.com/selfheal/selfheal/internal/version"
)

// conn holds the flags shared by event and send.
type conn struct {
	KeyFile       string        `required:"" placeholder:"FILE" help:"The fleet key (selfheal-fleet-v1, mode 0600/0400), or the agent's own host key."`
	Agent         string        `placeholder:"NAME" help:"The agent's name (agent: in its config); requests are signed for it alone. Default: the Nagios host name, lower-cased."`
	Target        string        `required:"" placeholder:"NAME" help:"Service name on the listener (a services: entry in its config)."`
	Port          string        `default:"5690" placeholder:"PORT" help:"worker_listener's TCP port (empty: 5690)."`
	TLSCA         string        `name:"tls-ca" placeholder:"FILE" help:"CA bundle that verifies the listener's certificate (enables TLS)."`
	TLSCert       string        `name:"tls-cert" placeholder:"FILE" help:"Client certificate for mTLS (with --tls-key)."`
	TLSKey        string        `name:"tls-key" placeholder:"FILE" help:"Client certificate's private key."`
	TLSServerName string        `name:"tls-server-name" placeholder:"NAME" help:"Name expected in the listener's certificate (default: the address)."`
	StateDir      string        `default:"${state_dir}" placeholder:"DIR" help:"This node's handler state: the agent's last answer per service, held restarts, pauses and the node's breaker (must exist, mode 0700, owned by the user handle_worker runs as; \"\" for none: no pause or breaker is then kept)."`
	Deadline      time.Duration `default:"20s" help:"Total time limit, retries included (keep it under Nagios' event_handler_timeout of 30s and above the agent's action timeout plus kill grace)."`
	LogFile       string        `placeholder:"FILE" help:"Append JSON log lines here (default: stderr)."`
}

type eventCmd struct {
	State       string `arg:"" name:"STATE" help:"$SERVICESTATE$: OK, WARNING, UNKNOWN or CRITICAL."`
	StateType   string `arg:"" name:"STATETYPE" help:"$SERVICESTATETYPE$: SOFT or HARD."`
	Attempt     string `arg:"" name:"ATTEMPT" help:"$SERVICEATTEMPT$."`
	HostAddress string `arg:"" name:"HOSTADDRESS" help:"$HOSTADDRESS$: where the listener runs."`
	HostName    string `arg:"" name:"HOSTNAME" help:"$HOSTNAME$ (names the record and the Nagios commands; lower-cased, the default --agent)."`
	ServiceDesc string `arg:"" name:"SERVICEDESC" help:"$SERVICEDESC$."`

	conn         `embed:""`
	Fault        string  `default:"-" placeholder:"ID" help:"The fault's id: Nagios $SERVICEPROBLEMID$, Icinga 2 $service.last_state_change$ (- or 0: none). The agent restarts once per fault."`
	FaultSince   string  `name:"fault-since" placeholder:"UNIX" help:"When the fault began, as --fault-since=$LASTSERVICESTATECHANGE$ (Icinga 2: $service.last_state_change$); empty, 0 or unreadable: not known. The agent tells a new crash inside its min_gap from the same fault seen twice by it."`
	Address      string  `placeholder:"ADDR" help:"Connect here instead of HOSTADDRESS."`
	Action       string  `default:"restart" enum:"restart,start" help:"Verb to send when healing: restart or start."`
	SoftAttempt  int     `default:"0" placeholder:"N" help:"Also ask at SOFT CRITICAL from attempt N (0 = only at HARD CRITICAL); the agent runs one restart per --fault."`
	CommandFile  *string `placeholder:"FIFO" help:"Nagios external command file ($COMMANDFILE$): write comments and a forced re-check there. Given empty: command_file of --nagios-config."`
	NagiosConfig string  `name:"nagios-config" placeholder:"FILE" help:"Nagios' main config ($MAINCONFIGFILE$; empty: /etc/nagios4/nagios.cfg): where --status-file and --command-file are looked up when given empty (Nagios 4.4 expands $STATUSDATAFILE$ to nothing after a reload)."`
	RecheckDelay string  `default:"2s" placeholder:"DURATION" help:"Schedule the forced re-check this long after a successful restart (empty: 2s)."`
	DryRun       bool    `help:"Decide and print what would be sent and written, without sending anything or writing the record or the command file."`

	ServiceDowntime string  `placeholder:"N" help:"$SERVICEDOWNTIME$ (Icinga 2: $service.downtime_depth$): no restart while more than 0."`
	HostDowntime    string  `placeholder:"N" help:"$HOSTDOWNTIME$ (Icinga 2: $host.downtime_depth$): no restart while more than 0."`
	HostState       string  `placeholder:"STATE" help:"$HOSTSTATE$ (Icinga 2: $host.state$): no restart while DOWN or UNREACHABLE; the fault's restart is kept."`
	Ack             string  `placeholder:"N" help:"$service.acknowledgement$ (Icinga 2): no restart while more than 0. Nagios has no such macro: give --status-file."`
	Perfdata        *string `placeholder:"TEXT" help:"$SERVICEPERFDATA$ (Icinga 2: $service.perfdata$), as --perfdata=...: no restart when check_worker counted only dependency-scoped critical findings."`
	StatusFile      *string `placeholder:"FILE" help:"Nagios' status.dat ($STATUSDATAFILE$): the acknowledgement, and this handler's comments to replace or remove by id. Given empty: status_file of --nagios-config."`
	judgeFlags      `embed:""`
	icingaFlags     `embed:""`
}

// icingaFlags make Icinga 2's REST API the engine: reads and write-back.
type icingaFlags struct {
	IcingaAPI         string        `name:"icinga-api" placeholder:"URL" help:"Icinga 2's REST API (https://HOST:5665): comments, re-checks and reads go there, aimed at exactly HOST!SERVICE, instead of --command-file."`
	IcingaCA          string        `name:"icinga-ca" default:"/var/lib/icinga2/certs/ca.crt" placeholder:"FILE" help:"Icinga's CA: the API's certificate is verified against it."`
	IcingaCredentials string        `name:"icinga-credentials" placeholder:"FILE" help:"The ApiUser's user:password, one line (mode 0600, owned by the handler's user, checked like the key)."`
	IcingaServerName  string        `name:"icinga-server-name" placeholder:"NAME" help:"Name expected in the API's certificate (default: the URL's host)."`
	IcingaTimeout     time.Duration `name:"icinga-timeout" default:"3s" help:"Bound on each API call (all are inside --deadline)."`
}

// engine is the Icinga 2 API engine, or nil when --icinga-api is unset.
func (f icingaFlags) engine(trust fsutil.Trust, commandFile, stateDir string) (handler.Engine, error) {
	if f.IcingaAPI == "" {
		return nil, nil
	}
	if commandFile != "" {
		return nil, errors.New("--icinga-api and --command-file: give one write-back channel")
	}
	if f.IcingaCredentials == "" {
		return nil, errors.New("--icinga-api needs --icinga-credentials")
	}
	user, pass, err := icingaapi.LoadCredentials(trust, f.IcingaCredentials)
	if err != nil {
		return nil, err
	}
	c, err := icingaapi.New(icingaapi.Config{URL: f.IcingaAPI, CAFile: f.IcingaCA, ServerName: f.IcingaServerName,
		User: user, Password: pass, Timeout: f.IcingaTimeout, Sessions: icingaapi.SessionFile{Trust: trust, Dir: stateDir}})
	if err != nil {
		return nil, err
	}
	return handler.IcingaEngine{Client: c}, nil
}

// judgeFlags are the rules' switches, shared by event and reevaluate.
type judgeFlags struct {
	Ignore           []string      `placeholder:"RULE" help:"Rules to switch off: pause, downtime, ack, host, dependency, breaker (all are on by default)."`
	BreakerThreshold int           `default:"10" placeholder:"N" help:"The node's mass-failure breaker opens when more than N services need a restart within --breaker-window."`
	BreakerWindow    time.Duration `default:"5m" help:"The breaker's counting window."`
	BreakerQuiet     time.Duration `default:"2m" help:"After this long without a new failure the breaker lets one trial restart through, and closes as long again after it."`
}

func (j judgeFlags) judgment() (handler.Judgment, error) {
	ign, err := nodestate.ParseRules(j.Ignore)
	if err != nil {
		return handler.Judgment{}, err
	}
	cfg := breaker.Config{Window: j.BreakerWindow, Threshold: j.BreakerThreshold, Quiet: j.BreakerQuiet}
	if err := cfg.Validate(); err != nil {
		return handler.Judgment{}, err
	}
	return handler.Judgment{Ignore: ign, Breaker: cfg}, nil
}

type sendCmd struct {
	Verb string `arg:"" enum:"ping,status,start,stop,restart" help:"ping, status, start, stop or restart."`
	Host string `required:"" placeholder:"ADDR" help:"The listener's host or IP."`

	conn     `embed:""`
	HostName string `name:"hostname" placeholder:"NAME" help:"Nagios host name the record is kept under, and lower-cased the default --agent (default: --host)."`
	Service  string `placeholder:"DESC" help:"Nagios service description the record is kept under (default: --target)."`
	JSON     bool   `name:"json" help:"Also write the JSON log line to stderr at a terminal (without --log-file it goes there only when stderr is not a terminal)."`
}

// checkCmd takes the flags of event that name files, with event's defaults.
type checkCmd struct {
	KeyFile     string `required:"" placeholder:"FILE" help:"The --key-file of event and send."`
	StateDir    string `default:"${state_dir}" placeholder:"DIR" help:"The --state-dir (default: event's; \"\" for none)."`
	LogFile     string `placeholder:"FILE" help:"The --log-file, if any."`
	CommandFile string `placeholder:"FIFO" help:"The --command-file, if any."`
}

type genkeyCmd struct {
	ID  string `required:"" placeholder:"ID" help:"Fleet key id (a-z 0-9 . _ -), e.g. fleet1."`
	Out string `required:"" placeholder:"FILE" help:"File to create with mode 0600 (never overwritten)."`
}

type issueKeyCmd struct {
	KeyFile string `required:"" placeholder:"FILE" help:"The fleet key (a host key cannot issue keys)."`
	Agent   string `required:"" placeholder:"NAME" help:"The agent to issue the key for (agent: in its config)."`
	Out     string `placeholder:"FILE" help:"Write the host key here (mode 0600, never overwritten) instead of to stdout."`
}

type pauseCmd struct {
	Host        string        `placeholder:"HOST" help:"Pause only this Nagios host's services (default: every service on this node)."`
	Service     string        `placeholder:"DESC" help:"Pause only this service of --host."`
	Reason      string        `required:"" placeholder:"TEXT" help:"Why: shown in the comments and in status."`
	For         time.Duration `default:"1h" help:"Until when, from now (at most 168h: a forgotten pause ends by itself)."`
	StateDir    string        `default:"${state_dir}" placeholder:"DIR" help:"The handler's --state-dir."`
	CommandFile string        `placeholder:"FIFO" help:"Also leave a comment on the service (with --service)."`
}

type resumeCmd struct {
	Host     string `placeholder:"HOST" help:"The --host of the pause to end (default: the node-wide pause)."`
	Service  string `placeholder:"DESC" help:"The --service of the pause to end."`
	StateDir string `default:"${state_dir}" placeholder:"DIR" help:"The handler's --state-dir."`
}

type statusCmd struct {
	StateDir   string `default:"${state_dir}" placeholder:"DIR" help:"The handler's --state-dir."`
	judgeFlags `embed:""`
}

type reevaluateCmd struct {
	KeyFile      string        `required:"" placeholder:"FILE" help:"The fleet key, as event's --key-file."`
	StatusFile   *string       `placeholder:"FILE" help:"Nagios' status.dat ($STATUSDATAFILE$): the engine's view of each held service (or --icinga-api). Given empty: status_file of --nagios-config."`
	NagiosConfig string        `name:"nagios-config" placeholder:"FILE" help:"As event's --nagios-config."`
	MaxStatusAge time.Duration `default:"5m" help:"Refuse (UNKNOWN) a status file older than this: the engine is not writing it."`
	StateDir     string        `default:"${state_dir}" placeholder:"DIR" help:"The handler's --state-dir."`
	CommandFile  *string       `placeholder:"FIFO" help:"Nagios' external command file, as event's."`
	icingaFlags  `embed:""`
	LogFile      string        `placeholder:"FILE" help:"Append JSON log lines here (default: stderr)."`
	Deadline     time.Duration `default:"50s" help:"The whole run (under the engine's check timeout); what is left waits for the next run."`
	PerRequest   time.Duration `default:"18s" help:"One heal, retries included (as event's --deadline)."`
	TLSCA        string        `name:"tls-ca" placeholder:"FILE" help:"As event's --tls-ca."`
	TLSCert      string        `name:"tls-cert" placeholder:"FILE" help:"As event's --tls-cert."`
	TLSKey       string        `name:"tls-key" placeholder:"FILE" help:"As event's --tls-key."`
	judgeFlags   `embed:""`
}

type grammar struct {
	Version    kong.VersionFlag `short:"V" help:"Print the version and exit."`
	Event      eventCmd         `cmd:"" help:"Handle one Nagios/Icinga state change (what the event_handler runs)."`
	Send       sendCmd          `cmd:"" help:"Send one request by hand (on-call use); a restart has its own fault id and obeys the agent's budget."`
	Check      checkCmd         `cmd:"" help:"Report every problem of the files the handler trusts (key, state dir, log file, command file) with its fix; run it as the nagios user."`
	Genkey     genkeyCmd        `cmd:"" help:"Generate the fleet key (mode 0600) for the monitoring nodes."`
	IssueKey   issueKeyCmd      `cmd:"" name:"issue-key" help:"Issue an agent's host key from the fleet key (to stdout, for worker_listener import-key)."`
	Reevaluate reevaluateCmd    `cmd:"" help:"Ask again for the restarts held back (downtime, host DOWN, pause, breaker, back-off) whose reason is gone; a plugin: run it as a service check on the monitoring node."`
	Pause      pauseCmd         `cmd:"" help:"Hold every restart back on this node, for one host, or one service, until --for ends or resume."`
	Resume     resumeCmd        `cmd:"" help:"End a pause; reevaluate then heals what it held back."`
	Status     statusCmd        `cmd:"" help:"Show, per service, the last answer, what is held back and why, the budget, the pauses and the breaker."`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cli.Guard(stdout, stderr, func() int {
		var g grammar
		kctx, err := cli.Parse(cli.App{
			Name:        "handle_worker",
			Description: "Nagios/Icinga event handler that asks a worker host's worker_listener to restart the worker (the agent keeps one restart per fault and the restart budget).",
			Version:     version.String("handle_worker"),
			Stdout:      stdout, Stderr: stderr,
			InfoExit: 0,
		}, &g, args, kong.Vars{"state_dir": nodestate.DefaultStateDir})
		if err != nil {
			var er *cli.ExitRequest
			if errors.As(err, &er) {
				return er.Code
			}
			if len(args) > 0 && (args[0] == "genkey" || args[0] == "issue-key") {
				// stdout may be a pipe to import-key: errors go to the human.
				return usage(stderr, err)
			}
			return usage(stdout, err)
		}
		// The user Nagios runs the handler as (nagios): its files must be
		// its own or root's.
		trust := fsutil.User(os.Getuid())
		switch kctx.Command() {
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
	})
}

func usage(stdout io.Writer, err error) int {
	fmt.Fprintf(stdout, "handle_worker: usage error: %s\n", cli.OneLine(err.Error()))
	return handler.ExitUsage
}

// setup validates the shared flags and loads the key (once the trust rule
// passes it) and TLS config for agent: a key that cannot sign for it is a
// configuration error.
func (c conn) setup(trust fsutil.Trust, address, agent string) (handler.Conn, error) {
	if c.Deadline <= 0 || c.Deadline > 10*time.Minute {
		return handler.Conn{}, fmt.Errorf("--deadline %s: want more than 0 and at most 10m", c.Deadline)
	}
	port, err := parsePort(c.Port)
	if err != nil {
		return handler.Conn{}, err
	}
	if !protocol.ValidName(c.Target) {
		return handler.Conn{}, fmt.Errorf("--target %q: use 1-64 of a-z 0-9 . _ - starting with a letter or digit", c.Target)
	}
	address = strings.TrimSpace(address)
	if address == "" {
		return handler.Conn{}, errors.New("no address: HOSTADDRESS is empty and --address is not set")
	}
	key, err := nodestate.LoadKey(trust, c.KeyFile)
	if err != nil {
		return handler.Conn{}, err
	}
	if _, err := key.ForAgent(agent); err != nil {
		return handler.Conn{}, fmt.Errorf("key file %s: %w", c.KeyFile, err)
	}
	var tc *tls.Config
	if c.TLSCA != "" || c.TLSCert != "" || c.TLSKey != "" || c.TLSServerName != "" {
		if tc, err = protocol.ClientTLS(c.TLSCA, c.TLSCert, c.TLSKey, c.TLSServerName); err != nil {
			return handler.Conn{}, err
		}
	}
	return handler.Conn{Address: address, Port: port, Agent: agent, Target: c.Target, Key: key, TLS: tc}, nil
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
		f, err := handler.OpenLog(trust, logFile)
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
	files := handler.NagiosFiles{StatusFile: e.StatusFile, CommandFile: e.CommandFile, MainConfig: e.NagiosConfig}.Resolve(trust)
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
		return handler.ExitUsage
	}
	attempt, err := strconv.Atoi(strings.TrimSpace(e.Attempt))
	if err != nil {
		return usage(stdout, fmt.Errorf("ATTEMPT %q: want a number", e.Attempt))
	}
	ev, err := handler.ParseEvent(e.State, e.StateType, attempt)
	if err != nil {
		return usage(stdout, err)
	}
	if e.SoftAttempt < 0 {
		return usage(stdout, errors.New("--soft-attempt must be 0 (off) or more"))
	}
	recheck := 2 * time.Second
	if v := strings.TrimSpace(e.RecheckDelay); v != "" {
		if recheck, err = time.ParseDuration(v); err != nil || recheck < 0 {
			return usage(stdout, fmt.Errorf("--recheck-delay %q: want a duration, 0 or more (e.g. 2s)", e.RecheckDelay))
		}
	}
	addr := e.HostAddress
	if e.Address != "" {
		addr = e.Address
	}
	// A bad fact flag is a configuration error like the others below: on
	// a CRITICAL service it gets the comment too.
	facts, judgment, err := e.facts(trust, files)
	var eng handler.Engine
	if err == nil {
		eng, err = e.engine(trust, cmdFile, e.StateDir)
	}
	if err == nil && eng == nil && files.StatusFile != "" {
		// status.dat is read when a decision needs it, not on every run.
		eng = handler.NagiosEngine{StatusFile: files.StatusFile, CommandFile: cmdFile, Trust: trust}
	}
	var fault string
	if err == nil {
		fault, err = handler.FaultID(e.Fault)
	}
	var cn handler.Conn
	if err == nil {
		var agent string
		if agent, err = handler.AgentName(e.Agent, e.HostName, "HOSTNAME"); err == nil {
			cn, err = e.setup(trust, addr, agent)
		}
	}
	if err != nil {
		// Nagios only logs a failing handler's output: when a fault needs
		// healing and our own configuration (key, agent, fault macro, TLS
		// files, a key the trust rule refuses) stops it, say so where
		// on-call looks, on the service.
		if ev.State == nagios.Critical && !e.DryRun {
			e.tell(ctx, trust, eng, cmdFile, "auto-healing impossible: handle_worker configuration error: "+cli.OneLine(err.Error())+"; a human must look", stderr)
		}
		return usage(stdout, err)
	}
	log, closeLog := e.logger(trust, stderr)
	defer closeLog()
	for _, n := range files.Notes {
		log.Warn().Msg(n)
	}
	if files.CommandErr != nil {
		log.Warn().Str("command_file_error", cli.OneLine(files.CommandErr.Error())).Msg("no write-back to Nagios")
	}
	res := handler.Run(ctx, handler.Config{
		Event: ev, Fault: fault, FaultSince: handler.FaultSince(e.FaultSince), HostName: e.HostName, ServiceDesc: e.ServiceDesc, Conn: cn,
		Action: protocol.Verb(e.Action), StateDir: e.StateDir, Trust: trust, SoftAttempt: e.SoftAttempt,
		Deadline: e.Deadline, CommandFile: cmdFile, Recheck: recheck, DryRun: e.DryRun,
		Facts: facts, Judgment: judgment, Engine: eng,
	}, handler.Deps{Log: log})
	fmt.Fprintln(stdout, "handle_worker: "+res.Line)
	if e.DryRun {
		for _, c := range res.Commands {
			fmt.Fprintf(stdout, "would write to %s: %s\n", orNone(cmdFile, e.IcingaAPI), c)
		}
	}
	return res.Code
}

// missing names the required values that reached the handler empty.
func (e *eventCmd) missing() []string {
	var m []string
	need := func(v, name string) {
		if strings.TrimSpace(v) == "" {
			m = append(m, name)
		}
	}
	need(e.State, "STATE ($SERVICESTATE$)")
	need(e.StateType, "STATETYPE ($SERVICESTATETYPE$)")
	need(e.Attempt, "ATTEMPT ($SERVICEATTEMPT$)")
	if strings.TrimSpace(e.Address) == "" {
		need(e.HostAddress, "HOSTADDRESS ($HOSTADDRESS$)")
	}
	need(e.HostName, "HOSTNAME ($HOSTNAME$)")
	need(e.ServiceDesc, "SERVICEDESC ($SERVICEDESC$)")
	need(e.Target, "--target ($_SERVICEWORKER_TARGET$)")
	need(e.KeyFile, "--key-file")
	return m
}

// tell leaves msg as a comment on the service through w, or the command
// file when w is nil; a failure goes to stderr (Nagios logs it).
func (e *eventCmd) tell(ctx context.Context, trust fsutil.Trust, w handler.Engine, cmdFile, msg string, stderr io.Writer) {
	if w == nil {
		if cmdFile == "" {
			return
		}
		w = handler.NagiosEngine{CommandFile: cmdFile}
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// Recorded like every comment of ours, so the recovery removes it.
	if err := handler.ConfigError(wctx, w, nodestate.Store{Dir: e.StateDir, Trust: trust}, e.HostName, e.ServiceDesc, msg, time.Now()); err != nil {
		fmt.Fprintf(stderr, "handle_worker: could not write to %s: %v\n", w.Name(), err)
	}
}

// parsePort reads --port; empty (an unset custom variable) is 5690.
func parsePort(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 5690, nil
	}
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("--port %q: want 1-65535", s)
	}
	return p, nil
}

// facts validates the engine's other macros (an empty one is "not
// given") and reads the status file, whose failure is only reported.
func (e *eventCmd) facts(trust fsutil.Trust, files handler.ResolvedFiles) (handler.Facts, handler.Judgment, error) {
	f := handler.NoFacts
	depth := func(flag, v string, dst *int) error {
		if strings.TrimSpace(v) == "" {
			return nil
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 {
			return fmt.Errorf("%s %q: want a number, 0 or more", flag, v)
		}
		*dst = n
		return nil
	}
	if err := depth("--service-downtime", e.ServiceDowntime, &f.ServiceDowntime); err != nil {
		return f, handler.Judgment{}, err
	}
	if err := depth("--host-downtime", e.HostDowntime, &f.HostDowntime); err != nil {
		return f, handler.Judgment{}, err
	}
	if err := depth("--ack", e.Ack, &f.Ack); err != nil {
		return f, handler.Judgment{}, err
	}
	if strings.TrimSpace(e.HostState) != "" {
		hs, ok := nagios.ParseHostState(e.HostState)
		if !ok {
			return f, handler.Judgment{}, fmt.Errorf("--host-state %q: want UP, DOWN or UNREACHABLE", e.HostState)
		}
		f.HostState = &hs
	}
	if e.Perfdata != nil {
		f.Perfdata, f.PerfdataGiven = *e.Perfdata, true
	}
	if files.StatusErr != nil {
		f.StatusErr = files.StatusErr
	}
	j, err := e.judgment()
	return f, j, err
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
	agent, err := handler.AgentName(s.Agent, host, "--hostname")
	if err != nil {
		return usage(stdout, err)
	}
	cn, err := s.setup(trust, s.Host, agent)
	if err != nil {
		return usage(stdout, err)
	}
	log, closeLog := openLog(trust, s.LogFile, s.JSON, stderr)
	defer closeLog()
	res := handler.Send(ctx, handler.SendConfig{
		Verb: protocol.Verb(s.Verb), Conn: cn, Deadline: s.Deadline,
		StateDir: s.StateDir, Trust: trust, HostName: host, ServiceDesc: svc,
	}, handler.Deps{Log: log})
	fmt.Fprintln(stdout, res.Line)
	return res.Code
}

// run reports every problem of the files at once, each with its fix, one
// a line: exit 0 when there is none, 3 otherwise (a configuration error,
// as event would exit).
func (c *checkCmd) run(trust fsutil.Trust, stdout io.Writer) int {
	files := handler.Files{KeyFile: c.KeyFile, StateDir: c.StateDir, LogFile: c.LogFile, CommandFile: c.CommandFile}
	found := handler.CheckFiles(trust, files)
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
	return handler.ExitUsage
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
	host, err := handler.IssueHostKey(fleet, c.Agent)
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
		return handler.ExitUsage
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
	files := handler.NagiosFiles{StatusFile: c.StatusFile, CommandFile: c.CommandFile, MainConfig: c.NagiosConfig}.Resolve(trust)
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
		if sd, err = handler.ReadStatusFile(trust, files.StatusFile); err != nil {
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
	res := handler.Reevaluate(ctx, handler.ReevalConfig{StateDir: c.StateDir, Trust: trust, Status: sd, StatusAge: c.MaxStatusAge,
		Key: key, TLS: tc, Judgment: j, CommandFile: files.CommandFile, Engine: eng, Deadline: c.Deadline, PerRequest: c.PerRequest},
		handler.Deps{Log: log})
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
		return usage(stdout, errors.New("--service needs --host"))
	}
	if c.For <= 0 || c.For > nodestate.MaxPause {
		return usage(stdout, fmt.Errorf("--for %s: want more than 0 and at most %s", c.For, nodestate.MaxPause))
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
		if err := (handler.CommandFile{Path: c.CommandFile}).Write(now, handler.AddSvcComment(c.Host, c.Service, false, handler.Author, text)); err != nil {
			fmt.Fprintf(stdout, "warning: no comment left: %s\n", cli.OneLine(err.Error()))
		}
	}
	return 0
}

func (c *resumeCmd) run(ctx context.Context, trust fsutil.Trust, stdout io.Writer) int {
	if c.Service != "" && c.Host == "" {
		return usage(stdout, errors.New("--service needs --host"))
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
		return usage(stdout, err)
	}
	out, err := handler.Status(ctx, nodestate.Store{Dir: c.StateDir, Trust: trust}, j, time.Now())
	if err != nil {
		fmt.Fprintf(stdout, "handle_worker status: %s\n", cli.OneLine(err.Error()))
		return 1
	}
	fmt.Fprint(stdout, out)
	return 0
}
