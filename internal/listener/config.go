// Package listener is worker_listener's core: the config, the server that
// authenticates requests for this agent, the allow-listed action registry
// and executor, the per-service records that make the agent the authority
// on restarts (one per fault, the budget), connection limits with eviction
// of idle connections, rate limits, the persistent nonce cache and the
// audit log.
package listener

import (
	"bytes"
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/selfheal/selfheal/internal/breaker"
	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/protocol"
)

// Config is worker_listener's YAML config. docs/protocol.md and the sample
// nagios-config/listener/worker_listener.yaml describe every field.
type Config struct {
	Listen string `yaml:"listen"`
	// Agent is this agent's identity: every request must name it, and
	// every reply does.
	Agent         string             `yaml:"agent"`
	Keys          []string           `yaml:"keys"`
	Allow         []string           `yaml:"allow"`
	AuditLog      string             `yaml:"audit_log"`
	StateDir      string             `yaml:"state_dir"`
	ReplayWindow  time.Duration      `yaml:"replay_window"`
	ShutdownGrace time.Duration      `yaml:"shutdown_grace"`
	TLS           *TLSConfig         `yaml:"tls"`
	Limits        Limits             `yaml:"limits"`
	Budget        BudgetConfig       `yaml:"budget"`
	Breaker       BreakerConfig      `yaml:"breaker"`
	Services      map[string]Service `yaml:"services"`

	// Resolved by Load.
	breaker     *breaker.Config // nil: off (switched off, or too few services)
	restartable int             // services with a restart action
	keys        map[string]protocol.Key
	allow       []netip.Prefix
	tlsConf     *tls.Config
	fromFile    string
}

// TLSConfig turns on TLS 1.3 (on top of the HMAC). With ClientCA set,
// clients must present a certificate signed by it (mTLS).
type TLSConfig struct {
	Cert     string `yaml:"cert"`
	Key      string `yaml:"key"`
	ClientCA string `yaml:"client_ca"`
}

// Limits bound what one peer, or all of them, can cost the agent.
type Limits struct {
	MaxConns          int           `yaml:"max_conns"`
	MaxConnsPerSource int           `yaml:"max_conns_per_source"`
	Rate              float64       `yaml:"rate"`  // requests per second per source
	Burst             int           `yaml:"burst"` // bucket size per source
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	WriteTimeout      time.Duration `yaml:"write_timeout"`
	HandshakeTimeout  time.Duration `yaml:"handshake_timeout"`
}

// Service is one worker this host may heal.
type Service struct {
	Actions map[string]Action `yaml:"actions"`
	// Budget overrides the top-level budget field by field.
	Budget BudgetConfig `yaml:"budget"`

	budget  Budget
	backoff Backoff
}

// BudgetConfig is the YAML form of a restart budget and back-off; a field
// left out takes the default (top level) or the top-level value (per
// service).
type BudgetConfig struct {
	Max        *int           `yaml:"max"`
	Window     *time.Duration `yaml:"window"`
	MinGap     *time.Duration `yaml:"min_gap"`
	MaxGap     *time.Duration `yaml:"max_gap"`
	ResetAfter *time.Duration `yaml:"reset_after"`
}

// Backoff spaces out a chain of restarts of one service: after the k-th
// restart in a row the next waits min(min_gap × 2^(k-1), MaxGap); the
// chain ends once ResetAfter passes without a restart. The zero value, or
// MaxGap at most min_gap, is no back-off (min_gap alone).
type Backoff struct {
	MaxGap     time.Duration
	ResetAfter time.Duration
}

// Back-off defaults, beside the peers (docs/agent-judgment.md): Kubernetes
// doubles from 10 s to 5 min and resets after 10 min running; systemd
// stops at StartLimitBurst=5 per 10 s; monit unmonitors after 3 restarts
// in 5 cycles. A restart here costs a page-free heal but takes a worker
// down: 2, 4, 8, 10 minutes apart, the chain forgotten after 20 quiet
// minutes (two of Kubernetes' resets, as our checks run every minute, not
// every 10 s). A max_gap or reset_after below min_gap's needs is raised
// to it when left out, so an older config with a long min_gap still loads.
const (
	DefaultMaxGap     = 10 * time.Minute
	DefaultResetAfter = 20 * time.Minute
)

