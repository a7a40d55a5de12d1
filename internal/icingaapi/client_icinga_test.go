package icingaapi

// Tests against a real Icinga 2 (the lab's API-only instance, loopback, a
// port from the kernel): skipped without icinga2, failed under CI=true.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/engine"
	"github.com/selfheal/selfheal/internal/lab/testutil"
)

// author is what the handler signs with (handler.Author; not imported:
// the handler imports this package).
const author = "handle_worker"

// crafted would match every comment if it were pasted into a filter.
const crafted = `svc" || true || "`

// nasty is a real service whose name holds quotes and a backslash.
const nasty = `it's "q" \ || true`

const checkScript = `#!/bin/sh
read s < "$1"
case "$s" in
0) echo "lab ok | 'a b'=1s;2;3 proc::x=1 y=2" ;;
*) echo "lab critical | 'a b'=5s;2;3 proc::x=9 y=7" ;;
esac
exit "$s"
`

// The EventCommand's view: what the macros render, one call a line.
const dumpScript = `#!/bin/sh
printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$(dirname "$0")/dump.calls"
`

const labObjects = `
object CheckCommand "lab_check" { command = [ LabDir + "/check.sh", "$service.vars.lab_state$" ] }
object EventCommand "lab_dump" {
  command = [ LabDir + "/dump.sh", "$host.name$", "$service.name$", "$service.state$", "$service.state_type$",
    "$service.last_state_change$", "$service.perfdata$" ]
}
template Service "lab" {
  check_command = "lab_check"
  max_check_attempts = 1
  check_interval = 1s
  retry_interval = 1s
  vars.lab_state = LabDir + "/state-ok"
}
object Host "h1" {
  address = "127.0.0.1"
  check_command = "dummy"
  vars.dummy_state = 0
  check_interval = 1s
}
object Service "svc" {
  import "lab"
  host_name = "h1"
  event_command = "lab_dump"
  vars.lab_state = LabDir + "/state-svc"
  vars.selfheal = true
}
object Service "other" {
  import "lab"
  host_name = "h1"
}
object Service "slow" {
  import "lab"
  host_name = "h1"
  check_interval = 300s
  retry_interval = 300s
  vars.selfheal = true
}
object Service NastyName {
  import "lab"
  host_name = "h1"
  vars.selfheal = true
}
`

type rig struct {
	api      *engine.APIInstance
	dir      string
	password string
	exact    []string // the permissions docs/icinga-api.md lists
	version  string
}

var (
	rigOnce sync.Once
	theRig  *rig
	rigErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if theRig != nil {
		theRig.api.Close()
		os.RemoveAll(theRig.dir)
	}
	os.Exit(code)
}

// docPermissions returns the entries of each "permissions = [ ... ]"
// array in docs/icinga-api.md's icinga blocks, one entry a line.
func docPermissions(root string) ([][]string, error) {
	b, err := os.ReadFile(filepath.Join(root, "docs", "icinga-api.md"))
	if err != nil {
		return nil, err
	}
	var blocks [][]string
	var cur []string
	in := false
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(l, "permissions = ["):
			in, cur = true, nil
		case in && l == "]":
			in = false
			blocks = append(blocks, cur)
		case in:
			cur = append(cur, strings.TrimSuffix(l, ","))
		}
	}
	if len(blocks) != 2 {
		return nil, fmt.Errorf("docs/icinga-api.md: %d permission blocks, want 2 (exact, narrowed)", len(blocks))
	}
	return blocks, nil
}

// lab starts the shared instance once: users "selfheal" (the documented
// permissions), "narrow" (the documented filter lambdas), "cert" (the
// documented permissions, by client certificate) and "minus-N" (all but
// the Nth).
func lab(t *testing.T) *rig {
	t.Helper()
	bin := testutil.LookTool(t, "icinga2", "/usr/sbin/icinga2")
	rigOnce.Do(func() { theRig, rigErr = startRig(t, bin) })
	if rigErr != nil {
		t.Fatal(rigErr)
	}
	return theRig
}

