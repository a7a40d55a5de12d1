package status

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/nagios"
)

const full = `{
  "status": "ok",
  "message": "processed 120 jobs in the last minute",
  "heartbeat": "2026-11-24T10:00:00Z",
  "started_at": "2026-11-24T09:00:00Z",
  "version": "1.4.2",
  "checks":  [{"name": "database", "status": "ok", "message": "select 1 took 3 ms"}],
  "metrics": [{"name": "queue_depth", "value": 12, "uom": "", "min": 0, "max": 1000}]
}`

func TestParseFull(t *testing.T) {
	d, err := Parse([]byte(full))
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != "ok" || d.Version != "1.4.2" || len(d.Checks) != 1 || len(d.Metrics) != 1 {
		t.Fatalf("parsed %+v", d)
	}
	if !d.Heartbeat.Equal(time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("heartbeat %v", d.Heartbeat)
	}
	if m := d.Metrics[0]; m.Value != 12 || *m.Min != 0 || *m.Max != 1000 {
		t.Errorf("metric %+v", m)
	}
	// The shape demo_worker serves must survive a round trip.
	b, _ := json.Marshal(d)
	d2, err := Parse(b)
	if err != nil || d2.Message != d.Message || !d2.StartedAt.Equal(*d.StartedAt) {
		t.Fatalf("round trip: %v %+v", err, d2)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, body string
		want       error
	}{
		{"only status", `{"status":"OK"}`, nil},
		{"mixed case", `{"status":"Warning","checks":[{"name":"a","status":"CRITICAL"}]}`, nil},
		{"unknown fields ignored", `{"status":"ok","extra":{"x":[1,2]}}`, nil},
		{"empty", ``, ErrMalformed},
		{"not json", `<html>ok</html>`, ErrMalformed},
		{"array", `[{"status":"ok"}]`, ErrMalformed},
		{"truncated", `{"status":"ok"`, ErrMalformed},
		{"trailing data", `{"status":"ok"} {"status":"critical"}`, ErrMalformed},
		{"wrong type", `{"status":0}`, ErrMalformed},
		{"bad time", `{"status":"ok","heartbeat":"yesterday"}`, ErrMalformed},
		{"huge number", `{"status":"ok","metrics":[{"name":"x","value":1e999}]}`, ErrMalformed},
		{"null", `null`, ErrInvalid},
		{"missing status", `{"message":"hi"}`, ErrInvalid},
		{"blank status", `{"status":"  "}`, ErrInvalid},
		{"unknown word", `{"status":"fine"}`, ErrUnknownStatus},
		{"unknown check word", `{"status":"ok","checks":[{"name":"db","status":"meh"}]}`, ErrUnknownStatus},
		{"nameless check", `{"status":"ok","checks":[{"status":"ok"}]}`, ErrInvalid},
		{"metric without value", `{"status":"ok","metrics":[{"name":"workers"}]}`, ErrMalformed},
		{"metric with null value", `{"status":"ok","metrics":[{"name":"workers","value":null}]}`, ErrMalformed},
		{"metric value zero", `{"status":"ok","metrics":[{"name":"workers","value":0,"min":0}]}`, nil},
		{"nameless metric", `{"status":"ok","metrics":[{"value":1}]}`, ErrInvalid},
		{"long name", `{"status":"ok","metrics":[{"name":"` + strings.Repeat("n", 200) + `","value":1}]}`, ErrInvalid},
		{"scope self", `{"status":"ok","checks":[{"name":"db","status":"ok","scope":"self"}]}`, nil},
		{"scope dependency any case", `{"status":"critical","checks":[{"name":"db","status":"critical","scope":" Dependency "}]}`, nil},
		{"scope empty is self", `{"status":"ok","checks":[{"name":"db","status":"ok","scope":""}]}`, nil},
		{"unknown scope", `{"status":"ok","checks":[{"name":"db","status":"ok","scope":"upstream"}]}`, ErrInvalid},
		{"scope of the wrong type", `{"status":"ok","checks":[{"name":"db","status":"ok","scope":1}]}`, ErrMalformed},
		{"too many checks", `{"status":"ok","checks":[` + strings.TrimSuffix(strings.Repeat(`{"name":"a","status":"ok"},`, MaxChecks+1), ",") + `]}`, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.body))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParseScope(t *testing.T) {
	for w, want := range map[string]Scope{"": ScopeSelf, "self": ScopeSelf, " SELF ": ScopeSelf,
		"dependency": ScopeDependency, "Dependency": ScopeDependency} {
		if got, ok := ParseScope(w); !ok || got != want {
			t.Errorf("ParseScope(%q) = %v %v", w, got, ok)
		}
	}
	for _, w := range []string{"dep", "dependencies", "other", "self,dependency"} {
		if got, ok := ParseScope(w); ok || got != ScopeSelf {
			t.Errorf("ParseScope(%q) = %v %v, want self false", w, got, ok)
		}
	}
	d, err := Parse([]byte(`{"status":"critical","checks":[{"name":"db","status":"critical","scope":"dependency"}]}`))
	if err != nil || d.Checks[0].Scope != "dependency" {
		t.Fatalf("scope not kept: %+v %v", d, err)
	}
}

func TestReadBody(t *testing.T) {
	b, err := ReadBody(strings.NewReader("hello"), 5)
	if err != nil || string(b) != "hello" {
		t.Fatalf("exact limit: %q %v", b, err)
	}
	_, err = ReadBody(strings.NewReader("hello!"), 5)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over limit: %v", err)
	}
	// An endless body stops at limit+1 bytes.
	r := &countingReader{}
	if _, err := ReadBody(r, 1000); !errors.Is(err, ErrTooLarge) || r.n > 1001+512 {
		t.Fatalf("endless body: err %v, read %d bytes", err, r.n)
	}
	b, err = ReadBody(bytes.NewReader(make([]byte, 10)), 0)
	if err != nil || len(b) != 10 {
		t.Fatalf("default limit: %d %v", len(b), err)
	}
}

