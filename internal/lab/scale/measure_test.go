package scale

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/breaker"
	"github.com/selfheal/selfheal/internal/lab/engine"
	"github.com/selfheal/selfheal/internal/lab/rig"
)

// handlerUser is the handlers' API user: its requests are the ones the
// endpoints' logs count as the handlers'.
const handlerUser = "selfheal"

// fault is one crash the lab caused.
type fault struct {
	host, svc, addr string
	at              time.Time
	// check is when the engine had the service's next check scheduled at
	// the crash: a fault waits for it (anywhere in the 60 s interval)
	// before any load can slow it, so "after its check" compares runs
	// whose check phases differ.
	check time.Time
}

// sinceCheck is how long after the fault's first scheduled check (or
// the fault, if that check was due already) t came.
func (x fault) sinceCheck(t time.Time) time.Duration {
	return t.Sub(breaker.Later(x.at, x.check))
}

func addrsOf(fs []fault) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.addr)
	}
	return out
}

// hrec is one line of a handler log: an event or reevaluate run.
type hrec struct {
	Host     string          `json:"host"`
	Service  string          `json:"service"`
	State    string          `json:"state"`
	Type     string          `json:"state_type"`
	Source   string          `json:"source"`
	Mode     string          `json:"mode"`
	Decision string          `json:"decision"`
	Result   string          `json:"result"`
	HeldRaw  json.RawMessage `json:"held"`
	Elapsed  float64         `json:"elapsed_ms"`
	Time     time.Time       `json:"time"`
	Message  string          `json:"message"`
	endpoint string
}

// start is when the run began (the log has its end, in whole seconds).
func (r hrec) start() time.Time {
	return r.Time.Add(-time.Duration(r.Elapsed * float64(time.Millisecond)))
}

func readHandlerLogs(t *testing.T, z *engine.Zone) []hrec {
	var out []hrec
	for _, e := range z.Endpoints {
		f, err := os.Open(filepath.Join(e.Dir, "handle_worker.log"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			var r hrec
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				r.endpoint = e.Name
				out = append(out, r)
			}
		}
		f.Close()
	}
	slices.SortStableFunc(out, func(a, b hrec) int { return a.Time.Compare(b.Time) })
	return out
}

// stats are a set of faults' figures.
type stats struct {
	hard                int
	detect, heal, after string // after: HARD after the first scheduled check
	detectMedian        time.Duration
	late                int // restarted later than HARD + 5 s
}

func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	slices.Sort(ds)
	r := func(d time.Duration) string { return d.Round(100 * time.Millisecond).String() }
	return fmt.Sprintf("median %s, max %s (n=%d)", r(ds[len(ds)/2]), r(ds[len(ds)-1]), len(ds))
}

// judge times each fault: fault -> the handler's HARD CRITICAL run, and
// that run -> the restart (the fleet's own clock, when the agent's curl
// started the endpoint again).
func judge(fs []fault, f *fleet, logs []hrec) stats {
	var st stats
	var det, heal, after []time.Duration
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, x := range fs {
		hard := time.Time{}
		for _, r := range logs {
			if r.Host == x.host && r.Service == x.svc && r.Mode == "" && r.Source == "event" && r.State == "CRITICAL" && r.Type == "HARD" && !r.Time.Before(x.at.Truncate(time.Second)) {
				hard = r.start()
				break
			}
		}
		if hard.IsZero() {
			continue
		}
		st.hard++
		det = append(det, hard.Sub(x.at))
		if !x.check.IsZero() {
			after = append(after, x.sinceCheck(hard))
		}
		for _, at := range f.restarted[x.addr] {
			if at.After(x.at) {
				d := at.Sub(hard)
				heal = append(heal, d)
				if d > 5*time.Second {
					st.late++
				}
				break
			}
		}
	}
	st.detect, st.heal, st.after = spread(det), spread(heal), spread(after)
	if len(det) > 0 {
		st.detectMedian = det[len(det)/2]
	}
	return st
}

type commentStats struct {
	n, late int
	worst   time.Duration
}

