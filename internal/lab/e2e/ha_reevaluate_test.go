package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/engine"
	"github.com/selfheal/selfheal/internal/lab/rig"
)

// haReevaluateWorkers: enough workers that each endpoint holds authority
// over at least one (Icinga splits them by a hash of the name, so the
// split is the same on every run).
const haReevaluateWorkers = 6

// TestHAReevaluateEachEndpoint: in a real two-endpoint Icinga 2 HA zone,
// with the shipped selfheal.conf and healer.conf and one node host per
// endpoint (vars.selfheal_endpoint, as hosts.conf says for a zone), every
// endpoint re-asks its own holds. Auto-healing is paused on both endpoints
// (each keeps its pauses in its own state dir); one worker whose checks
// each endpoint runs crashes; each endpoint's handler holds its own;
// resumed on both, each hold is healed by that endpoint's own reevaluate.
// Unpinned, the one reevaluate service ran on either endpoint, and the
// other endpoint's holds were never asked again (issue 20). Also: each
// node host's "selfheal node" check reads its own endpoint's state dir.
func TestHAReevaluateEachEndpoint(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Second)
	defer cancel()
	var nodes strings.Builder
	for _, ep := range []string{"lab-a", "lab-b"} { // NewZone's default endpoints
		fmt.Fprintf(&nodes, "object Host %q {\n  check_command = \"dummy\"\n  enable_active_checks = false\n"+
			"  vars.selfheal_node = true\n  vars.selfheal_endpoint = %q\n}\n", "node-"+ep, ep)
	}
	l := newAPIZone(t, ctx, haReevaluateWorkers, nodes.String(), "healer.conf")
	l.waitOK(l.workers, "start")
	state := func(ep string) string { return filepath.Join(l.z.Endpoint(ep).Dir, "handler-state") }

	// One worker per endpoint, among those whose checks it runs.
	mine := map[string]zoneWorker{}
	for _, w := range l.workers {
		who, err := l.z.WaitAuthorities(ctx, hostName, w.name, 1)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := mine[who[0]]; !ok {
			mine[who[0]] = w
		}
	}
	if len(mine) != len(l.z.Endpoints) {
		t.Fatalf("authority over the %d workers: %v; want a worker on each endpoint", len(l.workers), mine)
	}

	// Paused on both: the worker host, and a host named after the
	// endpoint (left paused, for the node check below).
	for _, e := range l.z.Endpoints {
		for _, host := range []string{hostName, "only-" + e.Name} {
			out, err := rig.Run(ctx, l.bin("handle_worker"), "pause", "--state-dir", state(e.Name), "--host", host,
				"--reason", "e2e deploy", "--for", "10m")
			if err != nil || !strings.Contains(out, "paused auto-healing for host "+host) {
				t.Fatalf("pause %s on %s: %v: %s", host, e.Name, err, out)
			}
		}
	}
	since := time.Now().Add(-time.Second) // the handler log has whole seconds
	for _, w := range mine {
		if err := w.w.Fault(ctx, "crash"); err != nil {
			t.Fatal(err)
		}
	}
	// record waits for a record in ep's handler log about svc.
	record := func(ep, svc, what string, match func(rig.HandlerRecord) bool) {
		t.Helper()
		for {
			recs, _ := rig.ReadHandlerLog(filepath.Join(l.z.Endpoint(ep).Dir, "handle_worker.log"))
			for _, r := range recs {
				var x struct {
					Service string    `json:"service"`
					Time    time.Time `json:"time"`
				}
				if json.Unmarshal([]byte(r.Raw), &x) == nil && x.Service == svc && !x.Time.Before(since) && match(r) {
					l.logf("%s: %s: %s", ep, what, r.Raw)
					return
				}
			}
			select {
			case <-ctx.Done():
				for _, r := range recs[max(0, len(recs)-8):] {
					t.Logf("%s: %s", ep, r.Raw)
				}
				t.Fatalf("%s: no %s of %s in its handler log", ep, what, svc)
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	for ep, w := range mine {
		record(ep, w.name, "held by the pause", func(r rig.HandlerRecord) bool { return r.Source == "event" && r.Held == "pause" })
	}

	// The node check of each node host reads its own endpoint's pauses.
	for _, e := range l.z.Endpoints {
		node, other := "node-"+e.Name, "only-"+e.Name
		for _, o := range l.z.Endpoints {
			if o != e {
				other = "only-" + o.Name
			}
		}
		seen := ""
		var forced time.Time
		for {
			// Forced now and then: the healer's interval is 5 minutes.
			if time.Since(forced) > 10*time.Second {
				if err := l.recheck(ctx, node, "selfheal node"); err != nil {
					t.Fatal(err)
				}
				forced = time.Now()
			}
			a, err := e.ServiceAttrs(ctx, node, "selfheal node", "last_check_result")
			cr, _ := a["last_check_result"].(map[string]any)
			out, _ := cr["output"].(string)
			src, _ := cr["check_source"].(string)
			if out != seen {
				first, _, _ := strings.Cut(out, "\n")
				l.logf("%s!selfheal node from %q: %s", node, src, first)
				seen = out
			}
			if err == nil && strings.Contains(out, "only-"+e.Name) {
				if src != e.Name || strings.Contains(out, other) {
					t.Fatalf("%s!selfheal node ran on %q: %q; want %s's own pauses", node, src, out, e.Name)
				}
				l.logf("%s!selfheal node ran on %s and names only its own pauses", node, src)
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s!selfheal node never named its endpoint's pause: last %q from %q (%v)", node, out, src, err)
			case <-time.After(250 * time.Millisecond):
			}
		}
	}

	for _, e := range l.z.Endpoints {
		if out, err := rig.Run(ctx, l.bin("handle_worker"), "resume", "--state-dir", state(e.Name), "--host", hostName); err != nil {
			t.Fatalf("resume on %s: %v: %s", e.Name, err, out)
		}
	}
	for ep, w := range mine {
		record(ep, w.name, "healed by its own reevaluate", func(r rig.HandlerRecord) bool {
			return r.Source == "reevaluate" && r.Result == "healed"
		})
	}
	healed := make([]zoneWorker, 0, len(mine))
	for _, w := range mine {
		healed = append(healed, w)
	}
	l.waitOK(healed, "after the resume")
	for _, e := range l.z.Endpoints {
		a, err := e.ServiceAttrs(ctx, "node-"+e.Name, rig.ReevaluateService, "last_check_result")
		cr, _ := a["last_check_result"].(map[string]any)
		if src, _ := cr["check_source"].(string); err != nil || src != e.Name {
			t.Fatalf("node-%s!%s last ran on %q (%v), want %s", e.Name, rig.ReevaluateService, src, err, e.Name)
		}
	}
	for ep, w := range mine {
		l.logf("%s: its hold of %s healed by its own reevaluate", ep, w.name)
	}
}

// recheck forces a check of host!service now, through every endpoint's
// API (whichever has authority schedules it).
func (l *apiZone) recheck(ctx context.Context, host, service string) error {
	ca, err := os.ReadFile(l.z.CAFile())
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		return fmt.Errorf("no certificate in %s", l.z.CAFile())
	}
	for _, e := range l.z.Endpoints {
		if err := recheckAt(ctx, roots, e, l.password, host, service); err != nil {
			return err
		}
	}
	return nil
}

func recheckAt(ctx context.Context, roots *x509.CertPool, e *engine.ZoneEndpoint, password, host, service string) error {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: e.Name, MinVersion: tls.VersionTLS12}}}
	body, _ := json.Marshal(map[string]any{"type": "Service", "force": true,
		"filter": "host.name == h && service.name == s", "filter_vars": map[string]string{"h": host, "s": service}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("https://127.0.0.1:%d/v1/actions/reschedule-check", e.APIPort), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.SetBasicAuth("selfheal", password)
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("reschedule-check %s!%s: HTTP %s", host, service, resp.Status)
	}
	return nil
}
