package handler

import (
	"context"
	"crypto/tls"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/selfheal/selfheal/internal/breaker"
	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/nodestate"
	"github.com/selfheal/selfheal/internal/protocol"
	"github.com/selfheal/selfheal/internal/textsafe"
)

// ReevalConfig is one `handle_worker reevaluate`: the engines run a
// handler only when a state changes, so a fault held back (downtime, host
// DOWN, a pause, the breaker, the agent's back-off, an unreachable agent)
// would stay unhealed
// after the reason went away. Reevaluate, run as a service check on the
// monitoring node, reads what the engine says now and asks again for
// every held fault that is still the service's fault, still HARD
// CRITICAL, and no longer held back.
type ReevalConfig struct {
	StateDir string
	Trust    fsutil.Trust
	// Status is the engine's current view (Nagios' status.dat); StatusAge
	// bounds how old it may be (its info.created) to be acted on.
	Status    *nagios.StatusData
	StatusAge time.Duration
	Key       protocol.Key
	TLS       *tls.Config
	Judgment  Judgment
	// Engine, when Status is nil, gives the engine's view (Icinga 2's
	// API) and takes the write-back; else CommandFile does.
	Engine Engine
	// CommandFile, Deadline (the whole run) and PerRequest (one heal).
	CommandFile string
	Deadline    time.Duration
	PerRequest  time.Duration
	// unread are the services the engine could not be asked about: they
	// wait, rather than read as gone.
	unread map[[2]string]bool
	// later are the holds not read because the agent allows them only
	// later (RetryAt).
	later map[[2]string]bool
	zone  *ZoneCache // one read of the zone serves the asks of zoneViewTTL
}

// ReevalItem is what became of one held record.
type ReevalItem struct {
	Host, Service string
	Rule          string // why it was held
	Outcome       string // "healed", "held", "waiting", "cleared", "failed"
	Text          string
}

// ReevalResult is the run's plugin result.
type ReevalResult struct {
	Code  int
	Line  string
	Items []ReevalItem
}

