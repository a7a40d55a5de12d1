package handler

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/selfheal/selfheal/internal/breaker"
	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/nodestate"
	"github.com/selfheal/selfheal/internal/textsafe"
)

// DefaultEventCommand is the shipped configs' event command (Nagios'
// event_handler, Icinga 2's EventCommand): the zone rule ranks the
// failing services that run it, not the zone's other checks.
const DefaultEventCommand = "selfheal-handle-worker"

// DefaultZone is the zone rule's default: at most 10 unhealed restarts
// in the zone at once (docs/event-handler.md has the numbers).
var DefaultZone = breaker.ZoneConfig{Allowance: breaker.DefaultAllowance, Window: breaker.DefaultZoneWindow,
	Quiet: breaker.DefaultQuiet, Verify: breaker.DefaultVerify}

// errNoZoneView: the engine's view of the zone is not configured (no
// status file, no API): the node's own count decides.
var errNoZoneView = errors.New("no view of the zone (give --status-file or --icinga-api)")

// zoneViewTTL is how long one read of the zone serves this node's other
// handler runs. A storm's HARD states come hundreds a minute: one filtered
// query of 10,000 services each overloaded Icinga 2's API in the scale lab
// (queries and write-backs timed out, and the node's count decided). A
// view two seconds old misses only what asked here since, and those count
// anyway (the zone rule's "seen").
const zoneViewTTL = 2 * time.Second

// zoneStormTTL is zoneViewTTL for the engine's event runs when the view
// shows more failing services than the allowance: the rule holds that
// storm whatever arrived since, and each query of a thousand failing
// services of 10,000 cost Icinga 2 81 ms of CPU (measured apart, on a
// quiet machine: docs/benchmarks.md, "A storm's held run"), 0.04 of a
// core per endpoint at one query every 2 s, while its checks detect the
// storm. Reevaluate,
// which heals the storm, keeps zoneViewTTL: its trials widen the window
// as it sees them healed (with this TTL the scale lab's recovery healed
// 712 of 1,000 in 20 minutes, against all 1,000 in 17).
const zoneStormTTL = 10 * time.Second

// zoneView is one read: At is when the engine showed it (the query's
// start, status.dat's created), ReadAt when the read ended (its age for
// the TTL: a slow query must not leave a view stale on arrival), Query
// what was asked (another command line's event command, window or status
// file is another view).
type zoneView struct {
	At      time.Time         `json:"at"`
	ReadAt  time.Time         `json:"read_at"`
	Query   string            `json:"query"`
	Failing []breaker.Failing `json:"failing"`
	Err     string            `json:"err,omitempty"`
}

// sharedZone is readZone, read at most once per zoneViewTTL by the
// handler runs of this node: one run reads, under a lock, and the runs
// waiting on it use what it read, a failure included (each would
// otherwise wait out its own time-out against an API already slow).
func (r *run) sharedZone(ctx context.Context) ([]breaker.Failing, time.Time, error) {
	if r.cfg.StateDir == "" || r.cfg.DryRun {
		return r.readZone(ctx)
	}
	d, err := r.store().Open()
	if err != nil {
		return r.readZone(ctx)
	}
	defer d.Close()
	j := r.cfg.Judgment
	query := fmt.Sprintf("%s|%s|%s", cmp.Or(j.EventCommand, DefaultEventCommand), j.zone().Window, j.StatusFile)
	c := r.cfg.ZoneCache
	storm := j.zone().Allowance // a view with more failing is a storm's
	if r.cfg.Source == sourceReevaluate {
		storm = -1 // never: zoneViewTTL
	}
	fresh := func() (*zoneView, bool) {
		now := r.deps.Now()
		if c != nil && c.v.usable(query, now, storm) {
			return c.v, true
		}
		b, _, err := d.ReadRegular(nodestate.ZoneViewFile+".json", 64<<20)
		var v zoneView
		if err != nil || json.Unmarshal(b, &v) != nil || !v.usable(query, now, storm) {
			return nil, false
		}
		c.keep(&v)
		return &v, true
	}
	use := func(v *zoneView) ([]breaker.Failing, time.Time, error) {
		if v.Err != "" {
			return nil, v.At, errors.New(v.Err + " (read by another run of this node)")
		}
		return v.Failing, v.At, nil
	}
	if v, ok := fresh(); ok {
		return use(v)
	}
	lctx, cancel := context.WithTimeout(ctx, max(r.cfg.Deadline/5, time.Second))
	defer cancel()
	unlock, err := d.Lock(lctx, nodestate.ZoneViewFile+".lock", 0o600, 0)
	if err != nil {
		failing, at, err := r.readZone(ctx)
		if err == nil {
			c.keep(&zoneView{At: at, ReadAt: r.deps.Now(), Query: query, Failing: failing})
		}
		return failing, at, err
	}
	defer unlock()
	if v, ok := fresh(); ok {
		return use(v)
	}
	failing, at, err := r.readZone(ctx)
	v := zoneView{At: at, ReadAt: r.deps.Now(), Query: query, Failing: failing}
	if err != nil {
		v.Err = err.Error()
	}
	if b, merr := json.Marshal(v); merr == nil {
		_ = d.WriteLocked(nodestate.ZoneViewFile+".json", b, 0o600, false)
	}
	c.keep(&v)
	return failing, at, err
}

