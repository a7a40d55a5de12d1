package protocol

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestPingServices(t *testing.T) {
	out := FormatPing("worker_listener 1.2", []string{"billing", "demo"})
	if out != "worker_listener 1.2\nstatus: billing demo" {
		t.Fatalf("FormatPing: %q", out)
	}
	v, s := ParsePing(out)
	if v != "worker_listener 1.2" || !slices.Equal(s, []string{"billing", "demo"}) {
		t.Fatalf("ParsePing: %q %q", v, s)
	}
	// An older agent, and one without status actions: the version alone.
	for _, in := range []string{"worker_listener 1.1", FormatPing("worker_listener 1.2", nil)} {
		if v, s := ParsePing(in); v != in || s != nil {
			t.Fatalf("ParsePing(%q) = %q %q", in, v, s)
		}
	}
	// Names the protocol refuses are dropped.
	if _, s := ParsePing("v\nstatus: ok ../etc -x UP"); !slices.Equal(s, []string{"ok"}) {
		t.Fatalf("bad names kept: %q", s)
	}
}

func TestLastRestartLine(t *testing.T) {
	nonce := "9f0c4b1e6a3d2c58e7f1a0b9c8d7e6f5"
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	r := LastRestart{Outcome: OutcomeFailed, At: at, Fault: "4711", LastHour: 2}
	line := FormatLastRestart(nonce, r)
	if line != "[agent 9f0c4b1e] last restart failed at 2026-11-24T10:00:00Z, fault 4711; 2 restarts in the last hour" {
		t.Fatalf("line: %q", line)
	}
	got, rest, err := ParseLastRestart("demo is running\npid 42\n"+line, nonce)
	if err != nil || got != r || rest != "demo is running\npid 42" {
		t.Fatalf("parse: %+v %q %v", got, rest, err)
	}
	if got, rest, err := ParseLastRestart(line, nonce); err != nil || got != r || rest != "" {
		t.Fatalf("line alone: %+v %q %v", got, rest, err)
	}
	tests := []struct {
		name, out string
		want      error // nil: malformed
	}{
		{"no line", "demo is running", ErrNoLastRestart},
		{"empty", "", ErrNoLastRestart},
		// A status script that prints the line for another request (or
		// guesses) is not the agent.
		{"another nonce", FormatLastRestart("00000000aaaaaaaaaaaaaaaaaaaaaaaa", r), ErrNoLastRestart},
		{"not last", line + "\nmore", ErrNoLastRestart},
		{"bad outcome", "[agent 9f0c4b1e] last restart fine at 2026-11-24T10:00:00Z, fault 4711; 2 restarts in the last hour", nil},
		{"bad time", "[agent 9f0c4b1e] last restart ok at yesterday, fault 4711; 2 restarts in the last hour", nil},
		{"bad count", "[agent 9f0c4b1e] last restart ok at 2026-11-24T10:00:00Z, fault 4711; -2 restarts in the last hour", nil},
		{"bad fault", "[agent 9f0c4b1e] last restart ok at 2026-11-24T10:00:00Z, fault a b; 2 restarts in the last hour", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, rest, err := ParseLastRestart(tt.out, nonce)
			switch {
			case err == nil:
				t.Fatalf("accepted %q", tt.out)
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Fatalf("err %v, want %v", err, tt.want)
			case tt.want == nil && errors.Is(err, ErrNoLastRestart):
				t.Fatalf("malformed line read as absent: %v", err)
			}
			if rest != tt.out {
				t.Fatalf("rest %q, want the whole output", rest)
			}
		})
	}
}