// Reevaluate works through the held records, oldest first, within the
// deadline; what it has no time for waits for the next run.
func Reevaluate(ctx context.Context, cfg ReevalConfig, deps Deps) ReevalResult {
	deps.defaults()
	ctx, cancel := context.WithTimeout(ctx, cfg.Deadline)
	defer cancel()
	now := deps.Now()
	if cfg.Status != nil && cfg.StatusAge > 0 && !cfg.Status.Created.IsZero() && now.Sub(cfg.Status.Created) > cfg.StatusAge {
		return ReevalResult{Code: ExitUsage, Line: fmt.Sprintf("UNKNOWN - status file is %s old (written %s): is the engine running?",
			roundDur(now.Sub(cfg.Status.Created)), cfg.Status.Created.UTC().Format(time.RFC3339))}
	}
	store := nodestate.Store{Dir: cfg.StateDir, Trust: cfg.Trust}
	recs, err := store.HeldRecords()
	if err != nil {
		return ReevalResult{Code: int(nagios.Critical), Line: "CRITICAL - cannot read the handler's state: " + textsafe.OneLine(err.Error())}
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Held.Since.Before(recs[j].Held.Since) })
	if cfg.Status == nil && cfg.Engine != nil && len(recs) > 0 {
		// One service at a time: one that cannot be read waits, and the
		// others are still asked for (a mass failure holds many). The
		// mass-failure rule's holds are read when their turn comes
		// (stormLooks): most of a storm waits behind its first ranks.
		sd := &nagios.StatusData{Created: deps.Now(), Services: map[[2]string]nagios.ServiceStatus{}, Hosts: map[string]nagios.HostStatus{}}
		var errs []string
		cfg.later = map[[2]string]bool{}
		for _, r := range recs {
			if isZoneHold(r) {
				continue
			}
			if now.Before(r.Held.RetryAt) {
				// Not asked before then whatever the engine says (its OK
				// event cleans up): no read. A host whose agent breaker
				// opened holds dozens.
				cfg.later[[2]string{r.Host, r.Service}] = true
				continue
			}
			one, err := cfg.Engine.Status(ctx, [][2]string{{r.Host, r.Service}})
			if err != nil || one == nil {
				if err != nil {
					errs = append(errs, r.Host+"/"+r.Service+": "+textsafe.OneLine(err.Error()))
				}
				continue
			}
			for k, v := range one.Services {
				sd.Services[k] = v
			}
			for k, v := range one.Hosts {
				sd.Hosts[k] = v
			}
			sd.Comments = append(sd.Comments, one.Comments...)
		}
		if len(errs) > 0 && len(errs) == len(recs) {
			return ReevalResult{Code: ExitUsage, Line: "UNKNOWN - cannot read the engine's view: " + errs[0]}
		}
		cfg.Status = sd
		cfg.unread = map[[2]string]bool{}
		for _, r := range recs {
			if _, ok := sd.Services[[2]string{r.Host, r.Service}]; !ok && !isZoneHold(r) && !cfg.later[[2]string{r.Host, r.Service}] {
				cfg.unread[[2]string{r.Host, r.Service}] = true
			}
		}
	}
	var res ReevalResult
	cfg.zone = &ZoneCache{}
	end := now.Add(cfg.Deadline)
	for _, rec := range recs {
		switch {
		case isZoneHold(rec) && cfg.Status != nil:
			res.Items = append(res.Items, ReevalItem{Host: rec.Host, Service: rec.Service, Rule: rec.Held.Rule, Outcome: "held", Text: rec.Held.Text})
		case ctx.Err() != nil || end.Sub(deps.Now()) < cfg.PerRequest:
			// Not begun without a heal's time: cut off, it would be sent
			// and its answer lost.
			res.Items = append(res.Items, ReevalItem{Host: rec.Host, Service: rec.Service, Rule: rec.Held.Rule, Outcome: "waiting", Text: "no time left in this run"})
		default:
			res.Items = append(res.Items, reevalOne(ctx, cfg, deps, store, rec))
		}
	}
	res.Items = stormLooks(ctx, cfg, deps, store, recs, res.Items, end)
	RetryWriteBacks(ctx, store, cfg.writeEngine(), cfg.Status, deps)
	res.Code, res.Line = reevalSummary(res.Items)
	deps.Log.Info().Str("mode", "reevaluate").Int("held", len(recs)).Int("exit", res.Code).
		Float64("elapsed_ms", float64(deps.Now().Sub(now).Microseconds())/1000).Msg(res.Line)
	return res
}

// A held storm recovers by slow start (breaker.ZoneStep): each trial the
// engine shows healed widens the window by one. One look per run would
// widen it once a check interval (1, 2, 4, 8, 10 a minute per node), and
// 1,000 held services would take most of an hour. So while the zone rule
// holds some of this run's services and has trials in flight, reevaluate
// looks again every zoneLook within its deadline: it asks for the
// services the rule held, oldest fault first (the rule's own ranking),
// and ends a look at the first one the rule holds again or that must
// wait (the ones after it rank after it); one the agent holds does not
// end it. The run's own first ask of them is the first look:
// a pass over 500 held services asked each and read each from the API,
// and took the whole deadline (the scale lab, 10,000 workers). The rule still decides every restart, so the bound
// on unverified restarts in flight is the rule's, not this loop's.
const (
	zoneLook     = 2 * time.Second
	maxZoneLooks = 100 // a bound on the loop; the deadline ends it sooner
)

// sourceReevaluate is Config.Source of reevaluate's asks.
const sourceReevaluate = "reevaluate"