// usable: v is a view of query, read less than zoneViewTTL before now
// (zoneStormTTL when it shows more than storm failing; storm < 0: never).
func (v *zoneView) usable(query string, now time.Time, storm int) bool {
	ttl := zoneViewTTL
	if v != nil && v.Err == "" && storm >= 0 && len(v.Failing) > storm {
		ttl = zoneStormTTL
	}
	return v != nil && v.Query == query && !v.ReadAt.After(now) && now.Sub(v.ReadAt) < ttl
}

// readZone reads the zone's failing services from the engine, and when
// the engine showed them: the query's start (Icinga 2), or status.dat's
// own time (Nagios writes it every status_update_interval). One filtered
// API query on Icinga 2 (any endpoint answers for the whole zone), the
// whole status.dat on Nagios; only ever on the HARD CRITICAL path, after
// every other rule let the restart through. SOFT CRITICAL services count
// too: a storm's other services are SOFT when its first turn HARD, and
// counting them holds it before its restarts heal some.
func (r *run) readZone(ctx context.Context) ([]breaker.Failing, time.Time, error) {
	j := r.cfg.Judgment
	z := j.zone()
	at := r.deps.Now()
	since := at.Add(-z.Window)
	ec := j.EventCommand
	if ec == "" {
		ec = DefaultEventCommand
	}
	switch e := r.cfg.Engine.(type) {
	case IcingaEngine:
		ctx, cancel := context.WithTimeout(ctx, max(r.cfg.Deadline/5, time.Second))
		defer cancel()
		fs, err := e.Client.Failing(ctx, since, ec)
		if err != nil {
			return nil, at, err
		}
		out := make([]breaker.Failing, len(fs))
		for i, f := range fs {
			out[i] = breaker.Failing{Key: f.Host + "!" + f.Name, Fault: f.FaultID(), Since: f.Since()}
		}
		return out, at, nil
	case NagiosEngine:
		if j.StatusFile == "" {
			j.StatusFile = e.StatusFile
		}
	}
	if j.StatusFile == "" {
		return nil, at, errNoZoneView
	}
	b, err := readNagiosFile(r.cfg.Trust, "status file", j.StatusFile)
	if err != nil {
		return nil, at, err
	}
	fs, created, err := failingFromStatus(b, since, ec)
	if !created.IsZero() && created.Before(at) {
		at = created
	}
	return fs, at, err
}

