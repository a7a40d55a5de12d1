package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"

	"github.com/selfheal/selfheal/internal/cli"
	"github.com/selfheal/selfheal/internal/handler"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/protocol"
	"github.com/selfheal/selfheal/internal/version"
)

// conn holds the flags shared by both subcommands.
type conn struct {
	KeyFile       string        `required:"" placeholder:"FILE" help:"Key file (selfheal-key-v1, mode 0600/0400) shared with the listener."`
	Target        string        `required:"" placeholder:"NAME" help:"Service name on the listener (a services: entry in its config)."`
	Port          int           `default:"5690" help:"worker_listener's TCP port."`
	TLSCA         string        `name:"tls-ca" placeholder:"FILE" help:"CA bundle that verifies the listener's certificate (enables TLS)."`
	TLSCert       string        `name:"tls-cert" placeholder:"FILE" help:"Client certificate for mTLS (with --tls-key)."`
	TLSKey        string        `name:"tls-key" placeholder:"FILE" help:"Client certificate's private key."`
	TLSServerName string        `name:"tls-server-name" placeholder:"NAME" help:"Name expected in the listener's certificate (default: the address)."`
	StateDir      string        `default:"/var/lib/selfheal/handler" placeholder:"DIR" help:"Directory of the per-service restart budget state (must exist, writable by the nagios user)."`
	MaxRestarts   int           `default:"3" help:"Restarts allowed per --window (failed and manual ones count)."`
	Window        time.Duration `default:"1h" help:"Budget window."`
	MinGap        time.Duration `default:"2m" help:"Minimum time between two restarts."`
	Deadline      time.Duration `default:"20s" help:"Total time limit, retries included (keep it well under Nagios' event_handler_timeout of 30s)."`
	LogFile       string        `placeholder:"FILE" help:"Append JSON log lines here (default: stderr)."`
}

type eventCmd struct {
	State       string `arg:"" name:"STATE" help:"$SERVICESTATE$: OK, WARNING, UNKNOWN or CRITICAL."`
	StateType   string `arg:"" name:"STATETYPE" help:"$SERVICESTATETYPE$: SOFT or HARD."`
	Attempt     int    `arg:"" name:"ATTEMPT" help:"$SERVICEATTEMPT$."`
	HostAddress string `arg:"" name:"HOSTADDRESS" help:"$HOSTADDRESS$: where the listener runs."`
	HostName    string `arg:"" name:"HOSTNAME" help:"$HOSTNAME$ (names the state and the Nagios commands)."`
	ServiceDesc string `arg:"" name:"SERVICEDESC" help:"$SERVICEDESC$."`

	conn         `embed:""`
	Address      string        `placeholder:"ADDR" help:"Connect here instead of HOSTADDRESS."`
	Action       string        `default:"restart" enum:"restart,start" help:"Verb to send when healing: restart or start."`
	SoftAttempt  int           `default:"0" placeholder:"N" help:"Also act at SOFT CRITICAL from attempt N (0 = only at HARD CRITICAL). Never twice per fault."`
	CommandFile  string        `placeholder:"FIFO" help:"Nagios external command file: write comments and a forced re-check there."`
	RecheckDelay time.Duration `default:"2s" help:"Schedule the forced re-check this long after a successful restart."`
	DryRun       bool          `help:"Decide and print what would be sent and written, without sending anything or writing the budget state or the command file."`
}

type sendCmd struct {
	Verb string `arg:"" enum:"ping,status,start,stop,restart" help:"ping, status, start, stop or restart."`
	Host string `required:"" placeholder:"ADDR" help:"The listener's host or IP."`

	conn     `embed:""`
	HostName string `name:"hostname" placeholder:"NAME" help:"Nagios host name the budget state is kept under (default: --host)."`
	Service  string `placeholder:"DESC" help:"Nagios service description the budget state is kept under (default: --target)."`
}

type grammar struct {
	Version kong.VersionFlag `short:"V" help:"Print the version and exit."`
	Event   eventCmd         `cmd:"" help:"Handle one Nagios/Icinga state change (what the event_handler runs)."`
	Send    sendCmd          `cmd:"" help:"Send one request by hand (on-call use); a restart counts against the budget."`
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
			Description: "Nagios/Icinga event handler that restarts a worker through worker_listener, within a restart budget.",
			Version:     version.String("handle_worker"),
			Stdout:      stdout, Stderr: stderr,
			InfoExit: 0,
		}, &g, args)
		if err != nil {
			var er *cli.ExitRequest
			if errors.As(err, &er) {
				return er.Code
			}
			return usage(stdout, err)
		}
		switch kctx.Command() {
		case "send <verb>":
			return g.Send.run(ctx, stdout, stderr)
		default:
			return g.Event.run(ctx, stdout, stderr)
		}
	})
}

