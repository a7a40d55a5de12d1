package healercheck

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"github.com/selfheal/selfheal/internal/cli"
	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/icingaapi"
	"github.com/selfheal/selfheal/internal/nodestate"
	"github.com/selfheal/selfheal/internal/protocol"
	"github.com/selfheal/selfheal/internal/thresholds"
)

// Flags is check_selfheal's grammar: one field per flag, each declared
// once by its tags, as check_worker's. kong reads it for -h, -V and every
// usage error.
type Flags struct {
	Version kong.VersionFlag `short:"V" help:"Print the version and exit 3."`
	Agent   AgentFlags       `cmd:"" help:"One worker host's agent: reachable, our key accepted, its clock, its version, each service's budget and last restart."`
	Node    NodeFlags        `cmd:"" help:"This monitoring node's handler: pauses, the breaker, held and failing heals, its state directory, the engine's write-back channel."`
}

// AgentFlags are agent mode's flags. The connection flags are
// handle_worker's, so that a service definition can copy them.
type AgentFlags struct {
	Hostname       string   `short:"H" required:"" placeholder:"HOST" help:"The agent's host or address ($HOSTADDRESS$)."`
	Port           int      `short:"p" default:"5690" help:"worker_listener's TCP port."`
	AgentName      string   `name:"agent" placeholder:"NAME" help:"The agent's name (agent: in its config), lower-cased as handle_worker does; default: -H when it is a name, not an address."`
	KeyFile        string   `name:"key-file" required:"" placeholder:"FILE" help:"The fleet key (or the agent's host key), as handle_worker's --key-file."`
	Target         []string `placeholder:"SERVICE" help:"Services to report on (repeatable, or comma-separated); default: every service the agent has a status action for."`
	Warning        string   `short:"w" default:"${offset_warn}" placeholder:"RANGE" help:"Clock offset range (milliseconds, absolute) for WARNING (default ${default})."`
	Critical       string   `short:"c" default:"${offset_crit}" placeholder:"RANGE" help:"Clock offset range (milliseconds, absolute) for CRITICAL (default ${default})."`
	BudgetWarning  string   `name:"budget-warning" default:"${budget_warn}" placeholder:"RANGE" help:"Restarts left in a service's budget: range for WARNING (default ${default})."`
	BudgetCritical string   `name:"budget-critical" placeholder:"RANGE" help:"Restarts left in a service's budget: range for CRITICAL (default none)."`
	TLSCA          string   `name:"tls-ca" placeholder:"FILE" help:"CA bundle that verifies the agent's certificate (enables TLS)."`
	TLSCert        string   `name:"tls-cert" placeholder:"FILE" help:"Client certificate for mTLS (with --tls-key)."`
	TLSKey         string   `name:"tls-key" placeholder:"FILE" help:"Client certificate's private key."`
	TLSServerName  string   `name:"tls-server-name" placeholder:"NAME" help:"Name expected in the agent's certificate (default: -H)."`
	Timeout        string   `short:"t" default:"10" placeholder:"SECONDS" help:"The whole check ends within this (seconds or a duration)."`
}

// NodeFlags are node mode's flags; the breaker's are handle_worker's.
type NodeFlags struct {
	StateDir             string        `name:"state-dir" default:"${state_dir}" placeholder:"DIR" help:"handle_worker's --state-dir."`
	CommandFile          string        `name:"command-file" placeholder:"FIFO" help:"Nagios' command file: must have a reader (the engine)."`
	IcingaAPI            string        `name:"icinga-api" placeholder:"URL" help:"Icinga 2 API the handler writes back through, e.g. https://localhost:5665 (a /v1 path is accepted); it must answer."`
	IcingaCA             string        `name:"icinga-ca" default:"/var/lib/icinga2/certs/ca.crt" placeholder:"FILE" help:"Icinga's CA: the API's certificate is verified against it."`
	IcingaCredentials    string        `name:"icinga-credentials" placeholder:"FILE" help:"handle_worker's --icinga-credentials: the API must accept them (without, any answer will do)."`
	IcingaServerName     string        `name:"icinga-server-name" placeholder:"NAME" help:"Name expected in the API's certificate (default: the URL's host; Icinga's own certificate names NodeName)."`
	Recent               time.Duration `default:"1h" help:"A failed heal counts as failing for this long after its answer."`
	nodestate.JudgeFlags `embed:""`
	Timeout              string `short:"t" default:"10" placeholder:"SECONDS" help:"The whole check ends within this (seconds or a duration)."`
}

// Vars are the defaults the grammar interpolates.
var Vars = kong.Vars{"offset_warn": DefaultOffsetWarn, "offset_crit": DefaultOffsetCrit, "budget_warn": DefaultBudgetWarn,
	"state_dir": nodestate.DefaultStateDir}

// JudgeHelp words nodestate.JudgeFlags' help: they are handle_worker's
// flags.
var JudgeHelp = cli.HelpText(map[string]string{
	"ignore_help":                "handle_worker's --ignore: a switched-off pause or breaker holds nothing back, so it is not judged.",
	"breaker_threshold_help":     "handle_worker's --breaker-threshold.",
	"breaker_window_help":        "handle_worker's --breaker-window.",
	"breaker_quiet_help":         "handle_worker's --breaker-quiet.",
	"breaker_zone_window_help":   "handle_worker's --breaker-zone-window.",
	"breaker_verify_help":        "handle_worker's --breaker-verify.",
	"breaker_event_command_help": "handle_worker's --breaker-event-command.",
})

