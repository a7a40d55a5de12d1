package breaker

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"time"

	"github.com/selfheal/selfheal/internal/fsutil"
)

// The zone rule is the monitoring side's mass-failure rule: it decides
// from what the whole zone's engine shows now, not from a count this one
// node kept. Every HA endpoint sees the same replicated state (each
// service's state and last_state_change), so every endpoint ranks the
// failing services the same way, and "the first Allowance of them" is one
// set for the whole zone, with no coordination service.
//
//	failing   the zone's services (of this handler) that are CRITICAL
//	          now (SOFT or HARD), not in downtime, not acknowledged, on an
//	          UP host, that turned CRITICAL within Window
//	rank      a service's place among them, oldest failure first
//	          (name breaks ties), leaving out the ones this node saw fail
//	          after their restart
//	normal    while at most Allowance services fail in the zone, each may
//	          be restarted: independent faults (healed seconds after they
//	          turn HARD) never reach it, a storm reaches it while its first
//	          services are still SOFT
//	held      more failing opens the rule: a storm. Restarts
//	          then go one trial at a time, once no new failure arrived in
//	          the zone for Quiet; each trial seen healed widens the window
//	          by one (slow start: 1, 2, 4, ... per round, up to Allowance);
//	          a trial still failing after Verify shrinks it to 1 and backs
//	          the next trial off (Quiet doubling, at most MaxBackoff): "a
//	          human must look". The rule closes when everything failing
//	          fits in a full window.
//
// A restart stays "unverified" until the service is seen out of the
// failing set. Normal mode lets restarts through only while the whole
// zone's set is within Allowance: at most Allowance unverified restarts
// in the zone, whichever endpoint ran them. A held storm's trials are
// ranked among the failures this node holds (each endpoint's reevaluate
// asks for its own), within the first Window ranks, where an unverified
// restart stays (it is older than any later failure): at most Allowance
// per node, Allowance × endpoints in the zone.

// Zone defaults. docs/event-handler.md, "The zone's mass-failure rule",
// has the reasoning and the numbers.
const (
	DefaultAllowance = 10
	// DefaultZoneWindow: a failure older than an hour that is still
	// CRITICAL is a long-standing problem (a human's), not part of a storm
	// now; long enough that a held storm's services keep their ranks while
	// slow start works through them.
	DefaultZoneWindow = time.Hour
	DefaultVerify     = 3 * time.Minute
	DefaultMaxBackoff = 30 * time.Minute
	// MaxZoneFailing bounds the failing services ranked (the rest, newer,
	// rank beyond any allowance anyway).
	MaxZoneFailing = 100000
	maxTracked     = 256 // admissions and failed trials kept
	maxSeen        = 4096
	// SeenFor: a service that asked here this recently counts as failing
	// even when the engine's view does not show it yet (Nagios writes
	// status.dat every status_update_interval, 10 s by default).
	SeenFor = 30 * time.Second
)

// ZoneConfig tunes the zone rule. Zero fields take the defaults.
type ZoneConfig struct {
	Allowance  int           // at most this many unhealed restarts in the zone
	Window     time.Duration // failures whose hard change is older are not ranked
	Quiet      time.Duration // no new failure for this long before a trial (default 2m)
	Verify     time.Duration // a restart not seen healed within this failed
	MaxBackoff time.Duration // the longest wait between failed trials
}

func (c ZoneConfig) withDefaults() ZoneConfig {
	if c.Allowance == 0 {
		c.Allowance = DefaultAllowance
	}
	if c.Window == 0 {
		c.Window = DefaultZoneWindow
	}
	if c.Quiet == 0 {
		c.Quiet = DefaultQuiet
	}
	if c.Verify == 0 {
		c.Verify = DefaultVerify
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	return c
}

// Validate reports a config ZoneStep cannot use (after the defaults).
func (c ZoneConfig) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Allowance < 1:
		return fmt.Errorf("zone allowance %d: must be at least 1", c.Allowance)
	case c.Window <= 0 || c.Quiet <= 0 || c.Verify <= 0 || c.MaxBackoff <= 0:
		return fmt.Errorf("zone rule durations must be positive")
	}
	return nil
}

// Failing is one of the zone's failing services, as the engine shows it.
type Failing struct {
	Key   string    // host!service
	Fault string    // its fault id (the handler's --fault)
	Since time.Time // when it turned CRITICAL
}

// Admission is a restart this node let through (or a trial that failed).
type Admission struct {
	Key   string    `json:"key"`
	Fault string    `json:"fault"`
	At    time.Time `json:"at"`
}