// resolveBackoff is the back-off of a service whose min_gap is minGap,
// from its own fields over the top-level ones over the defaults.
func resolveBackoff(minGap time.Duration, fields ...BudgetConfig) Backoff {
	var maxGap, reset *time.Duration
	for _, c := range fields {
		maxGap = cmp.Or(maxGap, c.MaxGap)
		reset = cmp.Or(reset, c.ResetAfter)
	}
	b := Backoff{MaxGap: max(DefaultMaxGap, minGap)}
	if maxGap != nil {
		b.MaxGap = *maxGap
	}
	b.ResetAfter = max(DefaultResetAfter, b.MaxGap)
	if reset != nil {
		b.ResetAfter = *reset
	}
	return b
}

func (b Backoff) check(minGap time.Duration) error {
	switch {
	case b.MaxGap < minGap || b.MaxGap > MaxBudgetWindow:
		return fmt.Errorf("max_gap %s: must be between min_gap (%s) and %s (max_gap equal to min_gap turns back-off off)", b.MaxGap, minGap, MaxBudgetWindow)
	case b.ResetAfter < b.MaxGap || b.ResetAfter < time.Second || b.ResetAfter > MaxBudgetWindow:
		return fmt.Errorf("reset_after %s: must be between max_gap (%s, and 1s) and %s", b.ResetAfter, b.MaxGap, MaxBudgetWindow)
	}
	return nil
}

// BreakerConfig is the agent's mass-failure breaker, per host across its
// services (internal/breaker): when more than Fraction of the services
// need a restart within Window, the cause is likely shared and restarts
// are held back until Quiet passes without a new failure (then one trial,
// then Quiet again). Off for hosts with fewer than MinServices services;
// never open while at most MinCount services need a restart.
type BreakerConfig struct {
	Enabled     *bool         `yaml:"enabled"`
	Window      time.Duration `yaml:"window"`
	Fraction    float64       `yaml:"fraction"`
	MinServices int           `yaml:"min_services"`
	MinCount    int           `yaml:"min_count"`
	Quiet       time.Duration `yaml:"quiet"`
}

// Breaker defaults. Half of one host's services at once is not a worker's
// own bug (Kubernetes' MachineHealthCheck maxUnhealthy is the peer); with
// fewer than 3 services "half" is one, and one failure is no storm.
const (
	DefaultBreakerFraction    = 0.5
	DefaultBreakerMinServices = 3
	// DefaultBreakerMinCount: a host's first 5 restarts within the window
	// always run. Fewer harm no shared dependency (systemd itself counts 5
	// starts in 10 s as routine, StartLimitBurst), the budget already stops
	// a loop, and the zone's rule bounds a storm; docs/agent-judgment.md.
	DefaultBreakerMinCount = 5
	maxBreakerTime         = 24 * time.Hour
)

// Budget is a service's restart budget: at most Max restarts in any
// Window, at least MinGap apart.
type Budget struct {
	Max    int
	Window time.Duration
	MinGap time.Duration
}

// DefaultBudget is the budget of a service when the config sets none: the
// one the handler used to keep. A function, so that no caller can change
// every later config's default.
func DefaultBudget() Budget { return Budget{Max: 3, Window: time.Hour, MinGap: 2 * time.Minute} }

// Budget bounds. A window of a week is already more than an operator
// would wait; the restart list in the state file holds at most MaxBudget
// times.
const (
	MaxBudget       = 10000
	MaxBudgetWindow = 7 * 24 * time.Hour
)

// over returns b with the fields c sets.
func (b Budget) over(c BudgetConfig) Budget {
	if c.Max != nil {
		b.Max = *c.Max
	}
	if c.Window != nil {
		b.Window = *c.Window
	}
	if c.MinGap != nil {
		b.MinGap = *c.MinGap
	}
	return b
}

