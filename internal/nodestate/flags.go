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
// breaker_quiet_help.
type JudgeFlags struct {
	Ignore           []string      `placeholder:"RULE" help:"${ignore_help}"`
	BreakerThreshold int           `default:"10" placeholder:"N" help:"${breaker_threshold_help}"`
	BreakerWindow    time.Duration `default:"5m" help:"${breaker_window_help}"`
	BreakerQuiet     time.Duration `default:"2m" help:"${breaker_quiet_help}"`
}

// Ignored reads --ignore.
func (f JudgeFlags) Ignored() (map[Rule]bool, error) { return ParseRules(f.Ignore) }

// Breaker is the node breaker's configuration, not yet validated.
func (f JudgeFlags) Breaker() breaker.Config {
	return breaker.Config{Window: f.BreakerWindow, Threshold: f.BreakerThreshold, Quiet: f.BreakerQuiet}
}