// failingFromStatus reads the failing services from status.dat: CRITICAL
// (SOFT or HARD), no downtime, not acknowledged, on a host that is UP (or
// not checked yet), turned CRITICAL at or after since, whose event
// handler is ec (a file without event_handler fields counts every
// service).
func failingFromStatus(b []byte, since time.Time, ec string) ([]breaker.Failing, time.Time, error) {
	var svcs []map[string]string
	var created time.Time
	hostDown := map[string]bool{}
	err := nagios.ParseBlocks(bytes.NewReader(b), func(t string) bool { return t == "servicestatus" || t == "hoststatus" || t == "info" },
		func(bl nagios.Block) error {
			f := bl.Fields
			if bl.Type == "info" {
				created = nagios.ParseEpoch(f["created"])
				return nil
			}
			if bl.Type == "hoststatus" {
				hostDown[f["host_name"]] = f["has_been_checked"] == "1" && strings.TrimSpace(f["current_state"]) != "0"
				return nil
			}
			if f["current_state"] != "2" || f["problem_has_been_acknowledged"] == "1" ||
				strings.TrimSpace(f["scheduled_downtime_depth"]) != "0" && f["scheduled_downtime_depth"] != "" {
				return nil
			}
			if h, ok := f["event_handler"]; ok {
				if name, _, _ := strings.Cut(h, "!"); name != ec {
					return nil
				}
			}
			svcs = append(svcs, f)
			return nil
		})
	if err != nil {
		return nil, created, fmt.Errorf("status file: %w", err)
	}
	var out []breaker.Failing
	for _, f := range svcs {
		at := nagios.ParseEpoch(f["last_state_change"])
		if hostDown[f["host_name"]] || at.Before(since) {
			continue
		}
		out = append(out, breaker.Failing{Key: f["host_name"] + "!" + f["service_description"], Fault: f["current_problem_id"], Since: at})
	}
	return out, created, nil
}

func (j Judgment) zone() breaker.ZoneConfig {
	if j.Zone == (breaker.ZoneConfig{}) {
		return DefaultZone
	}
	return j.Zone
}

// breakerHold is the mass-failure rule: the zone's, read from the engine;
// when the engine cannot be read, the node's own count (which fails open
// past it).
func (r *run) breakerHold(ctx context.Context) *Hold {
	now := r.deps.Now()
	failing, viewAt, err := r.sharedZone(ctx)
	var v breaker.ZoneVerdict
	if err == nil {
		v, err = r.zoneAdmit(ctx, failing, viewAt)
	}
	if err != nil {
		if !errors.Is(err, errNoZoneView) {
			r.notes = append(r.notes, "zone rule unusable, the node's count decides: "+textsafe.OneLine(err.Error()))
		}
		return r.nodeBreakerHold(ctx)
	}
	if !v.Allow {
		return &Hold{Rule: string(nodestate.RuleBreaker), Text: zoneText(v, r.cfg.Judgment.zone()), RetryAt: now.Add(v.RetryAfter)}
	}
	r.zoneNew = v.New
	if v.Trial {
		r.notes = append(r.notes, fmt.Sprintf("zone rule: trial restart (%d at once)", v.Window))
	} else {
		r.notes = append(r.notes, fmt.Sprintf("zone rule: %d of the zone's services failing, this one ranked %d", v.Failing, v.Rank))
	}
	return nil
}

func (r *run) zoneAdmit(ctx context.Context, failing []breaker.Failing, viewAt time.Time) (breaker.ZoneVerdict, error) {
	d, err := r.store().Open()
	if err != nil {
		return breaker.ZoneVerdict{}, err
	}
	defer d.Close()
	zs := breaker.ZoneStore{Dir: d, Name: nodestate.ZoneFile, Config: r.cfg.Judgment.zone()}
	return zs.Admit(ctx, r.deps.Now(), viewAt, r.cfg.HostName+"!"+r.cfg.ServiceDesc, r.cfg.Fault, failing, r.cfg.DryRun)
}

// zoneRelease gives back the zone rule's admission of this run when the
// restart did not run (the agent held it back or was not reached): a
// trial the agent refused is not a trial that failed. In the scale lab the
// agents' own breakers (a 100-service host, 50 restarts in 5 minutes)
// refused trials during a storm's recovery, and the zone rule, taking
// them for failed trials, backed off for 30 minutes.
func (r *run) zoneRelease(ctx context.Context) {
	if !r.zoneNew || r.cfg.DryRun {
		return
	}
	// The run's own deadline is often spent by then (an unreachable
	// agent is retried until it ends): the give-back gets its own bound.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	d, err := r.store().Open()
	if err != nil {
		return
	}
	defer d.Close()
	zs := breaker.ZoneStore{Dir: d, Name: nodestate.ZoneFile, Config: r.cfg.Judgment.zone()}
	if err := zs.Release(ctx, r.cfg.HostName+"!"+r.cfg.ServiceDesc, r.cfg.Fault); err != nil {
		r.notes = append(r.notes, "zone rule: could not give back the admission: "+textsafe.OneLine(err.Error()))
	}
}