// ZoneSnapshot is this node's memory of the zone rule: only what it let
// through and what it saw fail; the failing set is read from the engine
// each time.
type ZoneSnapshot struct {
	Held      bool        `json:"held,omitempty"`
	Since     time.Time   `json:"since,omitzero"` // when the storm was first held
	Window    int         `json:"window,omitempty"`
	Seen      []Admission `json:"seen,omitempty"`      // who asked here within SeenFor
	HeldHere  []Admission `json:"held_here,omitempty"` // what this node holds (its reevaluate asks again)
	Admitted  []Admission `json:"admitted,omitempty"`  // unverified restarts
	Failed    []Admission `json:"failed,omitempty"`    // restarts seen still failing after Verify
	Fails     int         `json:"fails,omitempty"`     // trials failed in a row
	NextTrial time.Time   `json:"next_trial,omitzero"`
	// QuietAt: when the held storm's first trial went, the zone quiet.
	// The engine's failures that began by then are this storm's.
	QuietAt  time.Time   `json:"quiet_at,omitzero"`
	LastFail string      `json:"last_fail,omitempty"` // the key of the last failed trial
	Agents   []AgentHold `json:"agents,omitempty"`    // agents whose own breaker holds their host
}

// AgentHold is an agent whose own breaker holds its host: this node's
// reevaluate asks it for Trial, the service it held (its next ask is the
// breaker's trial), and for none of its host's other holds before Until:
// each would be a new failure to that breaker, which keeps it open. The
// breaker may close Quiet after its trial ran.
type AgentHold struct {
	Agent string        `json:"agent"`
	Until time.Time     `json:"until"`
	Quiet time.Duration `json:"quiet"`
	Trial string        `json:"trial,omitempty"`
}

// ZoneVerdict is the zone rule's answer to one request.
type ZoneVerdict struct {
	Allow    bool
	New      bool // allowed and added to the unverified restarts (not asked again)
	Held     bool // the rule is holding a storm (after this request)
	Trial    bool // allowed as a trial while held
	Rank     int
	Failing  int            // the zone's failing services (this one included)
	Hosts    map[string]int // failing services per host
	Window   int            // restarts allowed at once now
	Fails    int
	LastFail string
	Since    time.Time
	// RetryAfter: when a held request may be asked again.
	RetryAfter time.Duration
}

// ZoneStep decides for key (with fault) at now, given the zone's failing
// services read at now; s is not modified.
func ZoneStep(s ZoneSnapshot, now time.Time, key, fault string, failing []Failing, cfg ZoneConfig) (ZoneSnapshot, ZoneVerdict) {
	return ZoneStepView(s, now, now, key, fault, failing, cfg)
}

