package rig

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ListenerConfig is a worker_listener config, written as YAML by Write:
// the one writer every user of the rig shares. Durations are strings in
// the listener's own syntax ("10s"); an empty field is left out, so that
// the listener's default applies, except Keys and Allow, which are always
// written (an empty list is what a test of the config check wants to see
// refused).
type ListenerConfig struct {
	Listen string
	// Agent is the agent's identity; Prepare sets it from the kit.
	Agent         string
	Keys          []string
	Allow         []string
	AuditLog      string
	StateDir      string
	ReplayWindow  string
	ShutdownGrace string
	Limits        Limits
	TLS           *TLS
	// Budget is the default restart budget of every service (nil: the
	// listener's default).
	Budget *Budget
	// Breaker is the agent's mass-failure breaker (nil: its default).
	Breaker  *Breaker
	Services []Service
	// Extra is raw YAML appended at the top level: a knob the rig does
	// not model, or a deliberate mistake for a test of the config check.
	Extra string
	// Comment heads the file, each line as a YAML comment.
	Comment string
}

// Limits are the listener's limits; zero fields are left out.
type Limits struct {
	Rate              float64 `yaml:"rate,omitempty"`
	Burst             int     `yaml:"burst,omitempty"`
	MaxConns          int     `yaml:"max_conns,omitempty"`
	MaxConnsPerSource int     `yaml:"max_conns_per_source,omitempty"`
	ReadTimeout       string  `yaml:"read_timeout,omitempty"`
}

// TLS turns on the listener's TLS (mTLS with ClientCA).
type TLS struct {
	Cert     string `yaml:"cert"`
	Key      string `yaml:"key"`
	ClientCA string `yaml:"client_ca,omitempty"`
}

// Service is one worker the listener may act on, with its actions by verb
// (restart, start, stop, status).
type Service struct {
	Name    string
	Actions map[string]Action
	Budget  *Budget // nil: the config's default
}

// Budget is a restart budget: at most Max restarts per Window, at least
// MinGap apart. Empty fields are left out.
type Budget struct {
	Max    int    `yaml:"max,omitempty"`
	Window string `yaml:"window,omitempty"`
	MinGap string `yaml:"min_gap,omitempty"`
	// MaxGap caps the back-off; equal to MinGap it is off.
	MaxGap string `yaml:"max_gap,omitempty"`
}

// Breaker is the agent's breaker block; empty fields are left out.
type Breaker struct {
	Enabled     *bool   `yaml:"enabled,omitempty"`
	Window      string  `yaml:"window,omitempty"`
	Fraction    float64 `yaml:"fraction,omitempty"`
	MinServices int     `yaml:"min_services,omitempty"`
	MinCount    int     `yaml:"min_count,omitempty"`
	Quiet       string  `yaml:"quiet,omitempty"`
}

// Action is a fixed argv, run without a shell.
type Action struct {
	Argv      []string          `yaml:"argv"`
	Timeout   string            `yaml:"timeout,omitempty"`
	KillGrace string            `yaml:"kill_grace,omitempty"`
	Env       map[string]string `yaml:"env,omitempty"`
}

// file is the YAML document, in the order the sample config uses.
type file struct {
	Listen        string     `yaml:"listen,omitempty"`
	Agent         string     `yaml:"agent,omitempty"`
	Keys          []string   `yaml:"keys"`
	Allow         []string   `yaml:"allow"`
	AuditLog      string     `yaml:"audit_log,omitempty"`
	StateDir      string     `yaml:"state_dir,omitempty"`
	ReplayWindow  string     `yaml:"replay_window,omitempty"`
	ShutdownGrace string     `yaml:"shutdown_grace,omitempty"`
	TLS           *TLS       `yaml:"tls,omitempty"`
	Limits        Limits     `yaml:"limits,omitempty"`
	Budget        *Budget    `yaml:"budget,omitempty"`
	Breaker       *Breaker   `yaml:"breaker,omitempty"`
	Services      *yaml.Node `yaml:"services"`
}

// YAML renders the config. The encoder does the quoting ("::1/128" and
// "-" must be quoted in places), so nothing is escaped by hand.
func (c ListenerConfig) YAML() ([]byte, error) {
	// Services in the caller's order: a map would sort them.
	services := &yaml.Node{Kind: yaml.MappingNode}
	for _, s := range c.Services {
		var v yaml.Node
		if err := v.Encode(struct {
			Actions map[string]Action `yaml:"actions"`
			Budget  *Budget           `yaml:"budget,omitempty"`
		}{s.Actions, s.Budget}); err != nil {
			return nil, fmt.Errorf("service %s: %w", s.Name, err)
		}
		services.Content = append(services.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: s.Name}, &v)
	}
	var b bytes.Buffer
	for _, l := range strings.Split(strings.TrimSpace(c.Comment), "\n") {
		if l != "" {
			fmt.Fprintf(&b, "# %s\n", l)
		}
	}
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	err := enc.Encode(file{
		Listen: c.Listen, Agent: c.Agent, Keys: c.Keys, Allow: c.Allow, AuditLog: c.AuditLog, StateDir: c.StateDir,
		ReplayWindow: c.ReplayWindow, ShutdownGrace: c.ShutdownGrace, TLS: c.TLS, Limits: c.Limits,
		Budget: c.Budget, Breaker: c.Breaker, Services: services,
	})
	if err == nil {
		err = enc.Close()
	}
	if err != nil {
		return nil, err
	}
	if c.Extra != "" {
		b.WriteString(strings.TrimSuffix(c.Extra, "\n") + "\n")
	}
	return b.Bytes(), nil
}

// Write writes the config to path, mode 0600 (it names key files).
func (c ListenerConfig) Write(path string) error {
	b, err := c.YAML()
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}
