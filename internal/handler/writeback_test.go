package handler_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/handler"
	"github.com/selfheal/selfheal/internal/icingaapi"
	"github.com/selfheal/selfheal/internal/lab/rig/rigtest"
	"github.com/selfheal/selfheal/internal/nagios"
	"github.com/selfheal/selfheal/internal/nodestate"
)

// fakeIcinga is an Icinga 2 API on loopback that keeps the comments it is
// given, counts requests and TCP connections, and fails the actions named
// in fail.
type fakeIcinga struct {
	t        *testing.T
	srv      *httptest.Server
	mu       sync.Mutex
	reqs     []string // "POST /v1/actions/add-comment", ...
	conns    int
	comments map[string]string // name -> text
	next     int
	fail     map[string]bool // action paths answered 500
}

// newFakeIcinga starts the fake; the engine it returns makes a new client
// (a new process's) for each run.
func newFakeIcinga(t *testing.T) (*fakeIcinga, func() (handler.Engine, func())) {
	t.Helper()
	f := &fakeIcinga{t: t, comments: map[string]string{}, fail: map[string]bool{}}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	f.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.mu.Lock()
			f.conns++
			f.mu.Unlock()
		}
	}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return f, func() (handler.Engine, func()) {
		c, err := icingaapi.New(icingaapi.Config{URL: f.srv.URL, CAFile: ca, User: "selfheal", Password: "pw", Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return handler.IcingaEngine{Client: c}, c.Close
	}
}

func (f *fakeIcinga) serve(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	b, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(b, &body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, r.URL.Path)
	w.Header().Set("Content-Type", "application/json")
	if f.fail[r.URL.Path] {
		w.WriteHeader(500)
		io.WriteString(w, `{"error":500,"status":"lab: failing on purpose"}`)
		return
	}
	switch r.URL.Path {
	case "/v1/actions/add-comment":
		f.next++
		name := fmt.Sprintf("%s!c%d", body["service"], f.next)
		text, _ := body["comment"].(string)
		if _, ok := body["expiry"]; ok {
			text = "[expires] " + text
		}
		f.comments[name] = text
		io.WriteString(w, `{"results":[{"code":200,"legacy_id":1,"name":"`+name+`","status":"Successfully added comment"}]}`)
	case "/v1/actions/remove-comment":
		name, _ := body["comment"].(string)
		if _, ok := f.comments[name]; !ok {
			w.WriteHeader(404)
			io.WriteString(w, `{"error":404,"status":"No objects found."}`)
			return
		}
		delete(f.comments, name)
		io.WriteString(w, `{"results":[{"code":200,"status":"Successfully removed comment"}]}`)
	case "/v1/actions/reschedule-check":
		io.WriteString(w, `{"results":[{"code":200,"status":"Successfully rescheduled"}]}`)
	default:
		w.WriteHeader(404)
		io.WriteString(w, `{"error":404,"status":"not in the fake"}`)
	}
}

// take returns the requests and connections since the last call.
func (f *fakeIcinga) take() ([]string, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, c := f.reqs, f.conns
	f.reqs, f.conns = nil, 0
	return r, c
}

func (f *fakeIcinga) texts() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, t := range f.comments {
		out = append(out, t)
	}
	return out
}

// icingaFacts are what the sample EventCommand passes as macros.
func icingaFacts() handler.Facts {
	up := nagios.HostUp
	return handler.Facts{ServiceDowntime: 0, HostDowntime: 0, Ack: 0, HostState: &up, PerfdataGiven: true}
}