func (b Budget) check() error {
	switch {
	case b.Max < 1 || b.Max > MaxBudget:
		return fmt.Errorf("max %d: must be between 1 and %d restarts", b.Max, MaxBudget)
	case b.Window < time.Second || b.Window > MaxBudgetWindow:
		return fmt.Errorf("window %s: must be between 1s and %s", b.Window, MaxBudgetWindow)
	case b.MinGap < 0 || b.MinGap > b.Window:
		return fmt.Errorf("min_gap %s: must be between 0 and the window (%s)", b.MinGap, b.Window)
	}
	return nil
}

// Action is a fixed argv run without a shell. Nothing from the wire is
// ever added to it.
type Action struct {
	Argv      []string          `yaml:"argv"`
	Timeout   time.Duration     `yaml:"timeout"`
	KillGrace time.Duration     `yaml:"kill_grace"`
	Dir       string            `yaml:"dir"`
	Env       map[string]string `yaml:"env"`
	User      string            `yaml:"user"`

	env  []string
	cred *syscall.Credential
}

// Defaults, chosen for a 3 a.m. operator: generous enough for a real
// restart script, tight enough that a stuck peer is dropped in seconds.
const (
	DefaultListen        = "127.0.0.1:5690"
	DefaultReplayWindow  = 60 * time.Second
	DefaultShutdownGrace = 30 * time.Second
	// DefaultActionTimeout plus DefaultKillGrace (15 s) stays below
	// handle_worker's 18 s deadline, so the handler hears the true outcome.
	DefaultActionTimeout = 10 * time.Second
	DefaultKillGrace     = 5 * time.Second
	DefaultPath          = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	maxActionTimeout     = 10 * time.Minute
	// MaxReplayWindow is the largest replay_window. The nonce cache keeps
	// nonces this long whatever the configured window, so that widening
	// replay_window (reload or restart) cannot readmit a request whose
	// nonce a narrower window had already forgotten.
	MaxReplayWindow = 10 * time.Minute
	maxKillGrace    = time.Minute
)

// MaxIOTimeout caps read_timeout, write_timeout and handshake_timeout.
const MaxIOTimeout = time.Minute

// DefaultLimits are used for every limit left out or zero. A function, so
// that no caller can change every later config's default.
func DefaultLimits() Limits {
	return Limits{
		MaxConns:          64,
		MaxConnsPerSource: 8,
		Rate:              5,
		Burst:             20,
		ReadTimeout:       5 * time.Second,
		WriteTimeout:      5 * time.Second,
		HandshakeTimeout:  5 * time.Second,
	}
}

// defaults is every default of the config in one value: what a config
// that sets nothing gets. Per-service budgets and back-off are resolved
// from the top level's (resolveServices), and actions from defaultAction.
func defaults() Config {
	return Config{
		Listen:        DefaultListen,
		ReplayWindow:  DefaultReplayWindow,
		ShutdownGrace: DefaultShutdownGrace,
		Limits:        DefaultLimits(),
		Breaker: BreakerConfig{
			Window:      breaker.DefaultWindow,
			Quiet:       breaker.DefaultQuiet,
			Fraction:    DefaultBreakerFraction,
			MinServices: DefaultBreakerMinServices,
			MinCount:    DefaultBreakerMinCount,
		},
	}
}

// defaultAction is every default of an action.
func defaultAction() Action {
	return Action{Timeout: DefaultActionTimeout, KillGrace: DefaultKillGrace, Dir: "/"}
}