// ZoneStepView is ZoneStep with the failing services as the engine showed
// them at viewAt (a view shared for a moment, a status.dat written every
// few seconds). A restart or hold this node recorded at or after viewAt is
// not in that view yet: it still counts, rather than look healed.
func ZoneStepView(s ZoneSnapshot, now, viewAt time.Time, key, fault string, failing []Failing, cfg ZoneConfig) (ZoneSnapshot, ZoneVerdict) {
	cfg = cfg.withDefaults()
	if viewAt.IsZero() || viewAt.After(now) {
		viewAt = now
	}
	s.Admitted, s.Failed = slices.Clone(s.Admitted), slices.Clone(s.Failed)
	cur := map[string]Failing{}
	for _, f := range failing {
		if !f.Since.Before(now.Add(-cfg.Window)) {
			cur[f.Key] = f
		}
	}
	engine := maps.Clone(cur)
	still := func(a Admission) bool {
		if !viewAt.After(a.At) {
			return true // the view predates it
		}
		f, ok := engine[a.Key]
		return ok && (a.Fault == "-" || f.Fault == a.Fault)
	}
	// What the engine shows of this node's restarts: healed ones widen a
	// held window; ones still failing after Verify shrink it.
	var admitted, healed []Admission
	failedNow := false
	for _, a := range s.Admitted {
		switch {
		case !still(a):
			if s.Held {
				s.Window = min(s.Window+1, cfg.Allowance)
				s.Fails = 0
			}
			healed = append(healed, a)
		case viewAt.Sub(a.At) >= cfg.Verify:
			// Judged on the view's time: one read seconds ago (a storm's
			// shared view) shows what the engine knew then, and a trial
			// that healed since would fail on a stale view.
			s.Failed = append(s.Failed, a)
			if s.Held {
				s.Window, s.LastFail, failedNow = 1, a.Key, true
			}
		default:
			admitted = append(admitted, a)
		}
	}
	s.Admitted = admitted
	// A held storm that trials widened is over once none of its own
	// failures (the engine's, begun by its first trial) still fail; more
	// new ones than the allowance are a new storm, whose slow start
	// begins again. A few new ones (a straggler, the fleet's background
	// failures) only join the ranking. Without this, a rule whose last
	// holds healed kept its wide window while nothing asked, and the next
	// storm went through it ten at a time (the scale lab, run 11: 46
	// restarts in its first 110 s).
	if s.Held && !s.QuietAt.IsZero() {
		old, fresh := 0, 0
		for _, f := range engine {
			if f.Since.After(s.QuietAt) {
				fresh++
			} else {
				old++
			}
		}
		switch {
		case old == 0:
			s = s.over()
		case fresh > cfg.Allowance:
			s.Window, s.QuietAt = 1, time.Time{}
		}
	}
	// What asked here lately is failing even where the engine's view lags
	// (status.dat is written every few seconds; HA replication takes
	// milliseconds): a storm's concurrent handler runs all count. Not a
	// restart just seen healed: it would count as the zone's newest
	// failure and hold the next trial for Quiet.
	s.Seen = slices.DeleteFunc(slices.Clone(s.Seen), func(a Admission) bool {
		return now.Sub(a.At) >= SeenFor || a.At.After(now) ||
			slices.ContainsFunc(healed, func(h Admission) bool { return h.Key == a.Key && h.Fault == a.Fault })
	})
	for _, a := range s.Seen {
		if _, ok := cur[a.Key]; !ok {
			cur[a.Key] = Failing{Key: a.Key, Fault: a.Fault, Since: a.At}
		}
	}
	if _, ok := cur[key]; !ok {
		// Its own failure, not replicated or read yet: it is the newest.
		cur[key] = Failing{Key: key, Fault: fault, Since: now}
	}
	if !slices.ContainsFunc(s.Seen, func(a Admission) bool { return a.Key == key }) {
		s.Seen = append(s.Seen, Admission{Key: key, Fault: fault, At: now})
		s.Seen = s.Seen[max(0, len(s.Seen)-maxSeen):]
	}
	if failedNow {
		// One step of back-off per look, however many failed in it.
		s.Fails++
		s.NextTrial = now.Add(min(cfg.Quiet<<min(s.Fails-1, 20), cfg.MaxBackoff))
	}
	s.Failed = slices.DeleteFunc(s.Failed, func(a Admission) bool { return !still(a) })
	s.HeldHere = slices.DeleteFunc(slices.Clone(s.HeldHere), func(a Admission) bool { return !still(a) && a.Key != key })
	s.Failed = s.Failed[max(0, len(s.Failed)-maxTracked):]

	// Sets, not searches: a storm's node holds a thousand services, and
	// each of its handler runs ranks them all.
	failed, mine := keySet(s.Failed), keySet(s.HeldHere, s.Admitted)
	mine[key] = true
	ranked := make([]Failing, 0, len(cur))
	newest := time.Time{}
	for k, f := range cur {
		if k != key && failed[k] {
			continue
		}
		ranked = append(ranked, f)
		if f.Since.After(newest) {
			newest = f.Since
		}
	}
	// Whole seconds, as the handler's records and status.dat have them:
	// reevaluate asks its holds in this order, and a rank decided on
	// Icinga's fractions would differ from it inside a second (a look
	// that stops at the first service held again then never reached the
	// one ranked first: the scale lab's recovery stalled so).
	slices.SortFunc(ranked, func(a, b Failing) int {
		return cmp.Or(cmp.Compare(a.Since.Unix(), b.Since.Unix()), cmp.Compare(a.Key, b.Key))
	})
	ranked = ranked[:min(len(ranked), MaxZoneFailing)]
	v := ZoneVerdict{Failing: len(cur), Hosts: map[string]int{}}
	for k := range cur {
		host, _, _ := cut(k)
		v.Hosts[host]++
	}
	// A held storm's trials go to the oldest of the failures this node
	// holds or restarted: its reevaluate asks for those, and only those
	// (another endpoint's holds are its own to ask for; ranking them here
	// would stall both).
	pos := 0
	for _, f := range ranked {
		if s.Held && !mine[f.Key] {
			continue
		}
		pos++
		if f.Key == key {
			v.Rank = pos
		}
	}
	if v.Rank == 0 { // beyond MaxZoneFailing
		v.Rank = len(ranked) + 1
	}

	again := slices.ContainsFunc(s.Admitted, func(a Admission) bool { return a.Key == key && a.Fault == fault })
	failedBefore := slices.ContainsFunc(s.Failed, func(a Admission) bool { return a.Key == key && a.Fault == fault })
	switch {
	case again, failedBefore && !s.Held:
		// Asked again for a restart already let through: the agent
		// answers from its record (one restart per fault).
		v.Allow = true
	case failedBefore:
		// Its restart did not heal it, and a storm is held: it waits.
	case !s.Held && len(ranked) <= cfg.Allowance:
		// All that fail now, not only the ones before it: a storm whose
		// first restarts heal quickly is still a storm.
		v.Allow = true
	case !s.Held:
		s.Held, s.Since, s.Window, s.Fails, s.LastFail = true, now, 1, 0, ""
		s.NextTrial = time.Time{}
	default:
		quiet := Later(s.NextTrial, newestPlus(newest, cfg.Quiet, s.Window))
		if v.Rank <= s.Window && len(s.Admitted) < s.Window && !now.Before(quiet) {
			v.Allow, v.Trial = true, true
			if s.QuietAt.IsZero() {
				s.QuietAt = now
			}
		}
	}
	if !v.Allow && !slices.ContainsFunc(s.HeldHere, func(a Admission) bool { return a.Key == key && a.Fault == fault }) {
		s.HeldHere = slices.DeleteFunc(s.HeldHere, func(a Admission) bool { return a.Key == key })
		s.HeldHere = append(s.HeldHere, Admission{Key: key, Fault: fault, At: now})
		s.HeldHere = s.HeldHere[max(0, len(s.HeldHere)-maxSeen):]
	}
	if v.Allow {
		s.HeldHere = slices.DeleteFunc(s.HeldHere, func(a Admission) bool { return a.Key == key })
	}
	if v.Allow && !again && !failedBefore {
		v.New = true
		s.Admitted = append(s.Admitted, Admission{Key: key, Fault: fault, At: now})
		s.Admitted = s.Admitted[max(0, len(s.Admitted)-maxTracked):]
	}
	if s.Held && s.Window >= cfg.Allowance && len(ranked) <= s.Window {
		// Everything failing fits in a full window: the storm is over.
		s = s.over()
	}
	v.Held, v.Window, v.Fails, v.LastFail, v.Since = s.Held, cfg.Allowance, s.Fails, s.LastFail, s.Since
	if s.Held {
		v.Window = s.Window
		if !v.Allow {
			v.RetryAfter = max(0, Later(s.NextTrial, newestPlus(newest, cfg.Quiet, s.Window)).Sub(now))
		}
	}
	return s, v
}

