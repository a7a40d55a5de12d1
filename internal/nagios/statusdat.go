package nagios

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Block is one "type { key=value ... }" block of Nagios' status.dat.
type Block struct {
	Type   string
	Fields map[string]string
}

// MaxStatusLine bounds one status.dat line (a plugin's long output is
// one line, escaped, and Nagios caps it at 8 KiB per check result by
// default; a bigger line is cut, not an error).
const MaxStatusLine = 1 << 20

// ParseBlocks reads status.dat block by block and calls keep with each
// block's type: only kept blocks have their fields collected, so reading
// a large file for one service allocates little. A block cut short by
// the end of the input (the file is written by temp file and rename, so
// that only happens to a file that is not Nagios') is an error.
func ParseBlocks(r io.Reader, keep func(typ string) bool, each func(Block) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var cur *Block
	skipping := false
	for {
		line, err := readLine(br)
		if len(line) > 0 || err == nil {
			t := bytes.TrimSpace(line)
			switch {
			case len(t) == 0 || t[0] == '#':
			case cur == nil && !skipping && bytes.HasSuffix(t, []byte("{")):
				typ := string(bytes.TrimSpace(t[:len(t)-1]))
				if keep(typ) {
					cur = &Block{Type: typ, Fields: map[string]string{}}
				} else {
					skipping = true
				}
			case bytes.Equal(t, []byte("}")):
				if cur != nil {
					if err := each(*cur); err != nil {
						return err
					}
				}
				cur, skipping = nil, false
			case cur != nil:
				k, v, _ := bytes.Cut(t, []byte("="))
				cur.Fields[string(k)] = string(v)
			}
		}
		if errors.Is(err, io.EOF) {
			if cur != nil || skipping {
				return errors.New("status.dat: the last block is cut short")
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("status.dat: %w", err)
		}
	}
}

// readLine returns one line without its newline, at most MaxStatusLine
// bytes of it (the rest is dropped).
func readLine(br *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(out)+len(frag) <= MaxStatusLine {
			out = append(out, frag...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimSuffix(out, []byte("\n")), err
	}
}

// HostState is $HOSTSTATE$ / hoststatus current_state.
type HostState int

// The host states, numbered as status.dat stores them.
const (
	HostUp          HostState = 0
	HostDown        HostState = 1
	HostUnreachable HostState = 2
)

func (h HostState) String() string {
	switch h {
	case HostUp:
		return "UP"
	case HostDown:
		return "DOWN"
	case HostUnreachable:
		return "UNREACHABLE"
	}
	return "UNKNOWN"
}

// ParseHostState reads $HOSTSTATE$ (Nagios) or $host.state$ (Icinga 2),
// any case.
func ParseHostState(s string) (HostState, bool) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "UP":
		return HostUp, true
	case "DOWN":
		return HostDown, true
	case "UNREACHABLE":
		return HostUnreachable, true
	}
	return 0, false
}

// ServiceStatus is what the suite reads of a servicestatus block.
type ServiceStatus struct {
	Host, Service  string
	State          State
	Hard           bool
	Checked        bool
	ProblemID      string // current_problem_id, "0" when OK
	Acknowledged   bool
	DowntimeDepth  int
	Perfdata       string
	LastCheck      time.Time
	LastHardChange time.Time
}

// HostStatus is what the suite reads of a hoststatus block.
type HostStatus struct {
	Host          string
	State         HostState
	Checked       bool
	DowntimeDepth int
	Acknowledged  bool
}

// Comment is a servicecomment block.
type Comment struct {
	Host, Service string
	ID            string // comment_id, for DEL_SVC_COMMENT
	Author        string
	Text          string
	Persistent    bool
	EntryTime     time.Time
}

// StatusData is the part of status.dat the suite uses.
type StatusData struct {
	Created  time.Time // info.created: when Nagios wrote the file
	Services map[[2]string]ServiceStatus
	Hosts    map[string]HostStatus
	Comments []Comment
}

// Service returns host/service's status, if present.
func (sd *StatusData) Service(host, service string) (ServiceStatus, bool) {
	s, ok := sd.Services[[2]string{host, service}]
	return s, ok
}

// CommentsOn returns the comments on host/service by author ("" for any),
// oldest first.
func (sd *StatusData) CommentsOn(host, service, author string) []Comment {
	var out []Comment
	for _, c := range sd.Comments {
		if c.Host == host && c.Service == service && (author == "" || c.Author == author) {
			out = append(out, c)
		}
	}
	return out
}

// ReadStatusData parses status.dat. only, when non-empty, limits the
// services and comments kept to those hosts (hoststatus blocks of other
// hosts are skipped too).
func ReadStatusData(r io.Reader, only ...string) (*StatusData, error) {
	sd := &StatusData{Services: map[[2]string]ServiceStatus{}, Hosts: map[string]HostStatus{}}
	want := func(host string) bool {
		if len(only) == 0 {
			return true
		}
		for _, h := range only {
			if h == host {
				return true
			}
		}
		return false
	}
	keep := func(t string) bool {
		switch t {
		case "info", "servicestatus", "hoststatus", "servicecomment":
			return true
		}
		return false
	}
	err := ParseBlocks(r, keep, func(b Block) error {
		f := b.Fields
		if b.Type == "info" {
			sd.Created = ParseEpoch(f["created"])
			return nil
		}
		if !want(f["host_name"]) {
			return nil
		}
		switch b.Type {
		case "servicestatus":
			s := ServiceStatus{Host: f["host_name"], Service: f["service_description"],
				State: State(atoi(f["current_state"])), Hard: f["state_type"] == "1", Checked: f["has_been_checked"] == "1",
				ProblemID: f["current_problem_id"], Acknowledged: f["problem_has_been_acknowledged"] == "1",
				DowntimeDepth: atoi(f["scheduled_downtime_depth"]), Perfdata: f["performance_data"],
				LastCheck: ParseEpoch(f["last_check"]), LastHardChange: ParseEpoch(f["last_hard_state_change"])}
			sd.Services[[2]string{s.Host, s.Service}] = s
		case "hoststatus":
			h := HostStatus{Host: f["host_name"], State: HostState(atoi(f["current_state"])), Checked: f["has_been_checked"] == "1",
				DowntimeDepth: atoi(f["scheduled_downtime_depth"]), Acknowledged: f["problem_has_been_acknowledged"] == "1"}
			sd.Hosts[h.Host] = h
		case "servicecomment":
			sd.Comments = append(sd.Comments, Comment{Host: f["host_name"], Service: f["service_description"],
				ID: f["comment_id"], Author: f["author"], Text: f["comment_data"], Persistent: f["persistent"] == "1",
				EntryTime: ParseEpoch(f["entry_time"])})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return sd, nil
}

func atoi(s string) int {
	n, _ := strconv.Atoi(strings.TrimSpace(s))
	return n
}

// ParseEpoch reads a status.dat time (Unix seconds, maybe fractional); 0,
// negative or unreadable is the zero time.
func ParseEpoch(s string) time.Time {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f <= 0 {
		return time.Time{}
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9))
}
