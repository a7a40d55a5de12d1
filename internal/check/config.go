// Package check is check_worker's core: it fetches a worker's status
// document, judges it against the configured thresholds and renders the
// Nagios plugin output. Run never exits, never writes to stdout and takes
// its clock, HTTP transport and logger from Deps, so tests drive it with
// real httptest servers and a fixed clock.
package check

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/status"
	"github.com/selfheal/selfheal/internal/thresholds"
)

// Config is one check, fully parsed. Build it with the Parse* helpers.
type Config struct {
	URL          string        // http:// or https:// URL of the status endpoint
	UnixSocket   string        // when set, dial this socket; URL's path and Host header still apply
	Timeout      time.Duration // whole check, connect to last body byte
	TimeoutState nagios.State  // state for a worker that does not answer in time
	Response     thresholds.Pair
	Metrics      []MetricRule
	MaxAgeWarn   time.Duration // 0 = unset
	MaxAgeCrit   time.Duration
	MinUptime    time.Duration        // 0 = unset
	Plain        bool                 // not JSON: 2xx is OK, the first body line is the message
	Header       textproto.MIMEHeader // --header values (net/http's Header type, without net/http)
	MaxBody      int64                // 0 = status.MaxBody
	UserAgent    string
}

// MetricRule puts thresholds on one worker metric.
type MetricRule struct {
	Name string
	thresholds.Pair
}

// Deps are the effects Run uses. Zero values get sane defaults.
type Deps struct {
	Now    func() time.Time // nil = time.Now
	Dial   Dialer           // nil = net.Dialer
	TLS    *tls.Config      // nil = system roots, TLS 1.2+
	Logger *Logger          // nil = discard
}

// DefaultTimeout is check_worker's -t default: well under Nagios'
// service_check_timeout (60 s), so the plugin always answers first.
const DefaultTimeout = 10 * time.Second

// ParseTimeout reads -t SECONDS[:STATE]. STATE is a state word or 0-3;
// the default is CRITICAL: a worker that does not answer is the very case
// that needs healing (docs/check_worker.md).
func ParseTimeout(s string) (time.Duration, nagios.State, error) {
	secs, st, hasState := strings.Cut(strings.TrimSpace(s), ":")
	state := nagios.Critical
	if hasState {
		var ok bool
		if state, ok = parseStateArg(st); !ok {
			return 0, 0, fmt.Errorf("timeout state %q: want ok, warning, critical, unknown or 0-3", st)
		}
	}
	d, err := parseSeconds(secs)
	if err != nil {
		return 0, 0, fmt.Errorf("timeout %q: %v", secs, err)
	}
	if d <= 0 || d > time.Hour {
		return 0, 0, fmt.Errorf("timeout %q: must be above 0 and at most 1h", secs)
	}
	return d, state, nil
}

func parseStateArg(s string) (nagios.State, bool) {
	if n, err := strconv.Atoi(s); err == nil {
		return nagios.State(n), n >= 0 && n <= 3
	}
	return status.ParseState(s)
}

// parseSeconds accepts plain seconds ("10", "0.5") or a Go duration ("2m").
func parseSeconds(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f < 0 || f > 1e9 || f != f {
			return 0, errors.New("out of range")
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want seconds or a duration like 90s or 5m")
	}
	if d < 0 {
		return 0, errors.New("negative duration")
	}
	return d, nil
}

// ParseMaxAge reads --max-age WARN,CRIT; either side may be empty.
func ParseMaxAge(s string) (warn, crit time.Duration, err error) {
	w, c, ok := strings.Cut(s, ",")
	if !ok {
		return 0, 0, fmt.Errorf("max-age %q: want WARN,CRIT (e.g. 60,300 or ,5m)", s)
	}
	if strings.TrimSpace(w) != "" {
		if warn, err = parseSeconds(w); err != nil {
			return 0, 0, fmt.Errorf("max-age warning %q: %v", w, err)
		}
	}
	if strings.TrimSpace(c) != "" {
		if crit, err = parseSeconds(c); err != nil {
			return 0, 0, fmt.Errorf("max-age critical %q: %v", c, err)
		}
	}
	if warn == 0 && crit == 0 {
		return 0, 0, fmt.Errorf("max-age %q: give a warning or a critical age above 0", s)
	}
	if warn > 0 && crit > 0 && warn > crit {
		return 0, 0, fmt.Errorf("max-age %q: the warning age must not be above the critical age", s)
	}
	return warn, crit, nil
}

// ParseMinUptime reads --min-uptime (seconds or a Go duration).
func ParseMinUptime(s string) (time.Duration, error) {
	d, err := parseSeconds(s)
	if err != nil {
		return 0, fmt.Errorf("min-uptime %q: %v", s, err)
	}
	return d, nil
}

// ParseMetricRule reads --metric 'NAME,warn=RANGE,crit=RANGE' (w= and c=
// are accepted too; at least one range is required).
func ParseMetricRule(s string) (MetricRule, error) {
	parts := strings.Split(s, ",")
	r := MetricRule{Name: strings.TrimSpace(parts[0])}
	if r.Name == "" {
		return r, fmt.Errorf("metric %q: missing name (want NAME,warn=RANGE,crit=RANGE)", s)
	}
	var warn, crit string
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(p, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		switch {
		case !ok:
			return r, fmt.Errorf("metric %q: %q is not KEY=RANGE", s, p)
		case k == "warn" || k == "w" || k == "warning":
			warn = v
		case k == "crit" || k == "c" || k == "critical":
			crit = v
		default:
			return r, fmt.Errorf("metric %q: unknown key %q (want warn or crit)", s, k)
		}
		if strings.TrimSpace(v) == "" {
			return r, fmt.Errorf("metric %q: empty range for %s", s, k)
		}
	}
	var err error
	if r.Pair, err = thresholds.ParsePair(warn, crit); err != nil {
		return r, fmt.Errorf("metric %q: %v", s, err)
	}
	if !r.Set() {
		return r, fmt.Errorf("metric %q: give warn=RANGE and/or crit=RANGE", s)
	}
	return r, nil
}

// ParseHeader reads --header 'Name: value'. CR and LF are refused so a
// header can never smuggle a second one.
func ParseHeader(h textproto.MIMEHeader, s string) error {
	k, v, ok := strings.Cut(s, ":")
	k, v = strings.TrimSpace(k), strings.TrimSpace(v)
	if !ok || k == "" {
		return fmt.Errorf("header %q: want 'Name: value'", clipArg(s))
	}
	for _, c := range k {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", c) {
			return fmt.Errorf("header name %q: invalid character", clipArg(k))
		}
	}
	if strings.ContainsAny(v, "\r\n\x00") {
		return fmt.Errorf("header %q: value contains a line break", k)
	}
	h.Add(k, v)
	return nil
}

// clipArg keeps a bad argument in an error short; it may hold a token.
func clipArg(s string) string {
	if len(s) > 24 {
		return s[:24] + "..."
	}
	return s
}
