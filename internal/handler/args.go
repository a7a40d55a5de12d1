package handler

import (
	"crypto/tls"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"github.com/selfheal/selfheal/internal/cli"
	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/icingaapi"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/nodestate"
	"github.com/selfheal/selfheal/internal/protocol"
)

// handle_worker's command line: one grammar for its subcommands (kong reads
// it: the help, the man page and every usage error come from these tags),
// and the validation that turns the flags into each core's config.
// cmd/handle_worker parses with ParseArgs and runs Grammar.Exec; commands.go
// has each subcommand.

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
func (f icingaFlags) engine(trust fsutil.Trust, commandFile, stateDir string) (Engine, error) {
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
	return IcingaEngine{Client: c}, nil
}

// judgeFlags are the rules' switches, shared by event, reevaluate and
// status (and, through nodestate, check_selfheal node).
type judgeFlags struct {
	nodestate.JudgeFlags `embed:""`
}

// judgeHelp words judgeFlags' help for handle_worker.
var judgeHelp = cli.HelpText(map[string]string{
	"ignore_help":                "Rules to switch off: pause, downtime, ack, host, dependency, breaker (all are on by default).",
	"breaker_threshold_help":     "The zone's mass-failure rule: at most N failing services of the zone are restarted at once (the first N to turn HARD CRITICAL); more failing at once is held as a storm. Also the node's own count when the zone cannot be read.",
	"breaker_window_help":        "The node's own count's window (used only when the zone cannot be read).",
	"breaker_quiet_help":         "A held storm's first trial restart waits until no new failure arrived in the zone for this long; failed trials back off from it.",
	"breaker_zone_window_help":   "Services that turned HARD CRITICAL longer ago are not counted as part of a storm.",
	"breaker_verify_help":        "A restart the engine does not show healed within this long failed (a trial that failed shrinks the rule to one at a time).",
	"breaker_event_command_help": "The event command (Nagios event_handler, Icinga 2 EventCommand) of the services the zone rule counts.",
})