// holds counts the storm's services held back, and checks each has its
// comment (read from the engine) within 15 s of its HARD state.
func holds(fs []fault, logs []hrec, api *apiClient, ctx context.Context) (int, commentStats) {
	var cs commentStats
	var r struct {
		Results []struct {
			Attrs struct {
				Host      string  `json:"host_name"`
				Service   string  `json:"service_name"`
				Author    string  `json:"author"`
				Text      string  `json:"text"`
				EntryTime float64 `json:"entry_time"`
			} `json:"attrs"`
		} `json:"results"`
	}
	_ = api.get(ctx, "/v1/objects/comments?attrs=host_name&attrs=service_name&attrs=author&attrs=text&attrs=entry_time", &r)
	comment := map[string]time.Time{}
	for _, c := range r.Results {
		if strings.Contains(c.Attrs.Text, "held back") {
			k := c.Attrs.Host + "!" + c.Attrs.Service
			at := time.Unix(0, int64(c.Attrs.EntryTime*1e9))
			if old, ok := comment[k]; !ok || at.Before(old) {
				comment[k] = at
			}
		}
	}
	want := map[string]fault{}
	for _, x := range fs {
		want[x.host+"!"+x.svc] = x
	}
	first := map[string]time.Time{}
	for _, l := range logs {
		k := l.Host + "!" + l.Service
		x, ok := want[k]
		if !ok || l.Mode != "" || l.Decision != "held" && !strings.Contains(string(l.HeldRaw), "breaker") || l.Time.Before(x.at.Truncate(time.Second)) {
			continue
		}
		if _, seen := first[k]; !seen {
			first[k] = l.start()
		}
	}
	for k, hard := range first {
		at, ok := comment[k]
		if !ok {
			continue
		}
		cs.n++
		d := at.Sub(hard)
		cs.worst = max(cs.worst, d)
		if d > 15*time.Second {
			cs.late++
		}
	}
	cs.worst = cs.worst.Round(100 * time.Millisecond)
	return len(first), cs
}

// auditRuns are the restarts the agents ran since t.
func auditRuns(hosts []*host, since time.Time) int {
	n := 0
	for _, h := range hosts {
		recs, _ := rig.ReadAudit(h.audit)
		for _, r := range recs {
			if r.Ran() && !r.Time.Before(since) {
				n++
			}
		}
	}
	return n
}

type flight struct {
	max  int
	last string
}

// inFlight is the most restarts of the storm at one moment that the
// engine had not yet shown OK: from the restart (the fleet's clock) to the
// handler's OK run for the service (the engine's recovery event).
func inFlight(fs []fault, f *fleet, logs []hrec) flight {
	type ev struct {
		at time.Time
		d  int
	}
	var evs []ev
	var last time.Time
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, x := range fs {
		var at time.Time
		for _, a := range f.restarted[x.addr] {
			if a.After(x.at) {
				at = a
				break
			}
		}
		if at.IsZero() {
			continue
		}
		last = breaker.Later(last, at)
		evs = append(evs, ev{at, +1})
		for _, r := range logs {
			if r.Host == x.host && r.Service == x.svc && r.Mode == "" && r.State == "OK" && r.start().After(at.Add(-time.Second)) {
				evs = append(evs, ev{r.start(), -1})
				break
			}
		}
	}
	slices.SortFunc(evs, func(a, b ev) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.d - b.d // an OK at the same moment goes first
	})
	var fl flight
	n := 0
	for _, e := range evs {
		n += e.d
		fl.max = max(fl.max, n)
	}
	fl.last = "-"
	if !last.IsZero() && len(fs) > 0 {
		fl.last = last.Sub(fs[0].at).Round(time.Second).String()
	}
	return fl
}

// reevalPasses sums the reevaluate runs since t: the most holds one pass
// saw, its longest pass, and the restarts they made.
func reevalPasses(logs []hrec, since time.Time) string {
	n, most, healed := 0, 0, 0
	var longest time.Duration
	for _, r := range logs {
		if r.Mode != "reevaluate" || r.Time.Before(since) {
			continue
		}
		n++
		var held int
		_ = json.Unmarshal(r.HeldRaw, &held)
		most = max(most, held)
		longest = max(longest, time.Duration(r.Elapsed*float64(time.Millisecond)))
		var h int
		if i := strings.Index(r.Message, "healed="); i >= 0 {
			fmt.Sscanf(r.Message[i:], "healed=%d", &h)
		}
		healed += h
	}
	return fmt.Sprintf("%d, at most %d holds in one, longest %s, %d restarts", n, most, longest.Round(100*time.Millisecond), healed)
}