// TestIcingaWriteBackCost: what each kind of run asks of the API. An OK
// or a SOFT state with nothing of ours on record: no request and no
// connection (the engine's start runs the handler for every service). A
// heal: the zone rule's one read (the zone's failing services), then
// add-comment and reschedule-check, plus one remove-comment by the name
// on record when a comment is there, all on one connection.
// A volatile service's later runs for the same fault: nothing. A
// recovery after a failure: one remove by name.
func TestIcingaWriteBackCost(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	f, engine := newFakeIcinga(t)
	e.cfg.CommandFile = ""
	e.cfg.Facts = icingaFacts()
	step := func(what, state, typ, fault string, code int, wantReqs ...string) {
		t.Helper()
		var done func()
		e.cfg.Engine, done = engine()
		r := e.run(state, typ, 1, fault)
		done()
		reqs, conns := f.take()
		if r.Code != code || strings.Contains(r.Line, "not told") {
			t.Fatalf("%s: exit %d: %s", what, r.Code, r.Line)
		}
		if strings.Join(reqs, " ") != strings.Join(wantReqs, " ") {
			t.Fatalf("%s: requests %q, want %q", what, reqs, wantReqs)
		}
		if want := min(len(wantReqs), 1); conns != want {
			t.Fatalf("%s: %d connections for %d requests, want %d", what, conns, len(reqs), want)
		}
	}
	const add, del, resched = "/v1/actions/add-comment", "/v1/actions/remove-comment", "/v1/actions/reschedule-check"
	const zone = "/v1/objects/services"
	step("engine start", "OK", "HARD", "1764020000", 0)
	step("SOFT", "CRITICAL", "SOFT", "1764024000", 0)
	step("heal", "CRITICAL", "HARD", "1764024000", 0, zone, add, resched)
	step("volatile, same fault", "CRITICAL", "HARD", "1764024000", 0)
	step("volatile again", "CRITICAL", "HARD", "1764024000", 0)
	step("recovery keeps the success", "OK", "HARD", "1764024300", 0)
	step("engine restart", "OK", "HARD", "1764024300", 0)
	// The clock has not moved: the zone view the heal read (zone-view.json)
	// serves this node's runs for 2 s.
	step("next fault replaces the success", "CRITICAL", "HARD", "1764025000", 0, del, add, resched)
	if txt := f.texts(); len(txt) != 1 || !strings.HasPrefix(txt[0], "[expires] auto-restart ok") {
		t.Fatalf("comments %q: want one success, expiring", txt)
	}
	if l.Actions(t) != 2 {
		t.Fatalf("%d restarts, want 2", l.Actions(t))
	}
	// A failure stays (no expiry) until the recovery removes it by name.
	e.cfg.Conn.Port, e.cfg.Deadline = deadPort(t), 2*time.Second
	e.clk.Advance(5 * time.Second) // the zone view is read again
	step("failed heal", "CRITICAL", "HARD", "1764026000", 2, zone, del, add)
	if txt := f.texts(); len(txt) != 1 || !strings.HasPrefix(txt[0], "auto-restart failed") {
		t.Fatalf("comments %q: want the failure alone, persistent", txt)
	}
	step("recovery removes the failure", "OK", "HARD", "1764026300", 0, del)
	if txt := f.texts(); len(txt) != 0 {
		t.Fatalf("comments %q after the recovery", txt)
	}
	step("nothing left", "OK", "HARD", "1764026300", 0)
}

// TestIcingaWriteBackRetried: a comment the API refused is kept in the
// record, written by the next run for the service (or by reevaluate,
// TestReevaluateRetriesWriteBacks), and then known by its name.
func TestIcingaWriteBackRetried(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	f, engine := newFakeIcinga(t)
	e.cfg.CommandFile = ""
	e.cfg.Engine, _ = engine()
	e.cfg.Facts = icingaFacts()
	f.fail["/v1/actions/add-comment"] = true
	r := e.run("CRITICAL", "HARD", 1, "1764024000")
	if r.Code != 0 || !strings.Contains(r.Line, "not told") {
		t.Fatalf("heal with a failing add-comment: %d %s", r.Code, r.Line)
	}
	rec := e.record()
	if len(rec.Pending) != 1 || !strings.HasPrefix(rec.Pending[0].Cmd, "ADD_SVC_COMMENT;web1;Worker;0;handle_worker;auto-restart ok") || len(rec.Comments) != 0 {
		t.Fatalf("record after the failed write-back: %+v", rec)
	}
	f.take()
	delete(f.fail, "/v1/actions/add-comment")
	// The volatile service's next run: the comment is not repeated, but
	// the one that failed is written now (and the zone is not read: the
	// record says this fault's restart ran).
	r = e.run("CRITICAL", "HARD", 1, "1764024000")
	reqs, _ := f.take()
	if r.Code != 0 || strings.Join(reqs, " ") != "/v1/actions/add-comment" {
		t.Fatalf("retry: %d %s, requests %q", r.Code, r.Line, reqs)
	}
	rec = e.record()
	if len(rec.Pending) != 0 || len(rec.Comments) != 1 || rec.Comments[0].Name == "" {
		t.Fatalf("record after the retry: %+v", rec)
	}
	// At the recovery the success stays, and the record still knows it.
	e.run("OK", "HARD", 1, "1764024300")
	if reqs, _ := f.take(); len(reqs) != 0 {
		t.Fatalf("recovery: %q", reqs)
	}
	if rec = e.record(); len(rec.Comments) != 1 {
		t.Fatalf("record after the recovery: %+v", rec)
	}
}

// deadPort is a loopback port nothing listens on.
func deadPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return p
}

