package healercheck

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/selfheal/selfheal/internal/breaker"
	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/icingaapi"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/nodestate"
	"github.com/selfheal/selfheal/internal/plugin"
)

// NodeConfig is one node-mode check, fully parsed.
type NodeConfig struct {
	StateDir string       // handle_worker's --state-dir
	Trust    fsutil.Trust // whose it must be: the user the handler (and this check) runs as
	Breaker  breaker.Config
	// Recent bounds which failing answers count: a record keeps its last
	// answer until the next, so an old failure the worker has long since
	// recovered from is history, not a failing heal.
	Recent time.Duration
	// CommandFile is the Nagios command FIFO ("" = not checked).
	CommandFile string
	// Icinga is the Icinga 2 API the handler writes back through (nil =
	// not checked), as internal/icingaapi reaches it: with its
	// credentials, they must be accepted; without, any answer will do.
	Icinga *icingaapi.Config
	// Ignore are the handler's switched-off rules (--ignore): a pause or
	// a breaker it ignores holds nothing back.
	Ignore  map[nodestate.Rule]bool
	Timeout time.Duration
}

// DefaultRecent is --recent's default: the agent's default budget window.
const DefaultRecent = time.Hour

// failing are the records' results that mean the heal did not happen
// for a reason a human must fix; refused are the agent's holds.
var (
	failing = map[string]bool{"failed": true, "timeout": true, "no-reply": true, "unreachable": true,
		"denied": true, "skew": true, "error": true}
	refused = map[string]bool{"spent": true, "backoff": true, "breaker": true}
)

// probeName is the file the write test creates and removes, and the lock
// it holds meanwhile (not .json: the handler reads every .json as a record).
const probeName = "check_selfheal.probe"