// apiRequests counts the requests user made to the zone's endpoints
// (Icinga logs each: "Request: GET ... user: NAME").
func apiRequests(t *testing.T, z *engine.Zone, user string) int {
	n := 0
	for _, e := range z.Endpoints {
		lines, err := e.MainLogLines("user: " + user + ",")
		if err != nil {
			t.Log(err)
		}
		for _, l := range lines {
			if strings.Contains(l, "Request: ") {
				n++
			}
		}
	}
	return n
}

// sampler keeps Icinga's check latency every 5 s.
type sampler struct {
	mu sync.Mutex
	s  []sample
}

type sample struct {
	at       time.Time
	avg, max float64
}

func (l *sampler) run(ctx context.Context, api *apiClient) {
	for ctx.Err() == nil {
		var r struct {
			Results []struct {
				Status map[string]float64 `json:"status"`
			} `json:"results"`
		}
		if err := api.get(ctx, "/v1/status/CIB", &r); err == nil && len(r.Results) > 0 {
			l.mu.Lock()
			l.s = append(l.s, sample{time.Now(), r.Results[0].Status["avg_latency"], r.Results[0].Status["max_latency"]})
			l.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
		}
	}
}

// waitUnder waits (at most d) until the average latency is under secs
// after its last sample at or above it (since since), and says how long
// after since that was. A latency that stayed under secs is settled by
// the first sample after the moment after (the start-up's all-checked).
func (l *sampler) waitUnder(ctx context.Context, secs float64, since, after time.Time, d time.Duration) string {
	end := time.Now().Add(d)
	for ctx.Err() == nil && time.Now().Before(end) {
		l.mu.Lock()
		var last, hit time.Time
		for _, s := range l.s {
			if s.at.After(since) && s.avg >= secs {
				last = s.at
			}
		}
		for _, s := range l.s {
			if s.at.After(since) && s.at.After(last) && (!last.IsZero() || s.at.After(after)) && s.avg < secs {
				hit = s.at
				break
			}
		}
		l.mu.Unlock()
		if !hit.IsZero() {
			return hit.Sub(since).Round(time.Second).String()
		}
		time.Sleep(time.Second)
	}
	return "not within " + d.String()
}

func (l *sampler) peak(since time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var avg, mx float64
	for _, s := range l.s {
		if s.at.After(since) {
			avg, mx = max(avg, s.avg), max(mx, s.max)
		}
	}
	return fmt.Sprintf("avg %.2fs max %.2fs", avg, mx)
}

func (l *sampler) now() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.s) == 0 {
		return "?"
	}
	s := l.s[len(l.s)-1]
	return fmt.Sprintf("avg %.2fs max %.2fs", s.avg, s.max)
}

// lost says what the handlers last logged for up to 5 of the faults
// still down.
func lost(fs []fault, f *fleet, logs []hrec) string {
	last := map[[2]string]hrec{}
	for _, r := range logs {
		if r.Mode == "" {
			last[[2]string{r.Host, r.Service}] = r
		}
	}
	var out []string
	for _, x := range fs {
		if f.running(x.addr) {
			continue
		}
		if len(out) < 5 {
			r := last[[2]string{x.host, x.svc}]
			out = append(out, fmt.Sprintf("%s/%s: last event %s %s %s at %s on %s: %s", x.host, x.svc, r.State, r.Type, r.Result, r.Time.Format("15:04:05"), r.endpoint, r.Message))
		}
	}
	return "still down: " + strings.Join(out, "; ")
}

// keepFiles copies the handlers' logs and state dirs and the agents'
// audit logs under dst (SCALE_KEEP), for a run to be read afterwards.
func keepFiles(t *testing.T, dst string, z *engine.Zone, dir string) {
	for _, e := range z.Endpoints {
		to := filepath.Join(dst, e.Name)
		if err := os.MkdirAll(to, 0o755); err != nil {
			t.Logf("keep: %v", err)
			return
		}
		if err := exec.Command("cp", "-a", filepath.Join(e.Dir, "handle_worker.log"), filepath.Join(e.Dir, "handler-state"), to).Run(); err != nil {
			t.Logf("keep %s: %v", e.Name, err)
		}
	}
	audits, _ := filepath.Glob(filepath.Join(dir, "audit-*.log"))
	if err := exec.Command("cp", append(append([]string{"-a"}, audits...), dst)...).Run(); err != nil {
		t.Logf("keep audits: %v", err)
	}
	t.Logf("kept in %s", dst)
}
