package engine

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/selfheal/selfheal/internal/nagios"
)

// Block is one "type { key=value ... }" block of status.dat.
type Block struct {
	Type   string
	Fields map[string]string
}

// Service is a servicestatus block, decoded.
type Service struct {
	Host, Service       string
	State               nagios.State // current_state
	Hard                bool         // state_type == 1
	Attempt             int          // current_attempt
	MaxAttempts         int
	Output              string // plugin_output
	HasBeenChecked      bool
	LastCheck           time.Time
	LastStateChange     time.Time
	LastHardStateChange time.Time
	Fields              map[string]string // every raw field of the block
}

// Comment is a servicecomment block.
type Comment struct {
	Host, Service string
	EntryTime     time.Time
	Author        string
	Text          string // comment_data
}

// Status is a parsed status.dat.
type Status struct {
	Blocks   []Block
	Services []Service
	Comments []Comment
}

// ReadStatus parses a status.dat file (Nagios 4 or Icinga 2's
// StatusDataWriter; both use the same format).
func ReadStatus(path string) (*Status, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	defer f.Close()
	st := &Status{}
	keep := func(string) bool { return true }
	if err := nagios.ParseBlocks(f, keep, func(b nagios.Block) error { st.add(Block(b)); return nil }); err != nil {
		return nil, fmt.Errorf("engine: reading %s: %w", path, err)
	}
	return st, nil
}

func (st *Status) add(b Block) {
	st.Blocks = append(st.Blocks, b)
	f := b.Fields
	switch b.Type {
	case "servicestatus":
		st.Services = append(st.Services, Service{
			Host: f["host_name"], Service: f["service_description"],
			State: nagios.State(atoi(f["current_state"])), Hard: f["state_type"] == "1",
			Attempt: atoi(f["current_attempt"]), MaxAttempts: atoi(f["max_attempts"]),
			Output: f["plugin_output"], HasBeenChecked: f["has_been_checked"] == "1",
			LastCheck: nagios.ParseEpoch(f["last_check"]), LastStateChange: nagios.ParseEpoch(f["last_state_change"]),
			LastHardStateChange: nagios.ParseEpoch(f["last_hard_state_change"]),
			Fields:              f,
		})
	case "servicecomment":
		st.Comments = append(st.Comments, Comment{
			Host: f["host_name"], Service: f["service_description"],
			EntryTime: nagios.ParseEpoch(f["entry_time"]), Author: f["author"], Text: f["comment_data"],
		})
	}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(strings.TrimSpace(s))
	return n
}

// Service returns the status of host/service, if present.
func (st *Status) Service(host, service string) (Service, bool) {
	for _, s := range st.Services {
		if s.Host == host && s.Service == service {
			return s, true
		}
	}
	return Service{}, false
}

// CommentsFor returns the comments on host/service, oldest first.
func (st *Status) CommentsFor(host, service string) []Comment {
	var out []Comment
	for _, c := range st.Comments {
		if c.Host == host && c.Service == service {
			out = append(out, c)
		}
	}
	return out
}

// Status reads the instance's status.dat now.
func (in *Instance) Status() (*Status, error) { return ReadStatus(in.StatusFile) }

// StateIs matches a checked service in state, HARD when hard is true (any
// type otherwise).
func StateIs(state nagios.State, hard bool) func(Service) bool {
	return func(s Service) bool {
		return s.HasBeenChecked && s.State == state && (!hard || s.Hard)
	}
}

// WaitService polls status.dat until host/service satisfies match, the
// engine exits, or ctx ends. It returns the last status seen either way.
func (in *Instance) WaitService(ctx context.Context, host, service string, match func(Service) bool) (Service, error) {
	var last Service
	err := poll(ctx, 100*time.Millisecond, func() (bool, error) {
		if !in.Running() {
			return false, fmt.Errorf("engine: %s is not running", in.Kind)
		}
		st, err := in.Status()
		if err != nil {
			return false, nil // being rewritten; try again
		}
		s, ok := st.Service(host, service)
		if !ok {
			return false, nil
		}
		last = s
		return match(s), nil
	})
	if err != nil {
		return last, fmt.Errorf("waiting for %s/%s (last: %s, hard=%v, attempt %d, %q): %w",
			host, service, last.State, last.Hard, last.Attempt, last.Output, err)
	}
	return last, nil
}

// WaitComment polls status.dat until a comment on host/service contains
// substr, and returns it.
func (in *Instance) WaitComment(ctx context.Context, host, service, substr string) (Comment, error) {
	var found Comment
	var seen []string
	err := poll(ctx, 100*time.Millisecond, func() (bool, error) {
		st, err := in.Status()
		if err != nil {
			return false, nil
		}
		seen = seen[:0]
		for _, c := range st.CommentsFor(host, service) {
			seen = append(seen, c.Text)
			if strings.Contains(c.Text, substr) {
				found = c
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return found, fmt.Errorf("waiting for a comment on %s/%s containing %q (have %q): %w", host, service, substr, seen, err)
	}
	return found, nil
}