// keySet is the keys of the admissions in lists.
func keySet(lists ...[]Admission) map[string]bool {
	n := 0
	for _, l := range lists {
		n += len(l)
	}
	m := make(map[string]bool, n+1)
	for _, l := range lists {
		for _, a := range l {
			m[a.Key] = true
		}
	}
	return m
}

// newestPlus is when a trial may run after the newest failure: the first
// trial of a storm waits Quiet after it; a window already widened by
// healed trials does not wait.
func newestPlus(newest time.Time, quiet time.Duration, window int) time.Time {
	if window > 1 {
		return time.Time{}
	}
	return newest.Add(quiet)
}

func cut(key string) (string, string, bool) {
	for i := 0; i < len(key); i++ {
		if key[i] == '!' {
			return key[:i], key[i+1:], true
		}
	}
	return key, "", false
}

// ZoneStore keeps this node's ZoneSnapshot in Name+".json" of an opened,
// trusted directory, under an flock on Name+".lock" (the handler's
// concurrent runs share it), written atomically.
type ZoneStore struct {
	Dir    *fsutil.Dir
	Name   string // e.g. "zone"
	Config ZoneConfig
	Poll   time.Duration
}

type zoneFile struct {
	Version int `json:"version"`
	ZoneSnapshot
}

// Admit runs ZoneStep on the stored state and keeps the result; dry only
// answers.
// viewAt is when the engine showed failing (zero: now).
func (z ZoneStore) Admit(ctx context.Context, now, viewAt time.Time, key, fault string, failing []Failing, dry bool) (ZoneVerdict, error) {
	if err := z.Config.Validate(); err != nil {
		return ZoneVerdict{}, err
	}
	unlock, err := z.Dir.Lock(ctx, z.Name+".lock", 0o600, z.Poll)
	if err != nil {
		return ZoneVerdict{}, fmt.Errorf("zone rule lock: %w", err)
	}
	defer unlock()
	old, raw, err := z.read()
	if err != nil {
		return ZoneVerdict{}, err
	}
	st, v := ZoneStepView(old, now, viewAt, key, fault, failing, z.Config)
	if dry {
		return v, nil
	}
	b, err := json.Marshal(zoneFile{Version: stateVersion, ZoneSnapshot: st})
	if err != nil {
		return ZoneVerdict{}, err
	}
	b = append(b, '\n')
	if !bytes.Equal(b, raw) {
		if err := z.Dir.WriteLocked(z.Name+".json", b, 0o600, false); err != nil {
			return ZoneVerdict{}, fmt.Errorf("zone rule state: %w", err)
		}
	}
	return v, nil
}

