package check

import (
	"net/textproto"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/nagios"
)

func TestParseTimeout(t *testing.T) {
	tests := []struct {
		in    string
		d     time.Duration
		state nagios.State
		bad   bool
	}{
		{"10", 10 * time.Second, nagios.Critical, false},
		{"2.5", 2500 * time.Millisecond, nagios.Critical, false},
		{"30s", 30 * time.Second, nagios.Critical, false},
		{"10:UNKNOWN", 10 * time.Second, nagios.Unknown, false},
		{"10:warning", 10 * time.Second, nagios.Warning, false},
		{"10:3", 10 * time.Second, nagios.Unknown, false},
		{"10:0", 10 * time.Second, nagios.OK, false},
		{"0", 0, 0, true}, {"-1", 0, 0, true}, {"abc", 0, 0, true}, {"10:4", 0, 0, true},
		{"10:maybe", 0, 0, true}, {"2h", 0, 0, true}, {"", 0, 0, true}, {"NaN", 0, 0, true},
	}
	for _, tt := range tests {
		d, st, err := ParseTimeout(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("%q accepted as %v %v", tt.in, d, st)
			}
			continue
		}
		if err != nil || d != tt.d || st != tt.state {
			t.Errorf("%q = %v %v %v", tt.in, d, st, err)
		}
	}
}

func TestParseMaxAge(t *testing.T) {
	tests := []struct {
		in         string
		warn, crit time.Duration
		bad        bool
	}{
		{"60,300", time.Minute, 5 * time.Minute, false},
		{",5m", 0, 5 * time.Minute, false},
		{"90s,", 90 * time.Second, 0, false},
		{"0.5,1", 500 * time.Millisecond, time.Second, false},
		{"300", 0, 0, true}, {",", 0, 0, true}, {"x,1", 0, 0, true}, {"1,-5", 0, 0, true},
		{"5,3", 0, 0, true}, {"60,60", time.Minute, time.Minute, false},
	}
	for _, tt := range tests {
		w, c, err := ParseMaxAge(tt.in)
		if tt.bad != (err != nil) || w != tt.warn || c != tt.crit {
			t.Errorf("%q = %v %v %v", tt.in, w, c, err)
		}
	}
	if d, err := ParseMinUptime("5m"); err != nil || d != 5*time.Minute {
		t.Errorf("min-uptime: %v %v", d, err)
	}
	if _, err := ParseMinUptime("soon"); err == nil {
		t.Error("min-uptime accepted a word")
	}
}

func TestParseMetricRule(t *testing.T) {
	r, err := ParseMetricRule("queue_depth,warn=100,crit=500")
	if err != nil || r.Name != "queue_depth" || r.WarnString() != "100" || r.CritString() != "500" {
		t.Fatalf("%+v %v", r, err)
	}
	r, err = ParseMetricRule("workers, c=@~:0")
	if err != nil || r.Warn != nil || r.CritString() != "@~:0" {
		t.Fatalf("%+v %v", r, err)
	}
	for _, bad := range []string{"", "queue_depth", ",warn=1", "q,warn", "q,max=5", "q,warn=", "q,warn=abc", "q,crit=10:5"} {
		if _, err := ParseMetricRule(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseHeader(t *testing.T) {
	h := textproto.MIMEHeader{}
	if err := ParseHeader(h, "Authorization:  Bearer abc:def "); err != nil || h.Get("Authorization") != "Bearer abc:def" {
		t.Fatalf("%v %v", h, err)
	}
	for _, bad := range []string{"nocolon", ": v", "Bad Name: v", "X-A: a\r\nX-B: b", "X(y): z"} {
		if err := ParseHeader(textproto.MIMEHeader{}, bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