func startRig(t *testing.T, bin string) (*rig, error) {
	blocks, err := docPermissions(testutil.ModuleRoot(t))
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "icingaapi-")
	if err != nil {
		return nil, err
	}
	for name, body := range map[string]string{"check.sh": checkScript, "dump.sh": dumpScript, "state-ok": "0\n", "state-svc": "0\n"} {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), mode); err != nil {
			return nil, err
		}
	}
	r := &rig{dir: dir, password: "pw-" + strconv.FormatInt(time.Now().UnixNano(), 36), exact: blocks[0]}
	users := []engine.APIUser{
		{Name: "selfheal", Password: r.password, Permissions: blocks[0]},
		{Name: "narrow", Password: r.password, Permissions: blocks[1]},
		{Name: "cert", ClientCN: "selfheal-client", Permissions: blocks[0]},
	}
	for i := range blocks[0] {
		less := append(append([]string{}, blocks[0][:i]...), blocks[0][i+1:]...)
		users = append(users, engine.APIUser{Name: "minus-" + strconv.Itoa(i), Password: r.password, Permissions: less})
	}
	a, err := engine.NewAPI(engine.APIConfig{
		Binary: bin, Objects: labObjects, Users: users, ClientCNs: []string{"selfheal-client"},
		Resources: map[string]string{"LabDir": dir, "NastyName": nasty},
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	r.api = a
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if out, err := a.Validate(ctx); err != nil {
		return r, fmt.Errorf("%w\n%s", err, out)
	}
	if err := a.Start(ctx); err != nil {
		return r, err
	}
	// Not "slow": Icinga puts a first check anywhere in its 300 s.
	for _, s := range []string{"svc", "other", nasty} {
		if err := waitAttrs(ctx, a, s, func(m map[string]any) bool { return m["last_check_result"] != nil }); err != nil {
			return r, fmt.Errorf("service %q never checked: %w", s, err)
		}
	}
	return r, nil
}

// waitAttrs polls h1!service through the lab's own user until ok.
func waitAttrs(ctx context.Context, a *engine.APIInstance, service string, ok func(map[string]any) bool, attrs ...string) error {
	attrs = append(attrs, "last_check_result")
	var last error
	for {
		m, err := a.ServiceAttrs(ctx, "h1", service, attrs...)
		if err == nil && ok(m) {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (r *rig) client(t *testing.T, user string) *Client {
	t.Helper()
	c, err := New(Config{URL: r.api.URL, CAFile: r.api.CAFile, ServerName: r.api.NodeName, User: user, Password: r.password})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestRealCommentCycle: add-comment, read back, remove, gone; expiry sent
// and kept by Icinga 2.13.
func TestRealCommentCycle(t *testing.T) {
	r := lab(t)
	c := r.client(t, "selfheal")
	ctx := ctxFor(t, 30*time.Second)

	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.User != "selfheal" || len(info.Permissions) != len(r.exact) {
		t.Errorf("info %+v, want user selfheal with %d permissions", info, len(r.exact))
	}
	r.version = info.Version
	t.Logf("Icinga %s, permissions %q", info.Version, info.Permissions)

	before := time.Now().Add(-time.Second)
	name, err := c.AddComment(ctx, "h1", "svc", author, "restarted: the worker was down", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(name, "h1!svc!") {
		t.Errorf("comment name %q, want h1!svc!...", name)
	}
	cs, err := c.Comments(ctx, "h1", "svc", author)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Name != name || cs[0].Text != "restarted: the worker was down" || cs[0].Author != author ||
		cs[0].EntryTime.Before(before) || cs[0].EntryTime.After(time.Now()) {
		t.Fatalf("comments %+v, want the one added (%s)", cs, name)
	}
	if other, err := c.Comments(ctx, "h1", "svc", "someone else"); err != nil || len(other) != 0 {
		t.Errorf("comments by another author: %+v, %v", other, err)
	}
	if err := c.RemoveComment(ctx, name); err != nil {
		t.Fatal(err)
	}
	if cs, err := c.Comments(ctx, "h1", "svc", author); err != nil || len(cs) != 0 {
		t.Fatalf("after remove-comment: %+v, %v", cs, err)
	}
	err = c.RemoveComment(ctx, name)
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("removing it again: %v, want ErrNotFound", err)
	}
	t.Logf("removed twice: %v", err)

	// expiry: Icinga keeps it as the comment's expire_time.
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	name, err = c.AddComment(ctx, "h1", "svc", author, "expires", exp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.RemoveComment(ctx, name)
	res, err := c.call(ctx, "q", "/v1/objects/comments", true, map[string]any{"comment": name, "attrs": []string{"expire_time"}}, maxQueryBody)
	if err != nil || len(res) != 1 {
		t.Fatalf("reading the comment back: %v, %d results", err, len(res))
	}
	var o struct {
		Attrs struct {
			ExpireTime float64 `json:"expire_time"`
		} `json:"attrs"`
	}
	if err := json.Unmarshal(res[0], &o); err != nil || int64(o.Attrs.ExpireTime) != exp.Unix() {
		t.Errorf("expire_time %v (%v), want %d", o.Attrs.ExpireTime, err, exp.Unix())
	}
}

// readDump returns the EventCommand's calls.
func readDump(t *testing.T, dir string) [][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "dump.calls"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		f := strings.Split(l, "\t")
		if len(f) != 6 {
			t.Fatalf("malformed dump line %q", l)
		}
		out = append(out, f)
	}
	return out
}

// TestRealServiceMatchesMacros: what Service() reads is what the
// EventCommand got, byte for byte (fault id and perfdata).
func TestRealServiceMatchesMacros(t *testing.T) {
	r := lab(t)
	c := r.client(t, "selfheal")
	ctx := ctxFor(t, 60*time.Second)
	state := filepath.Join(r.dir, "state-svc")
	defer os.WriteFile(state, []byte("0\n"), 0o644)

	s, err := c.Service(ctx, "h1", "svc")
	if err != nil {
		t.Fatal(err)
	}
	if s.Host != "h1" || s.Name != "svc" || s.State != 0 || s.StateType != 1 || !s.Checked || s.DowntimeDepth != 0 ||
		s.Acknowledgement != 0 || s.HostState != 0 || !s.HostChecked || !s.HostReachable || s.HostDowntimeDepth != 0 {
		t.Errorf("OK service: %+v", s)
	}
	if s.Perfdata != "'a b'=1s;2;3 proc::x=1 proc::y=2" {
		t.Errorf("OK perfdata %q", s.Perfdata)
	}

	mark := len(readDump(t, r.dir))
	if err := os.WriteFile(state, []byte("2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var call []string
	for call == nil {
		for _, d := range readDump(t, r.dir)[mark:] {
			if d[1] == "svc" && d[2] == "CRITICAL" && d[3] == "HARD" {
				call = d
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal("no CRITICAL HARD event handler call")
		case <-time.After(100 * time.Millisecond):
		}
	}
	s, err = c.Service(ctx, "h1", "svc")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("macros: last_state_change %q perfdata %q; API: last_state_change %v", call[4], call[5], s.LastStateChange)
	if s.FaultID() != call[4] {
		t.Errorf("FaultID %q, $service.last_state_change$ %q", s.FaultID(), call[4])
	}
	if s.LastStateChange == float64(int64(s.LastStateChange)) {
		t.Logf("note: last_state_change %v happens to be whole", s.LastStateChange)
	}
	if s.Perfdata != call[5] {
		t.Errorf("Perfdata %q, $service.perfdata$ %q", s.Perfdata, call[5])
	}
	// Icinga's split, not the plugin's text: the multi-value prefix.
	if want := "'a b'=5s;2;3 proc::x=9 proc::y=7"; s.Perfdata != want {
		t.Errorf("Perfdata %q, want %q", s.Perfdata, want)
	}
	if s.State != 2 || s.StateType != 1 || !s.Checked {
		t.Errorf("CRITICAL service: %+v", s)
	}

	all, err := c.Services(ctx, [][2]string{{"h1", "svc"}, {"h1", "other"}, {"h1", "svc"}, {"h1", "gone"}, {"h1", nasty}})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || all[[2]string{"h1", "svc"}].State != 2 || all[[2]string{"h1", "other"}].State != 0 || all[[2]string{"h1", nasty}].Name != nasty {
		t.Errorf("Services: %+v", all)
	}
	if _, err := c.Service(ctx, "h1", "gone"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a missing service: %v, want ErrNotFound", err)
	}
}

// TestRealRescheduleCheck: next_check moves where asked; forced now, the
// check runs.
func TestRealRescheduleCheck(t *testing.T) {
	r := lab(t)
	c := r.client(t, "selfheal")
	ctx := ctxFor(t, 30*time.Second)
	next := time.Now().Add(1000 * time.Second)
	if err := c.RescheduleCheck(ctx, "h1", "slow", next, false); err != nil {
		t.Fatal(err)
	}
	m, err := r.api.ServiceAttrs(ctx, "h1", "slow", "next_check", "last_check")
	if err != nil {
		t.Fatal(err)
	}
	nc, _ := m["next_check"].(json.Number).Float64()
	if d := nc - unixFloat(next); d < -0.01 || d > 0.01 {
		t.Errorf("next_check %v, want %v", nc, unixFloat(next))
	}
	lc, _ := m["last_check"].(json.Number).Float64()
	asked := unixFloat(time.Now())
	if err := c.RescheduleCheck(ctx, "h1", "slow", time.Time{}, true); err != nil {
		t.Fatal(err)
	}
	err = waitAttrs(ctx, r.api, "slow", func(m map[string]any) bool {
		f, _ := m["last_check"].(json.Number).Float64()
		return f > lc && f >= asked
	}, "last_check")
	if err != nil {
		t.Errorf("forced check did not run (last_check was %v): %v", lc, err)
	}
}

// TestRealEachPermissionNeeded: with exactly the documented permissions
// every call works (the other tests); without any one of them the call
// that needs it fails with a permission error naming it.
func TestRealEachPermissionNeeded(t *testing.T) {
	r := lab(t)
	full := r.client(t, "selfheal")
	ctx := ctxFor(t, 60*time.Second)
	human, err := full.AddComment(ctx, "h1", "svc", author, "to remove", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	defer full.RemoveComment(ctx, human)
	calls := map[string]func(c *Client) error{
		`"objects/query/Service"`: func(c *Client) error { _, err := c.Service(ctx, "h1", "svc"); return err },
		`"objects/query/Host"`:    func(c *Client) error { _, err := c.Service(ctx, "h1", "svc"); return err },
		`"objects/query/Comment"`: func(c *Client) error { _, err := c.Comments(ctx, "h1", "svc", author); return err },
		`"actions/add-comment"`: func(c *Client) error {
			n, err := c.AddComment(ctx, "h1", "svc", author, "x", time.Time{})
			if err == nil {
				full.RemoveComment(ctx, n)
			}
			return err
		},
		`"actions/remove-comment"`:   func(c *Client) error { return c.RemoveComment(ctx, human) },
		`"actions/reschedule-check"`: func(c *Client) error { return c.RescheduleCheck(ctx, "h1", "slow", time.Now().Add(time.Hour), false) },
		`"filter-expression"`:        func(c *Client) error { _, err := c.Comments(ctx, "h1", "svc", author); return err },
	}
	info, err := full.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range r.exact {
		call, ok := calls[p]
		if !ok {
			t.Errorf("docs/icinga-api.md lists %s, which no call here needs", p)
			continue
		}
		if err := call(full); err != nil {
			t.Errorf("%s's call with every permission: %v", p, err)
		}
		err := call(r.client(t, "minus-"+strconv.Itoa(i)))
		if p == `"filter-expression"` && !enforcesFilterExpression(info.Version) {
			// Not known before 2.14.9/2.15.4/2.16.2, enforced by default
			// from 2.17: on this version the call must still work.
			if err != nil {
				t.Errorf("without %s on Icinga %s: %v, want it unenforced", p, info.Version, err)
			}
			continue
		}
		perm := strings.ToLower(strings.Trim(p, `"`))
		if !errors.Is(err, ErrPermission) || !strings.Contains(err.Error(), perm) || strings.Contains(err.Error(), "\n") {
			t.Errorf("without %s: %v, want a one-line permission error naming it", p, err)
			continue
		}
		t.Logf("without %s: %v", p, err)
	}
	for p := range calls {
		found := false
		for _, q := range r.exact {
			found = found || q == p
		}
		if !found {
			t.Errorf("the client needs %s, which docs/icinga-api.md does not list", p)
		}
	}
}

// enforcesFilterExpression: Icinga 2.17 enforces the filter-expression
// permission by default.
func enforcesFilterExpression(version string) bool {
	m := regexp.MustCompile(`(\d+)\.(\d+)`).FindStringSubmatch(version)
	if m == nil {
		return true
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return major > 2 || major == 2 && minor >= 17
}

// TestRealNarrowPermissions: the documented filter lambdas let the
// handler act on services with vars.selfheal and on its own comments only.
func TestRealNarrowPermissions(t *testing.T) {
	r := lab(t)
	full, narrow := r.client(t, "selfheal"), r.client(t, "narrow")
	ctx := ctxFor(t, 30*time.Second)
	name, err := narrow.AddComment(ctx, "h1", "svc", author, "narrow", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if cs, err := narrow.Comments(ctx, "h1", "svc", author); err != nil || len(cs) != 1 || cs[0].Name != name {
		t.Errorf("narrow comments: %+v, %v", cs, err)
	}
	if err := narrow.RemoveComment(ctx, name); err != nil {
		t.Error(err)
	}
	if _, err := narrow.Service(ctx, "h1", "svc"); err != nil {
		t.Error(err)
	}
	if err := narrow.RescheduleCheck(ctx, "h1", "slow", time.Now().Add(time.Hour), false); err != nil {
		t.Error(err)
	}

	if _, err := narrow.AddComment(ctx, "h1", "other", author, "x", time.Time{}); !errors.Is(err, ErrPermission) {
		t.Errorf("add-comment on a service without vars.selfheal: %v, want ErrPermission", err)
	} else {
		t.Logf("add-comment on other: %v", err)
	}
	if _, err := narrow.Service(ctx, "h1", "other"); !errors.Is(err, ErrPermission) {
		t.Errorf("reading a service without vars.selfheal: %v, want ErrPermission", err)
	}
	humans, err := full.AddComment(ctx, "h1", "svc", "admin", "I am on it", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	defer full.RemoveComment(ctx, humans)
	if err := narrow.RemoveComment(ctx, humans); !errors.Is(err, ErrPermission) {
		t.Errorf("removing a human's comment: %v, want ErrPermission", err)
	}
	if cs, err := narrow.Comments(ctx, "h1", "svc", "admin"); err != nil || len(cs) != 0 {
		t.Errorf("a human's comments through the narrow user: %+v, %v, want none", cs, err)
	}
	if cs, err := full.Comments(ctx, "h1", "svc", "admin"); err != nil || len(cs) != 1 {
		t.Errorf("the human's comment is gone: %+v, %v", cs, err)
	}
}

// TestRealCraftedNames: names are literal: a name built to widen a filter
// matches nothing, a real service with quotes and a backslash works.
func TestRealCraftedNames(t *testing.T) {
	r := lab(t)
	c := r.client(t, "selfheal")
	ctx := ctxFor(t, 30*time.Second)
	mine, err := c.AddComment(ctx, "h1", "svc", author, "on svc", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.RemoveComment(ctx, mine)
	theirs, err := c.AddComment(ctx, "h1", nasty, author, "on nasty", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.RemoveComment(ctx, theirs)

	if cs, err := c.Comments(ctx, "h1", nasty, author); err != nil || len(cs) != 1 || cs[0].Name != theirs {
		t.Errorf("comments on %q: %+v, %v", nasty, cs, err)
	}
	if cs, err := c.Comments(ctx, "h1", crafted, author); err != nil || len(cs) != 0 {
		t.Errorf("comments on %q: %+v, %v, want none", crafted, cs, err)
	}
	if cs, err := c.Comments(ctx, `h1" || true || "`, "svc", author); err != nil || len(cs) != 0 {
		t.Errorf("comments with a crafted host: %+v, %v, want none", cs, err)
	}
	if _, err := c.AddComment(ctx, "h1", crafted, author, "x", time.Time{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("add-comment on %q: %v, want ErrNotFound", crafted, err)
	}
	if err := c.RescheduleCheck(ctx, "h1", crafted, time.Time{}, true); !errors.Is(err, ErrNotFound) {
		t.Errorf("reschedule-check on %q: %v, want ErrNotFound", crafted, err)
	}
	if err := c.RemoveComment(ctx, `h1!svc!" || true || "`); !errors.Is(err, ErrNotFound) {
		t.Errorf("remove-comment of a crafted name: %v, want ErrNotFound", err)
	}
	for _, s := range []string{"svc", "other", nasty} {
		cs, err := c.Comments(ctx, "h1", s, author)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]int{"svc": 1, nasty: 1}[s]; len(cs) != want {
			t.Errorf("%q has %d comments, want %d: %+v", s, len(cs), want, cs)
		}
	}
	if s, err := c.Service(ctx, "h1", nasty); err != nil || s.Name != nasty {
		t.Errorf("Service(%q): %+v, %v", nasty, s, err)
	}
}

// TestRealAuthFailures: wrong password, unknown user, wrong CA, wrong
// name; and a client certificate in place of a password.
func TestRealAuthFailures(t *testing.T) {
	r := lab(t)
	ctx := ctxFor(t, 30*time.Second)
	for _, user := range []string{"selfheal", "nobody"} {
		c, err := New(Config{URL: r.api.URL, CAFile: r.api.CAFile, ServerName: r.api.NodeName, User: user, Password: "wrong-secret"})
		if err != nil {
			t.Fatal(err)
		}
		err = c.Ping(ctx)
		var e *Error
		if !errors.Is(err, ErrUnauthorized) || !errors.As(err, &e) || e.Code != 401 || strings.Contains(err.Error(), "wrong-secret") {
			t.Errorf("%s with a wrong password: %v, want a 401 without the password", user, err)
		}
		t.Logf("%s: %v", user, err)
		c.Close()
	}

	other := filepath.Join(t.TempDir(), "other-ca.crt")
	writeCA(t, other)
	for name, cfg := range map[string]Config{
		"wrong CA":    {URL: r.api.URL, CAFile: other, ServerName: r.api.NodeName, User: "selfheal", Password: r.password},
		"wrong name":  {URL: r.api.URL, CAFile: r.api.CAFile, ServerName: "not-the-node", User: "selfheal", Password: r.password},
		"IP, no name": {URL: r.api.URL, CAFile: r.api.CAFile, User: "selfheal", Password: r.password},
	} {
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		err = c.Ping(ctx)
		if !errors.Is(err, ErrTLS) || strings.Contains(err.Error(), r.password) {
			t.Errorf("%s: %v, want ErrTLS", name, err)
		}
		t.Logf("%s: %v", name, err)
		c.Close()
	}

	cert, key, err := r.api.ClientCert("selfheal-client")
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{URL: r.api.URL, CAFile: r.api.CAFile, ServerName: r.api.NodeName, ClientCert: cert, ClientKey: key})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	info, err := c.Info(ctx)
	if err != nil || info.User != "cert" {
		t.Errorf("client certificate: %+v, %v, want user cert", info, err)
	}
	if _, err := c.Service(ctx, "h1", "svc"); err != nil {
		t.Error(err)
	}
}

// writeCA writes a CA certificate that did not sign Icinga's.
func writeCA(t *testing.T, path string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Icinga CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRealNoDeprecation: the api feature alone, command off, and Icinga
// logs no DEPRECATED line (runs last: after every call above).
func TestRealNoDeprecation(t *testing.T) {
	r := lab(t)
	lines, err := r.api.Deprecations()
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) > 0 {
		t.Errorf("Icinga logged deprecations:\n%s", strings.Join(lines, "\n"))
	}
	warnings, err := r.api.MainLogLines("warning/")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Icinga's warnings (for the record):\n%s", strings.Join(warnings, "\n"))
	if !r.api.Running() {
		t.Error("Icinga is not running any more")
	}
}