func usage(stdout io.Writer, err error) int {
	fmt.Fprintf(stdout, "handle_worker: usage error: %s\n", cli.OneLine(err.Error()))
	return handler.ExitUsage
}

// setup validates the shared flags and loads the key and TLS config.
func (c conn) setup(address string) (handler.Conn, handler.Budget, error) {
	b := handler.Budget{Max: c.MaxRestarts, Window: c.Window, MinGap: c.MinGap}
	if err := b.Validate(); err != nil {
		return handler.Conn{}, b, err
	}
	if c.Deadline <= 0 || c.Deadline > 10*time.Minute {
		return handler.Conn{}, b, fmt.Errorf("--deadline %s: want more than 0 and at most 10m", c.Deadline)
	}
	if c.Port < 1 || c.Port > 65535 {
		return handler.Conn{}, b, fmt.Errorf("--port %d out of range", c.Port)
	}
	if !protocol.ValidName(c.Target) {
		return handler.Conn{}, b, fmt.Errorf("--target %q: use 1-64 of a-z 0-9 . _ - starting with a letter or digit", c.Target)
	}
	address = strings.TrimSpace(address)
	if address == "" {
		return handler.Conn{}, b, errors.New("no address: HOSTADDRESS is empty and --address is not set")
	}
	key, err := protocol.LoadKeyFile(c.KeyFile)
	if err != nil {
		return handler.Conn{}, b, err
	}
	var tc *tls.Config
	if c.TLSCA != "" || c.TLSCert != "" || c.TLSKey != "" || c.TLSServerName != "" {
		if tc, err = protocol.ClientTLS(c.TLSCA, c.TLSCert, c.TLSKey, c.TLSServerName); err != nil {
			return handler.Conn{}, b, err
		}
	}
	return handler.Conn{Address: address, Port: c.Port, Target: c.Target, Key: key, TLS: tc}, b, nil
}

// logger writes JSON lines to --log-file, or stderr when unset or when the
// file cannot be opened (the reason is then logged too).
func (c conn) logger(stderr io.Writer) (zerolog.Logger, func()) {
	w, closer, note := stderr, func() {}, ""
	if c.LogFile != "" {
		// O_NONBLOCK: a FIFO without a reader is an error (then stderr),
		// not an open that blocks past --deadline until Nagios' SIGKILL.
		f, err := os.OpenFile(c.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NONBLOCK, 0o640)
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

func (e *eventCmd) run(ctx context.Context, stdout, stderr io.Writer) int {
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
	cn, budget, err := e.setup(addr)
	if err != nil {
		// Nagios only logs a failing handler's output: when a fault needs
		// healing and our own configuration (key, TLS files) stops it, say
		// so where on-call looks, on the service itself.
		if ev.State == nagios.Critical && e.CommandFile != "" && !e.DryRun {
			msg := "auto-healing impossible: handle_worker configuration error: " + cli.OneLine(err.Error()) + "; a human must look"
			if werr := (handler.CommandFile{Path: e.CommandFile}).Write(time.Now(),
				handler.AddSvcComment(e.HostName, e.ServiceDesc, true, handler.Author, msg)); werr != nil {
				fmt.Fprintf(stderr, "handle_worker: could not write to the command file: %v\n", werr)
			}
		}
		return usage(stdout, err)
	}
	log, closeLog := e.logger(stderr)
	defer closeLog()
	res := handler.Run(ctx, handler.Config{
		Event: ev, HostName: e.HostName, ServiceDesc: e.ServiceDesc, Conn: cn,
		Action: protocol.Verb(e.Action), StateDir: e.StateDir, Budget: budget, SoftAttempt: e.SoftAttempt,
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

func (s *sendCmd) run(ctx context.Context, stdout, stderr io.Writer) int {
	cn, budget, err := s.setup(s.Host)
	if err != nil {
		return usage(stdout, err)
	}
	host, svc := s.HostName, s.Service
	if host == "" {
		host = s.Host
	}
	if svc == "" {
		svc = s.Target
	}
	log, closeLog := s.logger(stderr)
	defer closeLog()
	res := handler.Send(ctx, handler.SendConfig{
		Verb: protocol.Verb(s.Verb), Conn: cn, Deadline: s.Deadline,
		StateDir: s.StateDir, HostName: host, ServiceDesc: svc, Budget: budget,
	}, handler.Deps{Log: log})
	fmt.Fprintln(stdout, res.Line)
	return res.Code
}