func (j judgeFlags) judgment() (Judgment, error) {
	ign, err := j.Ignored()
	if err != nil {
		return Judgment{}, err
	}
	cfg := j.Breaker()
	if err := cfg.Validate(); err != nil {
		return Judgment{}, err
	}
	zone := j.Zone()
	if err := zone.Validate(); err != nil {
		return Judgment{}, err
	}
	return Judgment{Ignore: ign, Breaker: cfg, Zone: zone, EventCommand: j.BreakerEventCommand}, nil
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

// Globals are the flags of every subcommand.
type Globals struct {
	Version kong.VersionFlag `short:"V" help:"Print the version and exit."`
}

// Grammar is handle_worker's command line: the subcommands and their flags.
type Grammar struct {
	Globals
	Event      eventCmd      `cmd:"" help:"Handle one Nagios/Icinga state change (what the event_handler runs)."`
	Send       sendCmd       `cmd:"" help:"Send one request by hand (on-call use); a restart has its own fault id and obeys the agent's budget."`
	Check      checkCmd      `cmd:"" help:"Report every problem of the files the handler trusts (key, state dir, log file, command file) with its fix; run it as the nagios user."`
	Genkey     genkeyCmd     `cmd:"" help:"Generate the fleet key (mode 0600) for the monitoring nodes."`
	IssueKey   issueKeyCmd   `cmd:"" name:"issue-key" help:"Issue an agent's host key from the fleet key (to stdout, for worker_listener import-key)."`
	Reevaluate reevaluateCmd `cmd:"" help:"Ask again for the restarts held back (downtime, host DOWN, pause, breaker, back-off) whose reason is gone; a plugin: run it as a service check on the monitoring node."`
	Pause      pauseCmd      `cmd:"" help:"Hold every restart back on this node, for one host, or one service, until --for ends or resume."`
	Resume     resumeCmd     `cmd:"" help:"End a pause; reevaluate then heals what it held back."`
	Status     statusCmd     `cmd:"" help:"Show, per service, the last answer, what is held back and why, the budget, the pauses and the breaker."`
}

// setup validates the shared flags and loads the key (once the trust rule
// passes it) and TLS config for agent: a key that cannot sign for it is a
// configuration error.
func (c conn) setup(trust fsutil.Trust, address, agent string) (Conn, error) {
	if c.Deadline <= 0 || c.Deadline > 10*time.Minute {
		return Conn{}, fmt.Errorf("--deadline %s: want more than 0 and at most 10m", c.Deadline)
	}
	port, err := parsePort(c.Port)
	if err != nil {
		return Conn{}, err
	}
	if !protocol.ValidName(c.Target) {
		return Conn{}, fmt.Errorf("--target %q: use 1-64 of a-z 0-9 . _ - starting with a letter or digit", c.Target)
	}
	address = strings.TrimSpace(address)
	if address == "" {
		return Conn{}, errors.New("no address: HOSTADDRESS is empty and --address is not set")
	}
	key, err := nodestate.LoadKey(trust, c.KeyFile)
	if err != nil {
		return Conn{}, err
	}
	if _, err := key.ForAgent(agent); err != nil {
		return Conn{}, fmt.Errorf("key file %s: %w", c.KeyFile, err)
	}
	var tc *tls.Config
	if c.TLSCA != "" || c.TLSCert != "" || c.TLSKey != "" || c.TLSServerName != "" {
		if tc, err = protocol.ClientTLS(c.TLSCA, c.TLSCert, c.TLSKey, c.TLSServerName); err != nil {
			return Conn{}, err
		}
	}
	return Conn{Address: address, Port: port, Agent: agent, Target: c.Target, Key: key, TLS: tc}, nil
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
func (e *eventCmd) facts(trust fsutil.Trust, files ResolvedFiles) (Facts, Judgment, error) {
	f := NoFacts
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
		return f, Judgment{}, err
	}
	if err := depth("--host-downtime", e.HostDowntime, &f.HostDowntime); err != nil {
		return f, Judgment{}, err
	}
	if err := depth("--ack", e.Ack, &f.Ack); err != nil {
		return f, Judgment{}, err
	}
	if strings.TrimSpace(e.HostState) != "" {
		hs, ok := nagios.ParseHostState(e.HostState)
		if !ok {
			return f, Judgment{}, fmt.Errorf("--host-state %q: want UP, DOWN or UNREACHABLE", e.HostState)
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
	j.StatusFile = files.StatusFile
	return f, j, err
}

// ParseArgs reads handle_worker's command line; the string is kong's name
// of the subcommand chosen ("send <verb>", "pause", ...). Errors are
// cli's *ExitRequest (help, version) or a usage error.
//
// A command line that names its subcommand first (as the engines' always
// do) builds kong's model of that subcommand only: kong builds, and
// interpolates every help string of, each command of the grammar it is
// given, and for the whole grammar that was three quarters of an event
// run's CPU (16 ms; an engine's first start runs the handler once per
// service). The model of one command is the same node as in the whole
// grammar, so its help, errors and values are the same.
//
// An event line as the engines write it goes further: it takes cli.Fast
// (args_gen.go, generated from kong's model of event) and builds no model
// at all. That was a quarter of a SOFT run's CPU, which a storm pays
// three times per failing service (docs/benchmarks.md).
func ParseArgs(app cli.App, args []string) (*Grammar, string, error) {
	var g Grammar
	if fastEvent.Parse(args, &g.Event) {
		return &g, eventCommand, nil
	}
	return parseArgs(app, args, true)
}

// eventCommand is kong's name of the event subcommand, as ParseArgs
// returns it.
const eventCommand = "event <STATE> <STATETYPE> <ATTEMPT> <HOSTADDRESS> <HOSTNAME> <SERVICEDESC>"

// parseArgs is ParseArgs; oneCommand false builds the whole grammar
// always (the tests compare the two).
func parseArgs(app cli.App, args []string, oneCommand bool) (*Grammar, string, error) {
	var g Grammar
	opts := []kong.Option{kong.Vars{"state_dir": nodestate.DefaultStateDir}, judgeHelp}
	root := any(&g)
	if len(args) > 0 && oneCommand {
		if f, ok := commandField(args[0]); ok {
			root = &g.Globals
			tags := []string{}
			if n, ok := f.Tag.Lookup("name"); ok {
				tags = append(tags, `name:"`+n+`"`)
			}
			opts = append(opts, kong.DynamicCommand(args[0], f.Tag.Get("help"), "", reflect.ValueOf(&g).Elem().FieldByIndex(f.Index).Addr().Interface(), tags...))
		}
	}
	kctx, err := cli.Parse(app, root, args, opts...)
	if err != nil {
		return nil, "", err
	}
	return &g, kctx.Command(), nil
}

// commandField is Grammar's field of the subcommand named name.
func commandField(name string) (reflect.StructField, bool) {
	t := reflect.TypeFor[Grammar]()
	for i := range t.NumField() {
		f := t.Field(i)
		if _, cmd := f.Tag.Lookup("cmd"); !cmd {
			continue
		}
		n, ok := f.Tag.Lookup("name")
		if !ok {
			n = strings.ToLower(f.Name)
		}
		if n == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}
