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

	"github.com/selfheal/selfheal/internal/cli"
	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/handler"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/protocol"
	"github.com/selfheal/selfheal/internal/version"
)

// conn holds the flags shared by event and send.
type conn struct {
	KeyFile       string        `required:"" placeholder:"FILE" help:"The fleet key (selfheal-fleet-v1, mode 0600/0400), or the agent's own host key."`
	Agent         string        `placeholder:"NAME" help:"The agent's name (agent: in its config); requests are signed for it alone. Default: the Nagios host name, lower-cased."`
	Target        string        `required:"" placeholder:"NAME" help:"Service name on the listener (a services: entry in its config)."`
	Port          int           `default:"5690" help:"worker_listener's TCP port."`
	TLSCA         string        `name:"tls-ca" placeholder:"FILE" help:"CA bundle that verifies the listener's certificate (enables TLS)."`
	TLSCert       string        `name:"tls-cert" placeholder:"FILE" help:"Client certificate for mTLS (with --tls-key)."`
	TLSKey        string        `name:"tls-key" placeholder:"FILE" help:"Client certificate's private key."`
	TLSServerName string        `name:"tls-server-name" placeholder:"NAME" help:"Name expected in the listener's certificate (default: the address)."`
	StateDir      string        `default:"/var/lib/selfheal/handler" placeholder:"DIR" help:"Directory of the advisory records of the agent's last answer per service (must exist, mode 0700, owned by the user handle_worker runs as; never decides anything)."`
	Deadline      time.Duration `default:"20s" help:"Total time limit, retries included (keep it under Nagios' event_handler_timeout of 30s and above the agent's action timeout plus kill grace)."`
	LogFile       string        `placeholder:"FILE" help:"Append JSON log lines here (default: stderr)."`
}

type eventCmd struct {
	State       string `arg:"" name:"STATE" help:"$SERVICESTATE$: OK, WARNING, UNKNOWN or CRITICAL."`
	StateType   string `arg:"" name:"STATETYPE" help:"$SERVICESTATETYPE$: SOFT or HARD."`
	Attempt     int    `arg:"" name:"ATTEMPT" help:"$SERVICEATTEMPT$."`
	HostAddress string `arg:"" name:"HOSTADDRESS" help:"$HOSTADDRESS$: where the listener runs."`
	HostName    string `arg:"" name:"HOSTNAME" help:"$HOSTNAME$ (names the record and the Nagios commands; lower-cased, the default --agent)."`
	ServiceDesc string `arg:"" name:"SERVICEDESC" help:"$SERVICEDESC$."`

	conn         `embed:""`
	Fault        string        `default:"-" placeholder:"ID" help:"The fault's id: Nagios $SERVICEPROBLEMID$, Icinga 2 $service.last_state_change$ (- or 0: none). The agent restarts once per fault."`
	Address      string        `placeholder:"ADDR" help:"Connect here instead of HOSTADDRESS."`
	Action       string        `default:"restart" enum:"restart,start" help:"Verb to send when healing: restart or start."`
	SoftAttempt  int           `default:"0" placeholder:"N" help:"Also ask at SOFT CRITICAL from attempt N (0 = only at HARD CRITICAL); the agent runs one restart per --fault."`
	CommandFile  string        `placeholder:"FIFO" help:"Nagios external command file: write comments and a forced re-check there."`
	RecheckDelay time.Duration `default:"2s" help:"Schedule the forced re-check this long after a successful restart."`
	DryRun       bool          `help:"Decide and print what would be sent and written, without sending anything or writing the record or the command file."`
}

type sendCmd struct {
	Verb string `arg:"" enum:"ping,status,start,stop,restart" help:"ping, status, start, stop or restart."`
	Host string `required:"" placeholder:"ADDR" help:"The listener's host or IP."`

	conn     `embed:""`
	HostName string `name:"hostname" placeholder:"NAME" help:"Nagios host name the record is kept under, and lower-cased the default --agent (default: --host)."`
	Service  string `placeholder:"DESC" help:"Nagios service description the record is kept under (default: --target)."`
}