// withDefaults fills every field left out from d. A field set to zero
// takes the default too, as it always has: a zero timeout or max_conns
// would stop the agent from working at all, never what an operator meant.
// So the defaults are applied after decoding, not decoded over (which
// would turn an explicit 0 into a value).
func (c *Config) withDefaults(d Config) {
	c.Listen = cmp.Or(c.Listen, d.Listen)
	c.ReplayWindow = cmp.Or(c.ReplayWindow, d.ReplayWindow)
	c.ShutdownGrace = cmp.Or(c.ShutdownGrace, d.ShutdownGrace)
	l, dl := &c.Limits, d.Limits
	l.MaxConns = cmp.Or(l.MaxConns, dl.MaxConns)
	l.MaxConnsPerSource = cmp.Or(l.MaxConnsPerSource, dl.MaxConnsPerSource)
	l.Rate = cmp.Or(l.Rate, dl.Rate)
	l.Burst = cmp.Or(l.Burst, dl.Burst)
	l.ReadTimeout = cmp.Or(l.ReadTimeout, dl.ReadTimeout)
	l.WriteTimeout = cmp.Or(l.WriteTimeout, dl.WriteTimeout)
	l.HandshakeTimeout = cmp.Or(l.HandshakeTimeout, dl.HandshakeTimeout)
	b, db := &c.Breaker, d.Breaker
	b.Window = cmp.Or(b.Window, db.Window)
	b.Quiet = cmp.Or(b.Quiet, db.Quiet)
	b.Fraction = cmp.Or(b.Fraction, db.Fraction)
	b.MinServices = cmp.Or(b.MinServices, db.MinServices)
	b.MinCount = cmp.Or(b.MinCount, db.MinCount)
	da := defaultAction()
	for _, svc := range c.Services {
		for vn, a := range svc.Actions {
			a.Timeout = cmp.Or(a.Timeout, da.Timeout)
			a.KillGrace = cmp.Or(a.KillGrace, da.KillGrace)
			a.Dir = cmp.Or(a.Dir, da.Dir)
			svc.Actions[vn] = a
		}
	}
}

// Load reads, defaults and validates a config file, loading its keys and
// TLS material, and judges every file it names, itself included, by the
// trust rule (trust.go). Every problem is reported, each with what to fix.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	// Judged after the read (a FIFO still holds the agent in open, as it
	// always did), which is as safe: the rule refuses whoever could have
	// changed the file, and he cannot take that power back.
	tc := &trustCheck{t: fsutil.Self()}
	tc.check("config file", path, fsutil.ConfigFile)
	c, err := parse(b, tc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.fromFile = path
	return c, nil
}

// Parse is Load without the file read (and so without judging it).
func Parse(b []byte) (*Config, error) { return parse(b, &trustCheck{t: fsutil.Self()}) }

func parse(b []byte, tc *trustCheck) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true) // a typo in a security config must not pass silently
	if err := dec.Decode(&c); err != nil {
		return nil, errors.Join(fmt.Errorf("parsing YAML: %w", err), tc.err())
	}
	c.withDefaults(defaults())
	if err := c.resolve(tc); err != nil {
		return nil, err
	}
	return &c, nil
}

// resolve validates c (defaults applied) and loads what it names: keys,
// allow list, TLS material, each service's budget and actions. Every
// problem is reported; the trust rule's findings (tc, with the config
// file's own) come last, all of them, after every other error.
func (c *Config) resolve(tc *trustCheck) error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	c.checkLimits(bad)
	c.checkPaths(tc, bad)
	c.loadKeys(tc, bad)
	budget := DefaultBudget().over(c.Budget)
	if err := budget.check(); err != nil {
		bad("budget: %v", err)
	} else if err := resolveBackoff(budget.MinGap, c.Budget).check(budget.MinGap); err != nil {
		bad("budget: %v", err)
	}
	breakerOn := c.Breaker.check(bad)
	c.parseAllow(bad)
	c.loadTLS(tc, bad)
	c.resolveServices(budget, tc, bad)
	if breakerOn {
		c.breaker = c.breakerFor(c.restartable)
	}
	return errors.Join(append(errs, tc.err())...)
}

func (c *Config) checkLimits(bad func(string, ...any)) {
	if c.ReplayWindow < time.Second || c.ReplayWindow > MaxReplayWindow {
		bad("replay_window %s: must be between 1s and 10m", c.ReplayWindow)
	}
	l := c.Limits
	if l.MaxConns < 0 || l.MaxConnsPerSource < 0 || l.Rate < 0 || l.Burst < 0 || l.ReadTimeout < 0 || l.WriteTimeout < 0 || l.HandshakeTimeout < 0 {
		bad("limits: values must be positive")
	}
	// A request is one short line: a long deadline only lets a slow peer
	// (slowloris) hold a connection slot and stretch the replay window.
	for name, d := range map[string]time.Duration{"read_timeout": l.ReadTimeout, "write_timeout": l.WriteTimeout, "handshake_timeout": l.HandshakeTimeout} {
		if d > MaxIOTimeout {
			bad("limits: %s %s is above the maximum %s", name, d, MaxIOTimeout)
		}
	}
}