// zoneText is the comment of a service the zone rule holds.
func zoneText(v breaker.ZoneVerdict, cfg breaker.ZoneConfig) string {
	top, n := topHost(v.Hosts)
	cause := "a cause they share"
	switch {
	case n*2 > v.Failing && v.Failing > 0:
		cause = fmt.Sprintf("host %s (%d of them) or a dependency it shares", top, n)
	case len(v.Hosts) > 1:
		cause = fmt.Sprintf("a dependency shared by %d hosts", len(v.Hosts))
	}
	head := fmt.Sprintf("auto-restart held back (mass failure): %d services of this zone turned CRITICAL within %s and are still failing (more than the %d restarted at once): suspect %s",
		v.Failing, roundDur(cfg.Window), cfg.Allowance, cause)
	if v.Fails > 0 {
		return strings.Replace(head, "(mass failure)", "(mass failure, trials failing)", 1) +
			fmt.Sprintf("; the trial restart of %s did not heal it within %s: a human must look; next trial in %s",
				strings.Replace(v.LastFail, "!", "/", 1), roundDur(cfg.Verify), roundDur(v.RetryAfter))
	}
	return head + fmt.Sprintf("; healing resumes by itself: one trial restart once no new failure arrived for %s, more while trials heal (at most %d unverified)",
		roundDur(cfg.Quiet), cfg.Allowance)
}

// zoneStatus is the zone rule's line in `handle_worker status`: what this
// node remembers (the failing set is the engine's, read at each decision).
func zoneStatus(d *fsutil.Dir, j Judgment, now time.Time) string {
	cfg := j.zone()
	st, err := breaker.ZoneStore{Dir: d, Name: nodestate.ZoneFile, Config: cfg}.Current()
	if err != nil {
		return "zone rule: unreadable: " + textsafe.OneLine(err.Error()) + "\n"
	}
	return zoneLine(st, cfg, now) + agentsLine(st, now)
}

func zoneLine(st breaker.ZoneSnapshot, cfg breaker.ZoneConfig, now time.Time) string {
	if !st.Held {
		return fmt.Sprintf("zone rule: not holding (at most %d failing services restarted at once; %d restarts from here not yet seen healed)\n",
			cfg.Allowance, len(st.Admitted))
	}
	line := fmt.Sprintf("zone rule: holding a storm since %s: %d restarted at once now, %d in flight from here", st.Since.UTC().Format(time.RFC3339),
		st.Window, len(st.Admitted))
	if st.Fails > 0 {
		line += fmt.Sprintf("; %d trial round(s) failed (last %s): a human must look", st.Fails, strings.Replace(st.LastFail, "!", "/", 1))
	}
	if now.Before(st.NextTrial) {
		line += "; next trial in " + roundDur(st.NextTrial.Sub(now)).String()
	}
	return line + "\n"
}

// agentsLine names the agents reevaluate does not ask now: their own
// breaker holds their host (docs/agent-judgment.md).
func agentsLine(st breaker.ZoneSnapshot, now time.Time) string {
	held := st.AgentsHeld(now)
	if len(held) == 0 {
		return ""
	}
	names := slices.Sorted(maps.Keys(held))
	for i, a := range names {
		names[i] = fmt.Sprintf("%s (%s)", a, roundDur(held[a].Until.Sub(now)))
	}
	return fmt.Sprintf("zone rule: not asking %d agent(s) whose own breaker holds their host, until it may close: %s\n", len(names), strings.Join(names, ", "))
}

// ZoneCache is one process's copy of the last view of the zone it read
// or shared (zone-view.json, zoneViewTTL): reevaluate asks for many held
// services in a row, and reading the file again for each ask would cost
// most of what sharing the view saves.
type ZoneCache struct {
	v *zoneView
}

// keep a view read without error (a failure is shared through the file
// only: another run's, it says so).
func (c *ZoneCache) keep(v *zoneView) {
	if c != nil && v.Err == "" {
		c.v = v
	}
}