// Config validates agent mode's flags; every error is a usage error
// (UNKNOWN). The key is loaded under the trust rule, as handle_worker
// loads it.
func (f AgentFlags) Config(t fsutil.Trust) (AgentConfig, error) {
	var c AgentConfig
	var err error
	if c.Timeout, err = ParseTimeout(f.Timeout); err != nil {
		return c, err
	}
	host := strings.Trim(f.Hostname, "[]")
	if host == "" || strings.ContainsAny(host, "/@?# ") {
		return c, fmt.Errorf("-H %q is not a host name or address", f.Hostname)
	}
	if f.Port < 1 || f.Port > 65535 {
		return c, fmt.Errorf("-p %d: want a port between 1 and 65535", f.Port)
	}
	c.Addr = net.JoinHostPort(host, strconv.Itoa(f.Port))
	c.Agent = strings.ToLower(f.AgentName)
	if c.Agent == "" && net.ParseIP(host) != nil {
		return c, fmt.Errorf("-H %s is an address: give --agent (agent: in its config; handle_worker's default is the Nagios host name, lower-cased)", host)
	}
	if c.Agent == "" {
		c.Agent = strings.ToLower(host)
	}
	if !protocol.ValidName(c.Agent) {
		return c, fmt.Errorf("agent name %q: give --agent (a-z 0-9 . _ -, as agent: in its config)", c.Agent)
	}
	for _, t := range f.Target {
		for _, n := range strings.Split(t, ",") {
			if n = strings.TrimSpace(n); n == "" {
				continue
			}
			if !protocol.ValidName(n) {
				return c, fmt.Errorf("--target %q: not a service name (a-z 0-9 . _ -)", n)
			}
			c.Targets = append(c.Targets, n)
		}
	}
	if c.Offset, err = thresholds.ParsePair(f.Warning, f.Critical); err != nil {
		return c, fmt.Errorf("-w/-c clock offset: %v", err)
	}
	if c.Budget, err = thresholds.ParsePair(f.BudgetWarning, f.BudgetCritical); err != nil {
		return c, fmt.Errorf("--budget-warning/--budget-critical: %v", err)
	}
	if f.TLSCA != "" || f.TLSCert != "" || f.TLSKey != "" || f.TLSServerName != "" {
		if c.TLS, err = protocol.ClientTLS(f.TLSCA, f.TLSCert, f.TLSKey, f.TLSServerName); err != nil {
			return c, err
		}
	}
	if c.Key, err = nodestate.LoadKey(t, f.KeyFile); err != nil {
		return c, err
	}
	return c, nil
}

// Config validates node mode's flags.
func (f NodeFlags) Config(t fsutil.Trust) (NodeConfig, error) {
	c := NodeConfig{StateDir: f.StateDir, Trust: t, Recent: f.Recent, CommandFile: f.CommandFile,
		Breaker: f.Breaker()}
	var err error
	if c.Timeout, err = ParseTimeout(f.Timeout); err != nil {
		return c, err
	}
	if c.Ignore, err = f.Ignored(); err != nil {
		return c, err
	}
	if c.StateDir == "" {
		return c, errors.New("--state-dir is empty")
	}
	if err := c.Breaker.Validate(); err != nil {
		return c, err
	}
	if f.Recent <= 0 {
		return c, fmt.Errorf("--recent %s: must be above 0", f.Recent)
	}
	if f.IcingaCredentials != "" && f.IcingaAPI == "" {
		return c, errors.New("--icinga-credentials without --icinga-api")
	}
	if f.IcingaAPI != "" {
		if !strings.HasPrefix(f.IcingaAPI, "https://") {
			return c, fmt.Errorf("--icinga-api %q: want an https:// URL", f.IcingaAPI)
		}
		// The API's base, as handle_worker takes it; "/v1", which this
		// flag once asked for, is the path the check asks anyway.
		base := strings.TrimSuffix(strings.TrimSuffix(f.IcingaAPI, "/"), "/v1")
		c.Icinga = &icingaapi.Config{URL: base, CAFile: f.IcingaCA, ServerName: f.IcingaServerName, Timeout: c.Timeout}
		if f.IcingaCredentials != "" {
			if c.Icinga.User, c.Icinga.Password, err = icingaapi.LoadCredentials(t, f.IcingaCredentials); err != nil {
				return c, err
			}
		}
	}
	return c, nil
}

// ParseTimeout reads -t: plain seconds ("10", "0.5") or a Go duration
// ("90s"), above 0 and at most 1h.
func ParseTimeout(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	d, err := time.ParseDuration(s)
	if f, ferr := strconv.ParseFloat(s, 64); ferr == nil {
		d, err = 0, errors.New("out of range")
		if f > 0 && f <= 3600 { // NaN and Inf fail both
			d, err = time.Duration(f*float64(time.Second)), nil
		}
	}
	if err != nil || d <= 0 || d > time.Hour {
		return 0, fmt.Errorf("timeout %q: want seconds or a duration above 0 and at most 1h", s)
	}
	return d, nil
}