func stormLooks(ctx context.Context, cfg ReevalConfig, deps Deps, store nodestate.Store, recs []nodestate.Record, items []ReevalItem, end time.Time) []ReevalItem {
	if cfg.Status == nil || len(items) != len(recs) {
		return items
	}
	if cfg.unread == nil {
		cfg.unread = map[[2]string]bool{}
	}
	// Agents whose own breaker holds their host: asked for their trial
	// only, until it may close (agentHolds).
	holds := loadAgentHolds(ctx, cfg, deps, store)
	skipped := func(name string) []string {
		h := holds.m[name]
		if !deps.Now().Before(h.Until) {
			return nil
		}
		var keys []string
		for i, it := range items {
			if isZoneItem(it) && agentName(recs[i].Held.Ask) == name && holdKey(recs[i]) != h.Trial {
				keys = append(keys, holdKey(recs[i]))
			}
		}
		return keys
	}
	for i, r := range recs {
		// As the run read it; this run's first pass asked it if due.
		if holds.deferred(&r) == "" {
			continue
		}
		switch items[i].Outcome {
		case "healed", "failed":
			holds.ran(r.Held.Ask, holdKey(r))
		case "held":
			// Held again: by the agent (its new time), or by the zone
			// rule (still the trial).
			cur, _ := store.Read(r.Host, r.Service)
			holds.deferred(cur)
		}
	}
	for name := range holds.m {
		holds.keep(name, skipped(name))
	}
	for look := 0; look < maxZoneLooks; look++ {
		var todo []int
		for i, it := range items {
			if isZoneItem(it) {
				todo = append(todo, i)
			}
		}
		if len(todo) == 0 {
			return items
		}
		// The first look is this run's ask; the later ones wait for the
		// engine to show a trial healed.
		if look > 0 {
			if !zoneInFlight(store) || end.Sub(deps.Now()) < cfg.PerRequest+zoneLook {
				return items
			}
			if deps.Sleep(ctx, zoneLook) != nil {
				return items
			}
		}
		sort.SliceStable(todo, func(a, b int) bool {
			ra, rb := recs[todo[a]], recs[todo[b]]
			fa, fb := ra.Held.FaultSince, rb.Held.FaultSince
			if !fa.Equal(fb) {
				return fa.Before(fb)
			}
			return ra.Host+"!"+ra.Service < rb.Host+"!"+rb.Service
		})
		asked := false
		for _, i := range todo {
			// An ask needs a heal's time: one begun at the deadline is
			// sent and cut off before its reply (nothing known of it).
			if ctx.Err() != nil || end.Sub(deps.Now()) < cfg.PerRequest {
				return items
			}
			cur, err := store.Read(recs[i].Host, recs[i].Service)
			if err != nil || cur == nil || !isZoneHold(*cur) {
				continue // gone, or held for another reason since: the next run sees it
			}
			if holds.skip(*cur) {
				continue
			}
			asked = true
			if cfg.Engine != nil {
				one, err := cfg.Engine.Status(ctx, [][2]string{{cur.Host, cur.Service}})
				if err != nil || one == nil {
					cfg.unread[[2]string{cur.Host, cur.Service}] = true
				} else {
					delete(cfg.unread, [2]string{cur.Host, cur.Service})
					for k, v := range one.Services {
						cfg.Status.Services[k] = v
					}
					for k, v := range one.Hosts {
						cfg.Status.Hosts[k] = v
					}
				}
			}
			recs[i] = *cur
			items[i] = reevalOne(ctx, cfg, deps, store, *cur)
			name := ""
			switch it := items[i]; {
			case it.Rule == ruleAgentBreaker:
				after, _ := store.Read(cur.Host, cur.Service)
				name = holds.deferred(after)
			case it.Outcome == "healed" || it.Outcome == "failed":
				name = holds.ran(cur.Held.Ask, holdKey(*cur))
			}
			if name != "" {
				holds.keep(name, skipped(name))
			}
			// Past one healed, cleared, or held for another reason (the
			// agent's breaker, budget or back-off: the rule took its
			// admission back; a pause, downtime or host DOWN: the rule was
			// not asked); the rule holding it again, a wait or a failure
			// ends the look.
			if it := items[i]; it.Outcome != "healed" && it.Outcome != "cleared" && (it.Outcome != "held" || it.Rule == string(nodestate.RuleBreaker)) {
				break
			}
		}
		if !asked {
			return items // all wait for their agent: nothing changes before the next run
		}
	}
	return items
}

// isZoneItem: this run left it held by the mass-failure rule.
func isZoneItem(it ReevalItem) bool {
	return it.Outcome == "held" && it.Rule == string(nodestate.RuleBreaker)
}