// checkCmd takes the flags of event that name files, with event's defaults.
type checkCmd struct {
	KeyFile     string `required:"" placeholder:"FILE" help:"The --key-file of event and send."`
	StateDir    string `default:"/var/lib/selfheal/handler" placeholder:"DIR" help:"The --state-dir (default: event's; \"\" for none)."`
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

type grammar struct {
	Version  kong.VersionFlag `short:"V" help:"Print the version and exit."`
	Event    eventCmd         `cmd:"" help:"Handle one Nagios/Icinga state change (what the event_handler runs)."`
	Send     sendCmd          `cmd:"" help:"Send one request by hand (on-call use); a restart has its own fault id and obeys the agent's budget."`
	Check    checkCmd         `cmd:"" help:"Report every problem of the files the handler trusts (key, state dir, log file, command file) with its fix; run it as the nagios user."`
	Genkey   genkeyCmd        `cmd:"" help:"Generate the fleet key (mode 0600) for the monitoring nodes."`
	IssueKey issueKeyCmd      `cmd:"" name:"issue-key" help:"Issue an agent's host key from the fleet key (to stdout, for worker_listener import-key)."`
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
		}, &g, args)
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
	if c.Port < 1 || c.Port > 65535 {
		return handler.Conn{}, fmt.Errorf("--port %d out of range", c.Port)
	}
	if !protocol.ValidName(c.Target) {
		return handler.Conn{}, fmt.Errorf("--target %q: use 1-64 of a-z 0-9 . _ - starting with a letter or digit", c.Target)
	}
	address = strings.TrimSpace(address)
	if address == "" {
		return handler.Conn{}, errors.New("no address: HOSTADDRESS is empty and --address is not set")
	}
	key, err := handler.LoadKey(trust, c.KeyFile)
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
	return handler.Conn{Address: address, Port: c.Port, Agent: agent, Target: c.Target, Key: key, TLS: tc}, nil
}

// logger writes JSON lines to --log-file, or stderr when unset or when the
// file cannot be opened or is refused by the trust rule (the reason is
// then logged too).
func (c conn) logger(trust fsutil.Trust, stderr io.Writer) (zerolog.Logger, func()) {
	w, closer, note := stderr, func() {}, ""
	if c.LogFile != "" {
		// Never through a symlink, regular files only, opened without
		// blocking: a FIFO is an error (then stderr), not an open that
		// blocks past --deadline until Nagios' SIGKILL.
		f, err := handler.OpenLog(trust, c.LogFile)
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

func (e *eventCmd) run(ctx context.Context, trust fsutil.Trust, stdout, stderr io.Writer) int {
	ev, err := handler.ParseEvent(e.State, e.StateType, e.Attempt)
	if err != nil {
		return usage(stdout, err)
	}
	if e.SoftAttempt < 0 {
		return usage(stdout, errors.New("--soft-attempt must be 0 (off) or more"))
	}
	if e.RecheckDelay < 0 {
		return usage(stdout, errors.New("--recheck-delay must not be negative"))
	}
	addr := e.HostAddress
	if e.Address != "" {
		addr = e.Address
	}
	fault, err := handler.FaultID(e.Fault)
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
		if ev.State == nagios.Critical && e.CommandFile != "" && !e.DryRun {
			msg := "auto-healing impossible: handle_worker configuration error: " + cli.OneLine(err.Error()) + "; a human must look"
			if werr := (handler.CommandFile{Path: e.CommandFile}).Write(time.Now(),
				handler.AddSvcComment(e.HostName, e.ServiceDesc, true, handler.Author, msg)); werr != nil {
				fmt.Fprintf(stderr, "handle_worker: could not write to the command file: %v\n", werr)
			}
		}
		return usage(stdout, err)
	}
	log, closeLog := e.logger(trust, stderr)
	defer closeLog()
	res := handler.Run(ctx, handler.Config{
		Event: ev, Fault: fault, HostName: e.HostName, ServiceDesc: e.ServiceDesc, Conn: cn,
		Action: protocol.Verb(e.Action), StateDir: e.StateDir, Trust: trust, SoftAttempt: e.SoftAttempt,
		Deadline: e.Deadline, CommandFile: e.CommandFile, Recheck: e.RecheckDelay, DryRun: e.DryRun,
	}, handler.Deps{Log: log})
	fmt.Fprintln(stdout, "handle_worker: "+res.Line)
	if e.DryRun {
		for _, c := range res.Commands {
			fmt.Fprintf(stdout, "would write to %s: %s\n", orNone(e.CommandFile), c)
		}
	}
	return res.Code
}

func orNone(s string) string {
	if s == "" {
		return "(no --command-file)"
	}
	return s
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
	log, closeLog := s.logger(trust, stderr)
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
	fmt.Fprintf(stdout, "wrote fleet key %q to %s (mode 0600): keep it on the monitoring nodes only; give each worker host its own key with: handle_worker issue-key --key-file %s --agent NAME | ssh root@HOST worker_listener import-key --out /etc/selfheal/keys/%s.key\n",
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
	fleet, err := handler.LoadKey(trust, c.KeyFile)
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