func (c *Config) checkPaths(tc *trustCheck, bad func(string, ...any)) {
	if c.StateDir == "" {
		bad("state_dir is required: the nonce cache lives there so that a replay after a restart is refused")
	} else if !filepath.IsAbs(c.StateDir) {
		bad("state_dir %q must be an absolute path", c.StateDir)
	} else if tc.noSymlink("state_dir", c.StateDir, "opens state_dir") {
		// Missing is fine: the agent creates it 0700 at start.
		tc.check("state_dir", c.StateDir, fsutil.PrivateDir|fsutil.Optional)
	}
	if c.AuditLog != "" && c.AuditLog != "-" && tc.noSymlink("audit_log", c.AuditLog, "appends to audit_log") {
		tc.check("audit_log", c.AuditLog, fsutil.DataFile|fsutil.Optional)
	}
}

// loadKeys checks the agent's name and loads its host keys: each must be a
// host key issued for this agent, never a fleet key.
func (c *Config) loadKeys(tc *trustCheck, bad func(string, ...any)) {
	agentOK := protocol.ValidName(c.Agent)
	switch {
	case c.Agent == "":
		bad("agent is required: this host's name as the monitoring side addresses it (handle_worker --agent; by default the Nagios host name in lower case)")
	case !agentOK:
		bad("agent %q: names are 1-64 of a-z 0-9 . _ - starting with a letter or digit", c.Agent)
	}
	name := c.Agent
	if !agentOK {
		name = "NAME"
	}
	if len(c.Keys) == 0 {
		bad("keys: list at least one host key file (on a monitoring node: handle_worker issue-key --key-file FLEET --agent %s | worker_listener import-key --out FILE)", name)
	}
	c.keys = map[string]protocol.Key{}
	for _, p := range c.Keys {
		// Missing: LoadKeyFile says so, as it always did.
		if !tc.check("key file", p, fsutil.SecretFile|fsutil.Optional) {
			continue
		}
		k, err := protocol.LoadKeyFile(p)
		if err != nil {
			bad("%v", err)
			continue
		}
		switch {
		case k.Kind == protocol.FleetKey:
			bad("key file %s is fleet key %q: a fleet key belongs on the monitoring nodes only: issue this host's key with handle_worker issue-key --agent %s", p, k.ID, name)
			continue
		case k.Kind != protocol.HostKey:
			bad("key file %s is not a host key", p)
			continue
		case agentOK && k.Agent != c.Agent:
			bad("key file %s is the host key of agent %q, but this is agent %q: issue this host's key with handle_worker issue-key --agent %s", p, k.Agent, c.Agent, c.Agent)
			continue
		}
		if _, dup := c.keys[k.ID]; dup {
			bad("key id %q appears in more than one key file", k.ID)
			continue
		}
		c.keys[k.ID] = k
	}
}

func (c *Config) parseAllow(bad func(string, ...any)) {
	if len(c.Allow) == 0 {
		bad("allow: list the source networks that may connect (e.g. [127.0.0.1/32, ::1/128]); an empty list would refuse everyone")
	}
	for _, s := range c.Allow {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			if a, err2 := netip.ParseAddr(s); err2 == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			} else {
				bad("allow %q: not a CIDR: %v", s, err)
				continue
			}
		}
		// Unmapped so ::ffff:10.0.0.0/104 and 10.0.0.0/8 mean the same.
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		c.allow = append(c.allow, p.Masked())
	}
}

func (c *Config) loadTLS(tc *trustCheck, bad func(string, ...any)) {
	t := c.TLS
	if t == nil {
		return
	}
	ok := true
	for _, f := range []struct {
		what, path string
		kind       fsutil.Kind
	}{{"tls cert", t.Cert, fsutil.ConfigFile}, {"tls key", t.Key, fsutil.SecretFile}, {"tls client_ca", t.ClientCA, fsutil.ConfigFile}} {
		if f.path != "" {
			ok = tc.check(f.what, f.path, f.kind|fsutil.Optional) && ok
		}
	}
	if ok {
		conf, err := serverTLS(t)
		if err != nil {
			bad("tls: %v", err)
		}
		c.tlsConf = conf
	}
}