// TestReevaluateRetriesWriteBacks: a comment the API refused during a
// heal is written by reevaluate's next run, with no event for the
// service, and the record then knows its name.
func TestReevaluateRetriesWriteBacks(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	f, engine := newFakeIcinga(t)
	e.cfg.CommandFile = ""
	e.cfg.Engine, _ = engine()
	e.cfg.Facts = icingaFacts()
	f.fail["/v1/actions/add-comment"] = true
	if r := e.run("CRITICAL", "HARD", 1, "1764024000"); r.Code != 0 || !strings.Contains(r.Line, "not told") {
		t.Fatalf("heal: %d %s", r.Code, r.Line)
	}
	reeval := func() {
		t.Helper()
		eng, done := engine()
		defer done()
		res := handler.Reevaluate(context.Background(), handler.ReevalConfig{StateDir: e.state, Key: l.Key, Engine: eng,
			Deadline: 10 * time.Second, PerRequest: 5 * time.Second}, e.deps())
		if res.Code != 0 {
			t.Fatalf("reevaluate: %d %s", res.Code, res.Line)
		}
	}
	reeval() // still failing: kept
	if rec := e.record(); len(rec.Pending) != 1 || rec.Pending[0].Tries != 2 {
		t.Fatalf("after a failed retry: %+v", rec.Pending)
	}
	delete(f.fail, "/v1/actions/add-comment")
	f.take()
	reeval()
	if reqs, _ := f.take(); strings.Join(reqs, " ") != "/v1/actions/add-comment" {
		t.Fatalf("reevaluate's requests: %q", reqs)
	}
	rec := e.record()
	if len(rec.Pending) != 0 || len(rec.Comments) != 1 || rec.Comments[0].Name == "" || rec.Comments[0].Key != "auto-restart ok|1764024000" {
		t.Fatalf("record after reevaluate: %+v", rec)
	}
	if txt := f.texts(); len(txt) != 1 || !strings.Contains(txt[0], "auto-restart ok") {
		t.Fatalf("comments: %q", txt)
	}
	reeval() // nothing left to do
	if reqs, _ := f.take(); len(reqs) != 0 {
		t.Fatalf("reevaluate with nothing pending: %q", reqs)
	}
}

// TestReevaluateExpiresNagiosComments: Nagios' ADD_SVC_COMMENT has no
// expiry, so reevaluate removes the handler's routine comments that
// outlived their lifetime (the success after a day, a hold after a week),
// by id; a persistent one (a human must look) and a human's stay.
func TestReevaluateExpiresNagiosComments(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	now := e.clk.Now()
	old, older := now.Add(-25*time.Hour).Unix(), now.Add(-8*24*time.Hour).Unix()
	cm := func(id, author, text string, persistent int, at int64) string {
		return fmt.Sprintf("servicecomment {\n\thost_name=web1\n\tservice_description=Worker\n\tcomment_id=%s\n\tauthor=%s\n\tcomment_data=%s\n\tpersistent=%d\n\tentry_time=%d\n\t}\n", id, author, text, persistent, at)
	}
	sd := statusDat(t, now,
		cm("1", "handle_worker", "auto-restart ok in 1s (restart demo via x after CRITICAL HARD 3)", 0, old),
		cm("2", "handle_worker", "auto-restart ok in 1s (restart demo via x after CRITICAL HARD 3)", 0, now.Unix()-60),
		cm("3", "handle_worker", "auto-restart failed: x; a human must look", 1, older),
		cm("4", "handle_worker", "auto-restart held back (downtime): the service is in scheduled downtime", 0, old),
		cm("5", "handle_worker", "auto-restart held back (downtime): the service is in scheduled downtime", 0, older),
		cm("6", "alice", "auto-restart ok in 1s", 0, older))
	res := handler.Reevaluate(context.Background(), handler.ReevalConfig{StateDir: e.state, Key: l.Key, Status: sd,
		CommandFile: e.fifo, Deadline: 10 * time.Second, PerRequest: 5 * time.Second}, e.deps())
	if res.Code != 0 {
		t.Fatalf("reevaluate: %d %s", res.Code, res.Line)
	}
	ts := now.Unix()
	if c, want := e.commands(), fmt.Sprintf("[%d] DEL_SVC_COMMENT;1\n[%d] DEL_SVC_COMMENT;5\n", ts, ts); c != want {
		t.Fatalf("command file:\n got %q\nwant %q", c, want)
	}
}