// RunNode checks the monitoring node's handler state.
func RunNode(ctx context.Context, cfg NodeConfig, deps Deps) Result {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Recent <= 0 {
		cfg.Recent = DefaultRecent
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	r := &report{head: "node", okText: "healing is on: nothing paused, held back or failing"}
	now := deps.now()

	d, err := cfg.Trust.OpenDir(cfg.StateDir, fsutil.PrivateDir)
	if err != nil {
		r.add(nagios.Critical, "the handler cannot use its state directory: "+trustText(cfg.StateDir, err), "")
		writeBack(ctx, r, cfg)
		return r.result()
	}
	defer d.Close()
	if err := probe(ctx, d); err != nil {
		r.add(nagios.Critical, "the handler cannot write its state: "+err.Error(), "")
	} else {
		r.add(nagios.OK, "", "state directory "+cfg.StateDir+" trusted and writable")
	}

	store := nodestate.Store{Dir: cfg.StateDir, Trust: cfg.Trust}
	pauses(r, store, now, cfg.Ignore[nodestate.RulePause])
	if cfg.Ignore[nodestate.RuleBreaker] {
		r.add(nagios.OK, "", "breaker switched off (--ignore breaker)")
	} else {
		zoneState(r, d, now)
		breakerState(ctx, r, d, cfg.Breaker, now)
	}
	records(r, store, cfg, now)
	writeBack(ctx, r, cfg)
	return r.result()
}

func trustText(dir string, err error) string {
	var ps fsutil.Problems
	if errors.As(err, &ps) {
		return (&nodestate.TrustError{What: "state directory", Path: dir, Problems: ps}).Error()
	}
	return err.Error()
}

// probe is a real write in the state directory as the handler makes one:
// under a lock of the directory (bounded by ctx), a file created through
// the opened directory (never a symlink), written, synced and removed.
func probe(ctx context.Context, d *fsutil.Dir) error {
	unlock, err := d.Lock(ctx, probeName+".lock", 0o600, 0)
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	defer unlock()
	f, err := d.OpenFile(probeName, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString("check_selfheal\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if rerr := d.Remove(probeName); err == nil {
		err = rerr
	}
	return err
}

func pauses(r *report, s nodestate.Store, now time.Time, ignored bool) {
	ps, err := s.Pauses(now)
	warn := "0"
	if ignored {
		warn = ""
	}
	r.count("paused", len(ps), warn, "")
	if ignored {
		r.add(nagios.OK, "", fmt.Sprintf("pauses switched off (--ignore pause): %d set", len(ps)))
		return
	}
	if err != nil {
		// The handler then heals as if nothing were paused.
		r.add(nagios.Warning, "pauses unreadable (the handler ignores them): "+err.Error(), "")
		return
	}
	for _, p := range ps {
		r.add(nagios.Warning, "healing paused ("+p.Scope()+")",
			fmt.Sprintf("paused: %s by %s for %s more: %s", p.Scope(), p.By, short(p.Until.Sub(now)), p.Reason))
	}
}

func breakerState(ctx context.Context, r *report, d *fsutil.Dir, cfg breaker.Config, now time.Time) {
	v, err := breaker.Store{Dir: d, Name: nodestate.BreakerFile, Config: cfg}.Current(ctx, now)
	if err != nil {
		// Both the handler and the agent fail open on a broken breaker.
		r.count("breaker_open", 0, "0", "1")
		r.add(nagios.Warning, "breaker unreadable (the handler heals as if it were closed): "+err.Error(), "")
		return
	}
	open := 0
	if v.State != breaker.Closed {
		open = 1
	}
	r.count("breaker_open", open, "0", "1")
	r.count("breaker_failures", v.Count, strconv.Itoa(cfg.Threshold), "")
	if open == 0 {
		r.add(nagios.OK, "", fmt.Sprintf("breaker closed: %d of at most %d services needed a restart within %s", v.Count, cfg.Threshold, short(window(cfg))))
		return
	}
	r.add(nagios.Warning, fmt.Sprintf("breaker %s: %d services needed a restart within %s, restarts held back", v.State, v.Count, short(window(cfg))),
		fmt.Sprintf("breaker %s since %s: %d services needed a restart within %s (%s); next step in %s", v.State, ago(now, v.Since),
			v.Count, short(window(cfg)), strings.Join(v.Keys, ", "), short(v.RetryAfter)))
}

func window(c breaker.Config) time.Duration {
	if c.Window == 0 {
		return breaker.DefaultWindow
	}
	return c.Window
}

func records(r *report, s nodestate.Store, cfg NodeConfig, now time.Time) {
	recs, bad, err := s.AllRecords()
	if err != nil {
		r.add(nagios.Unknown, "records unreadable: "+err.Error(), "")
		return
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Host+"/"+recs[i].Service < recs[j].Host+"/"+recs[j].Service })
	var held, fail, ref []string
	for _, rec := range recs {
		name := rec.Host + "/" + rec.Service
		recent := now.Sub(rec.At) < cfg.Recent
		switch {
		// An unreachable agent's heal is failing, though kept for a retry.
		case failing[rec.Result] && recent:
			fail = append(fail, fmt.Sprintf("%s (%s %s)", name, rec.Result, ago(now, rec.At)))
		case rec.Held != nil:
			held = append(held, fmt.Sprintf("%s (%s, since %s)", name, rec.Held.Rule, ago(now, rec.Held.Since)))
		}
		if refused[rec.Result] && recent {
			ref = append(ref, name)
		}
	}
	r.count("held", len(held), "0", "")
	r.count("failing", len(fail), "0", "")
	r.count("refused", len(ref), "", "")
	r.count("records", len(recs), "", "")
	if len(held) > 0 {
		r.add(nagios.Warning, fmt.Sprintf("%d heal(s) held back: %s", len(held), list(held)), "")
	}
	if len(fail) > 0 {
		r.add(nagios.Warning, fmt.Sprintf("%d heal(s) failing: %s", len(fail), list(fail)), "")
	}
	if len(bad) > 0 {
		r.add(nagios.OK, "", fmt.Sprintf("%d unreadable record(s), replaced by the next answer: %s", len(bad), list(bad)))
	}
	r.add(nagios.OK, "", fmt.Sprintf("%d record(s): %d held back, %d failing, %d refused by the agent within %s", len(recs), len(held), len(fail), len(ref), short(cfg.Recent)))
}

func list(s []string) string {
	if len(s) > 5 {
		return strings.Join(s[:5], ", ") + fmt.Sprintf(" and %d more", len(s)-5)
	}
	return strings.Join(s, ", ")
}

// writeBack checks the engine's write-back channel. Its failure is a
// WARNING: the handler heals all the same, without comment or re-check.
func writeBack(ctx context.Context, r *report, cfg NodeConfig) {
	if cfg.CommandFile != "" {
		if err := commandFileReader(cfg.CommandFile); err != nil {
			r.add(nagios.Warning, "no write-back to the engine: "+err.Error(), "")
		} else {
			r.add(nagios.OK, "", "command file "+cfg.CommandFile+" has a reader")
		}
	}
	if cfg.Icinga != nil {
		r.add(icingaAnswers(ctx, *cfg.Icinga))
	}
}

// icingaAnswers asks the API through internal/icingaapi, the handler's
// own client and TLS rules: with the handler's credentials an
// authenticated GET /v1 (the API is up, its certificate verifies, the
// credentials are accepted); without, an unauthenticated one, where any
// answer, 401 included, proves the first two.
func icingaAnswers(ctx context.Context, ic icingaapi.Config) (nagios.State, string, string) {
	fail := func(err error) (nagios.State, string, string) {
		return nagios.Warning, "no write-back to the engine: Icinga 2 API " + ic.URL + ": " + err.Error(), ""
	}
	if ic.User == "" && ic.ClientCert == "" {
		code, err := icingaapi.Probe(ctx, ic)
		if err != nil {
			return fail(err)
		}
		return nagios.OK, "", fmt.Sprintf("Icinga 2 API %s answers (HTTP %d; no credentials given, so not checked)", ic.URL, code)
	}
	c, err := icingaapi.New(ic)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	info, err := c.Info(ctx)
	if err != nil {
		return fail(err)
	}
	return nagios.OK, "", fmt.Sprintf("Icinga 2 API %s answers as ApiUser %s (Icinga %s)", ic.URL, plugin.Line(info.User, 64), plugin.Line(info.Version, 40))
}

// commandFileReader reports whether the FIFO at path has a reader, as the
// handler's write would find it: not a symlink, a FIFO, and an open for
// writing that does not fail with ENXIO. Nothing is written. (Nagios 4
// and Icinga 2 hold their command pipe open themselves, so a writer
// that opens and closes it is no event to them.) handler.CommandFile has
// no probe of its own; this keeps its rules.
func commandFileReader(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("command file %s does not exist (is the engine running with external commands on?)", path)
	case err != nil:
		return fmt.Errorf("command file: %w", err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("command file %s is a symlink, which the handler does not follow", path)
	case fi.Mode()&fs.ModeNamedPipe == 0:
		return fmt.Errorf("command file %s is not a FIFO (mode %s)", path, fi.Mode())
	}
	fd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW|syscall.O_CLOEXEC|syscall.O_NOCTTY, 0)
	if errors.Is(err, syscall.ENXIO) {
		return fmt.Errorf("command file %s: %w", path, nagios.ErrNoReader)
	}
	if err != nil {
		return fmt.Errorf("command file %s: %w", path, err)
	}
	return syscall.Close(fd)
}

// zoneState reports the zone rule's memory on this node: a held storm is
// WARNING (healing held on purpose), failed trials say a human must look.
func zoneState(r *report, d *fsutil.Dir, now time.Time) {
	st, err := breaker.ZoneStore{Dir: d, Name: nodestate.ZoneFile}.Current()
	switch {
	case err != nil:
		r.add(nagios.Warning, "zone rule state unreadable (the handler heals by the zone's view alone): "+err.Error(), "")
	case st.Held && st.Fails > 0:
		r.add(nagios.Warning, fmt.Sprintf("zone rule holding a storm since %s: %d trial round(s) failed, a human must look", ago(now, st.Since), st.Fails), "")
	case st.Held:
		r.add(nagios.Warning, fmt.Sprintf("zone rule holding a storm since %s: %d restarted at once while trials heal", ago(now, st.Since), st.Window), "")
	}
}
