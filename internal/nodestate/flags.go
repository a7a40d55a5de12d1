package nodestate

import (
	"time"

	"github.com/selfheal/selfheal/internal/breaker"
)

// JudgeFlags are the hold rules' switches and the node breaker's settings,
// declared once for handle_worker (event, reevaluate, status) and
// check_selfheal's node mode, which must judge the state directory as the
// handler does. Each binary words the help in its grammar's kong.Vars:
// ignore_help, breaker_threshold_help, breaker_window_help,
// breaker_quiet_help, breaker_zone_window_help, breaker_verify_help,
// breaker_event_command_help.
type JudgeFlags struct {
	Ignore              []string      `placeholder:"RULE" help:"${ignore_help}"`
	BreakerThreshold    int           `default:"10" placeholder:"N" help:"${breaker_threshold_help}"`
	BreakerWindow       time.Duration `default:"5m" help:"${breaker_window_help}"`
	BreakerQuiet        time.Duration `default:"2m" help:"${breaker_quiet_help}"`
	BreakerZoneWindow   time.Duration `default:"1h" help:"${breaker_zone_window_help}"`
	BreakerVerify       time.Duration `default:"3m" help:"${breaker_verify_help}"`
	BreakerEventCommand string        `default:"selfheal-handle-worker" placeholder:"NAME" help:"${breaker_event_command_help}"`
}

// Ignored reads --ignore.
func (f JudgeFlags) Ignored() (map[Rule]bool, error) { return ParseRules(f.Ignore) }

// Zone is the zone rule's configuration, not yet validated.
func (f JudgeFlags) Zone() breaker.ZoneConfig {
	return breaker.ZoneConfig{Allowance: f.BreakerThreshold, Window: f.BreakerZoneWindow, Quiet: f.BreakerQuiet, Verify: f.BreakerVerify}
}

// Breaker is the node breaker's configuration, not yet validated.
func (f JudgeFlags) Breaker() breaker.Config {
	return breaker.Config{Window: f.BreakerWindow, Threshold: f.BreakerThreshold, Quiet: f.BreakerQuiet}
}