// TestConfigErrorCommentRecorded: the comment main writes for its own
// configuration error is on record, so the recovery removes it by name.
func TestConfigErrorCommentRecorded(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	f, engine := newFakeIcinga(t)
	eng, done := engine()
	defer done()
	msg := "auto-healing impossible: handle_worker configuration error: key file: mode 0644; a human must look"
	if err := handler.ConfigError(context.Background(), eng, nodestate.Store{Dir: e.state}, "web1", "Worker", msg, time.Now()); err != nil {
		t.Fatal(err)
	}
	if txt := f.texts(); len(txt) != 1 || txt[0] != msg {
		t.Fatalf("comments %q", txt)
	}
	e.cfg.CommandFile, e.cfg.Engine, e.cfg.Facts = "", eng, icingaFacts()
	if r := e.run("OK", "HARD", 1, "1764026300"); r.Code != 0 {
		t.Fatalf("recovery: %s", r.Line)
	}
	if txt := f.texts(); len(txt) != 0 {
		t.Fatalf("comments after the recovery: %q", txt)
	}
}

// TestVolatileOneSuccessComment: under Nagios too, a volatile service's
// later runs for a healed fault (the agent answers "already") write
// neither a second success comment nor a second forced re-check.
func TestVolatileOneSuccessComment(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	e.cfg.Facts = handler.NoFacts
	expect(t, e.run("CRITICAL", "HARD", 3, "7"), 0, "ok in")
	if c := e.commands(); strings.Count(c, "ADD_SVC_COMMENT") != 1 || strings.Count(c, "SCHEDULE_FORCED_SVC_CHECK") != 1 {
		t.Fatalf("the heal wrote %q", c)
	}
	for range 3 {
		expect(t, e.run("CRITICAL", "HARD", 3, "7"), 0, "not run again")
		if c := e.commands(); c != "" {
			t.Fatalf("a volatile service's later run wrote %q", c)
		}
	}
	if l.Actions(t) != 1 {
		t.Fatalf("%d restarts, want 1", l.Actions(t))
	}
}

// TestReevaluateRetryAtUnread: through the API, a hold the agent allows
// only later is not read before then (a host whose agent breaker opened
// holds dozens); at its time it is read.
func TestReevaluateRetryAtUnread(t *testing.T) {
	l := rigtest.StartHandlerListener(t)
	e := newEnv(t, l)
	f, engine := newFakeIcinga(t)
	now := e.clk.Now()
	rec := nodestate.Record{Host: "web1", Service: "Worker", At: now, Source: "event", Verb: "restart", Agent: l.Agent, Fault: "60",
		Result: "held", Outcome: "breaker", Summary: "the agent's breaker is open",
		Held: &nodestate.Held{Rule: "agent-breaker", Text: "auto-healing deferred (agent-breaker)", Since: now, RetryAt: now.Add(2 * time.Minute),
			Fault: "60", Ask: nodestate.Ask{Address: l.Host, Port: l.Port, Agent: l.Agent, Target: "demo", Action: "restart"}}}
	if err := (nodestate.Store{Dir: e.state}).Write(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	reeval := func() handler.ReevalResult {
		eng, done := engine()
		defer done()
		return handler.Reevaluate(context.Background(), handler.ReevalConfig{StateDir: e.state, Key: l.Key, Engine: eng,
			Deadline: 10 * time.Second, PerRequest: 5 * time.Second}, e.deps())
	}
	r := reeval()
	if reqs, _ := f.take(); len(reqs) != 0 || len(r.Items) != 1 || r.Items[0].Text != "the agent allows a restart in 2m0s (not read before then)" {
		t.Fatalf("before its time: requests %q, items %+v", reqs, r.Items)
	}
	// Its time comes during a pass (the scale lab's take 30 s and more):
	// still not read, so kept, not cleared as gone from the engine.
	e.clk.Advance(2*time.Minute - time.Second)
	deps := e.deps()
	clock := deps.Now
	deps.Now = func() time.Time { t := clock(); e.clk.Advance(time.Second); return t }
	eng, done := engine()
	r = handler.Reevaluate(context.Background(), handler.ReevalConfig{StateDir: e.state, Key: l.Key, Engine: eng,
		Deadline: 10 * time.Second, PerRequest: 5 * time.Second}, deps)
	done()
	if reqs, _ := f.take(); len(reqs) != 0 || len(r.Items) != 1 || r.Items[0].Outcome != "waiting" || e.record().Held == nil {
		t.Fatalf("its time came during the pass: requests %q, items %+v, record %+v", reqs, r.Items, e.record())
	}
	r = reeval()
	if reqs, _ := f.take(); len(reqs) != 1 || len(r.Items) != 1 || r.Items[0].Outcome != "waiting" || l.Actions(t) != 0 {
		t.Fatalf("at its time: requests %q, items %+v, %d actions", reqs, r.Items, l.Actions(t))
	}
}