// resolveServices gives each service its budget and back-off (its own
// fields over the top level's, budget), and checks its actions.
func (c *Config) resolveServices(budget Budget, tc *trustCheck, bad func(string, ...any)) {
	if len(c.Services) == 0 {
		bad("services: name at least one service with actions")
	}
	names := make([]string, 0, len(c.Services))
	for n := range c.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		svc := c.Services[n]
		if !protocol.ValidName(n) {
			bad("service %q: names are 1-64 of a-z 0-9 . _ - starting with a letter or digit", n)
			continue
		}
		if len(svc.Actions) == 0 {
			bad("service %s: no actions", n)
		}
		svc.budget = budget.over(svc.Budget)
		svc.backoff = resolveBackoff(svc.budget.MinGap, svc.Budget, c.Budget)
		if err := svc.budget.check(); err != nil {
			bad("service %s budget: %v", n, err)
		} else if own := svc.Budget; own.MinGap != nil || own.MaxGap != nil || own.ResetAfter != nil {
			// Otherwise the top level's, already judged.
			if err := svc.backoff.check(svc.budget.MinGap); err != nil {
				bad("service %s budget: %v", n, err)
			}
		}
		if _, ok := svc.Actions[string(protocol.VerbRestart)]; ok {
			c.restartable++
		}
		// In a fixed order: problems are reported (and joined) in it.
		verbs := make([]string, 0, len(svc.Actions))
		for vn := range svc.Actions {
			verbs = append(verbs, vn)
		}
		sort.Strings(verbs)
		for _, vn := range verbs {
			a := svc.Actions[vn]
			v := protocol.Verb(vn)
			if !v.Valid() || v == protocol.VerbPing {
				bad("service %s: unknown action %q (want start, stop, restart or status)", n, vn)
				continue
			}
			// What it runs is judged even when another field is wrong: all
			// of the repair at once.
			if len(a.Argv) > 0 && filepath.IsAbs(a.Argv[0]) && !slices.ContainsFunc(a.Argv, hasNUL) {
				tc.checkAction("service "+n+" action "+vn, a.Argv)
			}
			if err := a.resolve(); err != nil {
				bad("service %s action %s: %v", n, vn, err)
				continue
			}
			svc.Actions[vn] = a
		}
		c.Services[n] = svc
	}
}

// check validates the breaker block (defaults applied), and reports
// whether the breaker is on (to be sized once the services are known).
func (b BreakerConfig) check(bad func(string, ...any)) bool {
	ok := true
	check := func(cond bool, format string, a ...any) {
		if !cond {
			ok = false
			bad("breaker: "+format, a...)
		}
	}
	check(b.Window >= time.Second && b.Window <= maxBreakerTime, "window %s: must be between 1s and %s", b.Window, maxBreakerTime)
	check(b.Quiet >= time.Second && b.Quiet <= maxBreakerTime, "quiet %s: must be between 1s and %s", b.Quiet, maxBreakerTime)
	check(b.Fraction > 0 && b.Fraction <= 1, "fraction %g: must be above 0 and at most 1 (enabled: false turns the breaker off)", b.Fraction)
	check(b.MinServices >= 1, "min_services %d: must be at least 1", b.MinServices)
	check(b.MinCount >= 1, "min_count %d: must be at least 1", b.MinCount)
	return ok && (b.Enabled == nil || *b.Enabled)
}

// breakerFor is the breaker of a host with n restartable services: more
// than floor(fraction × n), and more than min_count, at once open it; nil
// below min_services.
func (c *Config) breakerFor(n int) *breaker.Config {
	b := c.Breaker
	if n < b.MinServices {
		return nil
	}
	return &breaker.Config{Window: b.Window, Quiet: b.Quiet, Threshold: max(b.MinCount, int(b.Fraction*float64(n)+1e-9))} // 1e-9: 0.29×100 is 28.999…
}

func hasNUL(s string) bool { return strings.IndexByte(s, 0) >= 0 }