// isZoneHold: held by the mass-failure rule. An agent's breaker deferral
// recorded before it had its own rule name ("agent-breaker") has the
// agent's outcome as its result, not "held".
func isZoneHold(r nodestate.Record) bool {
	return r.Held != nil && r.Held.Rule == string(nodestate.RuleBreaker) && r.Result == kindHeld
}

// zoneInFlight: this node's zone rule has restarts the engine has not
// shown healed yet: a look soon may see them healed and widen the window.
// Without any, nothing changes before the next run (the first trial waits
// for the zone to be quiet; failed trials back off for minutes).
func zoneInFlight(store nodestate.Store) bool {
	d, err := store.Open()
	if err != nil {
		return false
	}
	defer d.Close()
	s, err := breaker.ZoneStore{Dir: d, Name: nodestate.ZoneFile}.Current()
	return err == nil && len(s.Admitted) > 0
}

func reevalOne(ctx context.Context, cfg ReevalConfig, deps Deps, store nodestate.Store, rec nodestate.Record) ReevalItem {
	h := rec.Held
	it := ReevalItem{Host: rec.Host, Service: rec.Service, Rule: h.Rule}
	clear := func(why string) ReevalItem {
		err := store.Update(ctx, rec.Host, rec.Service, func(cur *nodestate.Record) bool {
			// Only the hold this run read: a handler may have recorded a
			// new one since.
			if cur == nil || cur.Held == nil || cur.Held.Fault != h.Fault || cur.Held.Rule != h.Rule || !cur.Held.Since.Equal(h.Since) {
				return false
			}
			cur.Held = nil
			return true
		})
		if err != nil {
			it.Outcome, it.Text = "failed", "could not clear the record: "+textsafe.OneLine(err.Error())
			return it
		}
		it.Outcome, it.Text = "cleared", why
		return it
	}
	if cfg.Status == nil {
		it.Outcome, it.Text = "waiting", "no status file: the engine's view is unknown"
		return it
	}
	st, ok := cfg.Status.Service(rec.Host, rec.Service)
	switch {
	case cfg.later[[2]string{rec.Host, rec.Service}]:
		// Not read, so not judged, even when its time came during this
		// pass (a long one): read as missing, it would be cleared as gone.
		it.Outcome, it.Text = "waiting", "the agent allows a restart in "+roundDur(max(h.RetryAt.Sub(deps.Now()), 0)).String()+" (not read before then)"
		return it
	case cfg.unread[[2]string{rec.Host, rec.Service}]:
		it.Outcome, it.Text = "waiting", "the engine's view of it could not be read"
		return it
	case staleView(cfg.Status, st, ok, h.Since) != "":
		it.Outcome, it.Text = "waiting", staleView(cfg.Status, st, ok, h.Since)
		return it
	case !ok:
		return clear("the service is gone from the engine")
	case !st.Checked:
		it.Outcome, it.Text = "waiting", "not checked yet since the engine started"
		return it
	case st.State != nagios.Critical && st.Checked:
		// Recovered, or no longer a state that calls for a restart: the
		// handler's own OK event cleans up its comments.
		return clear("no longer CRITICAL (" + st.State.String() + ")")
	case st.ProblemID != "" && h.Fault != "-" && st.ProblemID != h.Fault:
		return clear("a new fault (" + st.ProblemID + ") replaced fault " + h.Fault + ": its own event handles it")
	case !st.Hard:
		it.Outcome, it.Text = "waiting", "SOFT CRITICAL"
		return it
	case deps.Now().Before(h.RetryAt):
		it.Outcome, it.Text = "waiting", "the agent allows a restart in "+roundDur(h.RetryAt.Sub(deps.Now())).String()
		switch h.Rule {
		case kindUnreachable:
			it.Text = "the agent was unreachable; asked again in " + roundDur(h.RetryAt.Sub(deps.Now())).String()
		case kindNoReply:
			it.Text = "the agent's reply did not come; asked again in " + roundDur(h.RetryAt.Sub(deps.Now())).String()
		}
		return it
	}
	a := h.Ask
	res := Run(ctx, Config{
		Event: Event{State: nagios.Critical, Type: Hard, Attempt: 1}, Fault: h.Fault, FaultSince: h.FaultSince,
		HostName: rec.Host, ServiceDesc: rec.Service,
		Conn:   Conn{Address: a.Address, Port: a.Port, Agent: a.Agent, Target: a.Target, Key: cfg.Key, TLS: cfg.TLS},
		Action: protocol.Verb(a.Action), StateDir: cfg.StateDir, Trust: cfg.Trust,
		Deadline: cfg.PerRequest, CommandFile: cfg.CommandFile, Engine: cfg.Engine, Recheck: time.Duration(a.RecheckMS) * time.Millisecond,
		Facts: Facts{ServiceDowntime: -1, HostDowntime: -1, Ack: -1, Status: cfg.Status}, Judgment: cfg.Judgment,
		Source: sourceReevaluate, ZoneCache: cfg.zone,
	}, deps)
	it.Text = res.Line
	switch {
	case res.Code == ExitFailed:
		// An unreachable agent fails too, and stays held for a retry.
		it.Outcome = "failed"
	case res.Hold != nil:
		it.Outcome, it.Rule = "held", res.Hold.Rule
	case res.Code == ExitOK:
		it.Outcome = "healed"
	default:
		it.Outcome = "failed"
	}
	return it
}