type countingReader struct{ n int }

func (c *countingReader) Read(p []byte) (int, error) {
	if len(p) > 512 {
		p = p[:512]
	}
	for i := range p {
		p[i] = 'x'
	}
	c.n += len(p)
	return len(p), nil
}

var _ io.Reader = (*countingReader)(nil)

func TestStates(t *testing.T) {
	for w, want := range map[string]nagios.State{"ok": nagios.OK, " OK ": nagios.OK, "Warning": nagios.Warning,
		"CRITICAL": nagios.Critical, "unknown": nagios.Unknown,
		// Lower-casing folds these to contract words (see ParseState).
		"o\u212a": nagios.OK, "cr\u0130tical": nagios.Critical} {
		if got, ok := ParseState(w); !ok || got != want {
			t.Errorf("ParseState(%q) = %v %v", w, got, ok)
		}
	}
	for _, w := range []string{"crit", "warn\u0131ng", "", "2"} {
		if got, ok := ParseState(w); ok || got != nagios.Unknown {
			t.Errorf("ParseState(%q) = %v %v, want UNKNOWN false", w, got, ok)
		}
	}
	// The worst-of order check_worker combines these words with.
	worst := []struct{ a, b, want nagios.State }{
		{nagios.OK, nagios.OK, nagios.OK}, {nagios.OK, nagios.Unknown, nagios.Unknown}, {nagios.Unknown, nagios.Warning, nagios.Warning},
		{nagios.Warning, nagios.Unknown, nagios.Warning}, {nagios.Critical, nagios.Warning, nagios.Critical}, {nagios.Unknown, nagios.Critical, nagios.Critical},
	}
	for _, w := range worst {
		if got := nagios.Worst(w.a, w.b); got != w.want {
			t.Errorf("Worst(%v,%v) = %v", w.a, w.b, got)
		}
	}
	if nagios.Unknown.String() != "UNKNOWN" || nagios.Critical.String() != "CRITICAL" {
		t.Error("String")
	}
}

// FuzzParse: Parse never panics, and whatever it accepts is a valid
// document whose every status word is known.
func FuzzParse(f *testing.F) {
	f.Add([]byte(full))
	f.Add([]byte(`{"status":"ok"}`))
	f.Add([]byte(`{"status":"CRITICAL","checks":[{"name":"x","status":"warning"}]}`))
	f.Add([]byte(`{"status":"ok","metrics":[{"name":"q","value":-1.5,"min":0}]}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"status":"critical","checks":[{"name":"db","status":"critical","scope":"dependency"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnknownStatus) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if _, ok := ParseState(d.Status); !ok {
			t.Fatalf("accepted status %q", d.Status)
		}
		for _, c := range d.Checks {
			if _, ok := ParseScope(c.Scope); !ok {
				t.Fatalf("accepted scope %q", c.Scope)
			}
			if _, ok := ParseState(c.Status); !ok || c.Name == "" {
				t.Fatalf("accepted check %+v", c)
			}
		}
		if len(d.Checks) > MaxChecks || len(d.Metrics) > MaxMetrics {
			t.Fatal("accepted too many entries")
		}
	})
}