// resolve validates the action (defaults applied) and builds its
// environment and credentials.
func (a *Action) resolve() error {
	if len(a.Argv) == 0 {
		return errors.New("argv is empty")
	}
	bin := a.Argv[0]
	if !filepath.IsAbs(bin) {
		return fmt.Errorf("argv[0] %q must be an absolute path (there is no PATH search)", bin)
	}
	for i, s := range a.Argv {
		if hasNUL(s) {
			return fmt.Errorf("argv[%d] holds a NUL byte", i)
		}
	}
	if a.Timeout < 0 || a.Timeout > maxActionTimeout {
		return fmt.Errorf("timeout %s: must be between 0 and %s", a.Timeout, maxActionTimeout)
	}
	if a.KillGrace < 0 || a.KillGrace > maxKillGrace {
		return fmt.Errorf("kill_grace %s: must be between 0 and 1m", a.KillGrace)
	}
	if fi, err := os.Stat(a.Dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("dir %q is not an existing directory", a.Dir)
	}
	// An explicit environment: nothing of the agent's own leaks in.
	a.env = nil
	keys := make([]string, 0, len(a.Env))
	for k := range a.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	hasPath := false
	for _, k := range keys {
		v := a.Env[k]
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("env %q: invalid name or value", k)
		}
		if k == "PATH" {
			hasPath = true
		}
		a.env = append(a.env, k+"="+v)
	}
	if !hasPath {
		a.env = append(a.env, "PATH="+DefaultPath)
	}
	if a.User != "" {
		cred, err := credentialFor(a.User)
		if err != nil {
			return err
		}
		a.cred = cred
	}
	return nil
}

func credentialFor(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", name, err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	if os.Geteuid() != 0 {
		if uint64(os.Geteuid()) == uid {
			return nil, nil // already that user
		}
		return nil, fmt.Errorf("user %q: the agent must run as root to switch users (it runs as uid %d)", name, os.Geteuid())
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if gids, err := u.GroupIds(); err == nil {
		for _, g := range gids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				cred.Groups = append(cred.Groups, uint32(n))
			}
		}
	}
	return cred, nil
}

func serverTLS(t *TLSConfig) (*tls.Config, error) {
	if t.Cert == "" || t.Key == "" {
		return nil, errors.New("cert and key are both required")
	}
	// fsutil's loaders: a FIFO named here must not hang the agent's start.
	// The key's mode is the trust rule's (resolve), with its other checks.
	cert, _, err := fsutil.LoadKeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}}
	if t.ClientCA != "" {
		pool, err := fsutil.LoadCertPool(t.ClientCA)
		if err != nil {
			return nil, err
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// Allowed reports whether a peer address is in the allow list, after
// unmapping an IPv4-mapped IPv6 address.
func (c *Config) Allowed(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range c.allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Key returns the live key with this id.
func (c *Config) Key(id string) (protocol.Key, bool) {
	k, ok := c.keys[id]
	return k, ok
}

// RestartBudget is the service's restart budget: its override over the
// top-level one, over the default.
func (s Service) RestartBudget() Budget { return s.budget }

// RestartBackoff is the service's back-off, resolved like its budget.
func (s Service) RestartBackoff() Backoff { return s.backoff }

// HostBreaker is the agent's breaker config for this host (nil: off), and
// the number of services it is sized by.
func (c *Config) HostBreaker() (*breaker.Config, int) { return c.breaker, c.restartable }

// maxHold bounds how long one action of the service can hold its lock:
// its timeout, the kill grace, the wait for the killed group and for the
// pipes, and a margin.
func (s Service) maxHold() time.Duration {
	var d time.Duration
	for _, a := range s.Actions {
		d = max(d, a.Timeout+a.KillGrace)
	}
	return d + groupKillWait + pipeWait + 5*time.Second
}

// StatusServices lists, sorted, the services with a status action: what
// a ping offers check_selfheal to ask about.
func (c *Config) StatusServices() []string {
	var out []string
	for n, svc := range c.Services {
		if _, ok := svc.Actions[string(protocol.VerbStatus)]; ok {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// KeyIDs lists the loaded key ids (for logs; never the secrets).
func (c *Config) KeyIDs() []string {
	ids := make([]string, 0, len(c.keys))
	for id := range c.keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