// staleView says why the engine's view cannot judge a hold recorded at
// since, or "". The view must be newer than the hold: a status.dat
// written just before the HARD CRITICAL still shows the service OK, and
// an HA peer's API may not have the CRITICAL yet; clearing the hold on
// either loses the fault's restart for good (no handler runs again while
// it stays HARD CRITICAL). Times are compared in whole seconds, as
// status.dat has them: the hold's own second is not newer (the state
// change that caused it may have come later in it). Besides the view's
// time, a service that is no longer CRITICAL must have been checked
// after the hold: else its state predates the hold. Both waits end by
// themselves: the engine writes status.dat and checks the service again.
func staleView(sd *nagios.StatusData, st nagios.ServiceStatus, found bool, since time.Time) string {
	if !sd.Created.IsZero() && sd.Created.Unix() <= since.Unix() {
		return fmt.Sprintf("the engine's view (of %s) is not newer than the hold (since %s): waiting for a newer one",
			sd.Created.UTC().Format(time.RFC3339), since.UTC().Format(time.RFC3339))
	}
	if found && st.State != nagios.Critical && !st.LastCheck.IsZero() && st.LastCheck.Unix() <= since.Unix() {
		return fmt.Sprintf("%s from a check (%s) not newer than the hold (since %s): waiting for the next check",
			st.State, st.LastCheck.UTC().Format(time.RFC3339), since.UTC().Format(time.RFC3339))
	}
	return ""
}

// reevalSummary is the plugin's line: OK when nothing is held back,
// WARNING while something is (healing is held back), CRITICAL when a
// re-evaluated heal failed; perfdata counts each outcome.
func reevalSummary(items []ReevalItem) (int, string) {
	count := map[string]int{}
	var held, failed []string
	for _, it := range items {
		count[it.Outcome]++
		name := it.Host + "/" + it.Service
		switch it.Outcome {
		case "held", "waiting":
			held = append(held, name+" ("+it.Rule+")")
		case "failed":
			failed = append(failed, name)
		}
	}
	perf := fmt.Sprintf("|held=%d healed=%d failed=%d cleared=%d", len(held), count["healed"], count["failed"], count["cleared"])
	list := func(s []string) string {
		if len(s) > 10 {
			return strings.Join(s[:10], ", ") + fmt.Sprintf(" and %d more", len(s)-10)
		}
		return strings.Join(s, ", ")
	}
	switch {
	case len(failed) > 0:
		return int(nagios.Critical), fmt.Sprintf("CRITICAL - %d held heal(s) failed when asked again: %s; %d still held back %s",
			len(failed), list(failed), len(held), perf)
	case len(held) > 0:
		return int(nagios.Warning), fmt.Sprintf("WARNING - %d heal(s) held back: %s; %d healed in this run %s",
			len(held), list(held), count["healed"], perf)
	}
	return int(nagios.OK), fmt.Sprintf("OK - no heal held back; %d healed in this run %s", count["healed"], perf)
}