// Release forgets the restart of key for fault that Admit let through:
// it did not run (the agent held it back, or was not reached), so it is
// neither in flight nor, after Verify, a trial that failed.
func (z ZoneStore) Release(ctx context.Context, key, fault string) error {
	return z.update(ctx, func(s *ZoneSnapshot) {
		s.Admitted = slices.DeleteFunc(s.Admitted, func(a Admission) bool { return a.Key == key && a.Fault == fault })
	})
}

// HoldAgent keeps h (replacing what was kept of its agent; a time past
// forgets it) and drops keys, that host's other holds, from what this
// node holds: its reevaluate does not ask for them now, and a hold that
// kept its rank would fill the window the other hosts' trials need (the
// scale lab's recovery crawled so). Asked again, a key ranks again.
func (z ZoneStore) HoldAgent(ctx context.Context, now time.Time, h AgentHold, keys ...string) error {
	return z.update(ctx, func(s *ZoneSnapshot) {
		s.HeldHere = slices.DeleteFunc(s.HeldHere, func(a Admission) bool { return slices.Contains(keys, a.Key) })
		s.Agents = slices.DeleteFunc(s.Agents, func(a AgentHold) bool { return a.Agent == h.Agent || !a.Until.After(now) })
		if h.Until.After(now) {
			s.Agents = append(s.Agents, h)
			s.Agents = s.Agents[max(0, len(s.Agents)-maxTracked):]
		}
	})
}

// AgentsHeld are the agents held at now, by name.
func (s ZoneSnapshot) AgentsHeld(now time.Time) map[string]AgentHold {
	m := map[string]AgentHold{}
	for _, a := range s.Agents {
		if a.Until.After(now) {
			m[a.Agent] = a
		}
	}
	return m
}

// update changes the stored state under the lock, written only if changed.
func (z ZoneStore) update(ctx context.Context, change func(*ZoneSnapshot)) error {
	unlock, err := z.Dir.Lock(ctx, z.Name+".lock", 0o600, z.Poll)
	if err != nil {
		return fmt.Errorf("zone rule lock: %w", err)
	}
	defer unlock()
	s, _, err := z.read()
	if err != nil {
		return err
	}
	was, _ := json.Marshal(s)
	change(&s)
	if now, _ := json.Marshal(s); bytes.Equal(now, was) {
		return nil
	}
	b, err := json.Marshal(zoneFile{Version: stateVersion, ZoneSnapshot: s})
	if err != nil {
		return err
	}
	return z.Dir.WriteLocked(z.Name+".json", append(b, '\n'), 0o600, false)
}

// Current is the stored state, for status.
func (z ZoneStore) Current() (ZoneSnapshot, error) {
	s, _, err := z.read()
	return s, err
}

func (z ZoneStore) read() (ZoneSnapshot, []byte, error) {
	b, _, err := z.Dir.ReadRegular(z.Name+".json", maxFile)
	if errors.Is(err, fs.ErrNotExist) || err == nil && len(b) == 0 {
		return ZoneSnapshot{}, nil, nil
	}
	if err != nil {
		return ZoneSnapshot{}, nil, fmt.Errorf("zone rule state: %w", err)
	}
	var f zoneFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil || f.Version != stateVersion {
		return ZoneSnapshot{}, nil, fmt.Errorf("%w: %s/%s.json: fix or remove it (removing forgets the held storm)", ErrCorrupt, z.Dir.Path(), z.Name)
	}
	return f.ZoneSnapshot, b, nil
}

// over is s with its storm over: the hold, its window and trials reset;
// what this node saw, admitted, failed, held and the agents' holds kept.
func (s ZoneSnapshot) over() ZoneSnapshot {
	return ZoneSnapshot{Seen: s.Seen, Admitted: s.Admitted, Failed: s.Failed, HeldHere: s.HeldHere, Agents: s.Agents}
}
