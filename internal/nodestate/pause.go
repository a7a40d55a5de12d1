package nodestate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"
)

// pauseFile holds the pauses of this node, in the state directory.
const pauseFile = "pauses.json"

// MaxPause bounds a pause: a forgotten one must end by itself.
const MaxPause = 7 * 24 * time.Hour

// Pause holds healing back on this node: for every service (Host ""), a
// host's services (Service ""), or one service, until Until.
type Pause struct {
	Host    string    `json:"host,omitempty"`
	Service string    `json:"service,omitempty"`
	Reason  string    `json:"reason"`
	By      string    `json:"by"`
	At      time.Time `json:"at"`
	Until   time.Time `json:"until"`
}

// Scope names what the pause covers.
func (p Pause) Scope() string {
	switch {
	case p.Host == "":
		return "every service on this node"
	case p.Service == "":
		return "host " + p.Host
	}
	return p.Host + "/" + p.Service
}

func (p Pause) covers(host, service string) bool {
	return p.Host == "" || p.Host == host && (p.Service == "" || p.Service == service)
}

type pauseList struct {
	Version int     `json:"version"`
	Pauses  []Pause `json:"pauses"`
}

// Pauses returns the pauses in force at now.
func (s Store) Pauses(now time.Time) ([]Pause, error) {
	d, err := s.Open()
	if err != nil {
		return nil, err
	}
	defer d.Close()
	b, _, err := d.ReadRegular(pauseFile, maxStateBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pauses: %w", err)
	}
	var pl pauseList
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pl); err != nil || pl.Version != 1 {
		return nil, fmt.Errorf("%w: %s/%s", ErrStateCorrupt, s.Dir, pauseFile)
	}
	var live []Pause
	for _, p := range pl.Pauses {
		if now.Before(p.Until) {
			live = append(live, p)
		}
	}
	return live, nil
}

// PausedFor is the most specific pause covering host/service at now.
func PausedFor(ps []Pause, host, service string) *Pause {
	var best *Pause
	rank := func(p Pause) int {
		switch {
		case p.Service != "":
			return 2
		case p.Host != "":
			return 1
		}
		return 0
	}
	for i := range ps {
		if ps[i].covers(host, service) && (best == nil || rank(ps[i]) > rank(*best)) {
			best = &ps[i]
		}
	}
	return best
}

// SetPause adds p, replacing a pause of the same scope; Resume (remove
// true) takes the pauses of that scope away, and reports how many.
func (s Store) SetPause(ctx context.Context, now time.Time, p Pause, remove bool) (int, error) {
	d, err := s.Open()
	if err != nil {
		return 0, err
	}
	defer d.Close()
	unlock, err := s.lock(ctx, d, "pauses.lock")
	if err != nil {
		return 0, err
	}
	defer unlock()
	live, err := s.Pauses(now)
	if errors.Is(err, ErrStateCorrupt) {
		return 0, fmt.Errorf("%w: fix or remove it first (writing over it would drop the pauses it holds)", err)
	}
	if err != nil {
		return 0, err
	}
	kept := live[:0]
	n := 0
	for _, q := range live {
		if q.Host == p.Host && q.Service == p.Service {
			n++
			continue
		}
		kept = append(kept, q)
	}
	if !remove {
		kept = append(kept, p)
	}
	b, err := json.MarshalIndent(pauseList{Version: 1, Pauses: kept}, "", "  ")
	if err != nil {
		return 0, err
	}
	if err := d.WriteLocked(pauseFile, append(b, '\n'), 0o600, true); err != nil {
		return 0, fmt.Errorf("writing pauses: %w", err)
	}
	return n, nil
}
