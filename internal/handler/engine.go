package handler

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/selfheal/selfheal/internal/fsutil"
	"github.com/selfheal/selfheal/internal/icingaapi"
	"github.com/selfheal/selfheal/internal/nagios"
)

// Engine is where the handler reads the engine's view of services (for the
// judgment rules, the comments it replaces, reevaluate) and writes back
// (comments, deletions, forced re-checks). Nagios Core 4: status.dat and
// the command FIFO. Icinga 2: its REST API. A write-back failure is only
// reported: it never changes whether healing happened.
type Engine interface {
	// Status reads the services named (host, service) and their hosts;
	// nil, nil when the engine has no readable view.
	Status(ctx context.Context, names [][2]string) (*nagios.StatusData, error)
	// Write applies the commands, stamped with now.
	Write(ctx context.Context, now time.Time, cmds ...Command) error
	// Name is the write-back channel in messages ("Nagios' command file",
	// "the Icinga 2 API").
	Name() string
}

// WriteResult is what became of one command of a write-back.
type WriteResult struct {
	Cmd  Command
	Name string // add-comment's answer (Icinga 2): the comment's name
	Err  error
}

// writeBacker is an Engine that says what became of each command, so
// that the names of the comments are kept and a failed command is
// retried later. Both engines here are; another Engine is written with
// Write, all or nothing.
type writeBacker interface {
	WriteBack(ctx context.Context, now time.Time, cmds []Command) []WriteResult
}

// writeBack writes cmds through e, command by command when e can say.
func writeBack(ctx context.Context, e Engine, now time.Time, cmds []Command) []WriteResult {
	if wb, ok := e.(writeBacker); ok {
		return wb.WriteBack(ctx, now, cmds)
	}
	err := e.Write(ctx, now, cmds...)
	out := make([]WriteResult, len(cmds))
	for i, c := range cmds {
		out[i] = WriteResult{Cmd: c, Err: err}
	}
	return out
}

// joinResults is the failures of a write-back, joined (the same error
// once when several commands share it).
func joinResults(rs []WriteResult) error {
	var errs []error
	for i, r := range rs {
		if r.Err != nil && (i == 0 || rs[i-1].Err == nil || rs[i-1].Err.Error() != r.Err.Error()) {
			errs = append(errs, r.Err)
		}
	}
	return errors.Join(errs...)
}

// NagiosEngine is status.dat (StatusFile, "" for none) and the command
// FIFO (CommandFile, "" for none).
type NagiosEngine struct {
	StatusFile, CommandFile string
	Trust                   fsutil.Trust
}

// Status reads status.dat, keeping only the named services' hosts.
func (e NagiosEngine) Status(_ context.Context, names [][2]string) (*nagios.StatusData, error) {
	if e.StatusFile == "" {
		return nil, nil
	}
	var hosts []string
	for _, n := range names {
		hosts = append(hosts, n[0])
	}
	return ReadStatusFile(e.Trust, e.StatusFile, hosts...)
}

// Write writes the commands to the FIFO in one write(2).
func (e NagiosEngine) Write(_ context.Context, now time.Time, cmds ...Command) error {
	if e.CommandFile == "" || len(cmds) == 0 {
		return nil
	}
	return CommandFile{Path: e.CommandFile}.Write(now, cmds...)
}

// WriteBack is Write: one write(2), so every command shares its result.
// Nagios names no comment back (its comment_id is in status.dat).
func (e NagiosEngine) WriteBack(ctx context.Context, now time.Time, cmds []Command) []WriteResult {
	err := e.Write(ctx, now, cmds...)
	out := make([]WriteResult, len(cmds))
	for i, c := range cmds {
		out[i] = WriteResult{Cmd: c, Err: err}
	}
	return out
}

// Name is the channel in messages.
func (e NagiosEngine) Name() string { return "the command file" }

// IcingaEngine is Icinga 2's REST API: reads through /v1/objects, writes
// through /v1/actions, each aimed at exactly one object. One Client, so
// one handler run keeps one TLS connection for all its calls.
type IcingaEngine struct {
	Client *icingaapi.Client
}

// Status reads each named service with its host: one request each. The
// handler's own comments are not read: it keeps their names in its state
// directory (Record.Comments) and removes them by name.
func (e IcingaEngine) Status(ctx context.Context, names [][2]string) (*nagios.StatusData, error) {
	svcs, err := e.Client.Services(ctx, names)
	if err != nil {
		return nil, err
	}
	sd := &nagios.StatusData{Created: time.Now(), Services: map[[2]string]nagios.ServiceStatus{}, Hosts: map[string]nagios.HostStatus{}}
	for k, s := range svcs {
		sd.Services[k] = nagios.ServiceStatus{Host: s.Host, Service: s.Name, State: nagios.State(s.State), Hard: s.StateType == 1,
			Checked: s.Checked, ProblemID: problemID(s), Acknowledged: s.Acknowledgement > 0, DowntimeDepth: s.DowntimeDepth,
			Perfdata: s.Perfdata, LastCheck: epoch(s.LastCheck)}
		sd.Hosts[s.Host] = nagios.HostStatus{Host: s.Host, State: nagios.HostState(min(s.HostState, 1)), Checked: s.HostChecked,
			DowntimeDepth: s.HostDowntimeDepth}
	}
	return sd, nil
}

// epoch is an Icinga timestamp; 0 is none.
func epoch(f float64) time.Time {
	if f <= 0 {
		return time.Time{}
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9))
}

// Comments searches this handler's comments on host!service (one query
// with a filter): only for a record written before the handler kept the
// names of its comments.
func (e IcingaEngine) Comments(ctx context.Context, host, service string) ([]nagios.Comment, error) {
	cs, err := e.Client.Comments(ctx, host, service, Author)
	if err != nil {
		return nil, fmt.Errorf("icinga comments: %w", err)
	}
	out := make([]nagios.Comment, 0, len(cs))
	for _, c := range cs {
		out = append(out, nagios.Comment{Host: host, Service: service, ID: c.Name, Author: c.Author, Text: c.Text, EntryTime: c.EntryTime})
	}
	return out, nil
}

// problemID is the fault id the EventCommand passes for the service's
// current problem ($service.last_state_change$); "0" when it is OK, as
// Nagios' $SERVICEPROBLEMID$.
func problemID(s icingaapi.Service) string {
	if s.State == 0 {
		return "0"
	}
	return s.FaultID()
}

// Write turns each command into its API action. It goes on after a failed
// call, and returns the failures joined.
func (e IcingaEngine) Write(ctx context.Context, now time.Time, cmds ...Command) error {
	return joinResults(e.WriteBack(ctx, now, cmds))
}

// WriteBack makes one API call per command, in order, going on after a
// failure. A comment added as not persistent expires by itself
// (commentTTL); one already gone when removed (expired, removed by a
// human or the other HA endpoint) is no failure.
func (e IcingaEngine) WriteBack(ctx context.Context, now time.Time, cmds []Command) []WriteResult {
	out := make([]WriteResult, 0, len(cmds))
	for _, c := range cmds {
		verb, f := c.fields()
		res := WriteResult{Cmd: c}
		var err error
		switch {
		case verb == "ADD_SVC_COMMENT" && len(f) == 5:
			var expiry time.Time
			if ttl := commentTTL(f[4], f[2] == "1"); ttl > 0 {
				expiry = now.Add(ttl)
			}
			res.Name, err = e.Client.AddComment(ctx, f[0], f[1], f[3], f[4], expiry)
		case verb == "DEL_SVC_COMMENT" && len(f) == 1:
			if err = e.Client.RemoveComment(ctx, f[0]); errors.Is(err, icingaapi.ErrNotFound) {
				err = nil
			}
		case verb == "SCHEDULE_FORCED_SVC_CHECK" && len(f) == 3:
			var at int64
			if at, err = strconv.ParseInt(f[2], 10, 64); err == nil {
				err = e.Client.RescheduleCheck(ctx, f[0], f[1], time.Unix(at, 0), true)
			}
		default:
			err = fmt.Errorf("no API action for %q", verb)
		}
		if err != nil {
			res.Err = fmt.Errorf("%s: %w", strings.ToLower(verb), err)
		}
		out = append(out, res)
	}
	return out
}

// Name is the channel in messages.
func (e IcingaEngine) Name() string { return "the Icinga 2 API" }

// fields splits a command into its verb and fields; the last field (a
// comment's text) may hold ';'.
func (c Command) fields() (string, []string) {
	verb, rest, _ := strings.Cut(string(c), ";")
	n := map[string]int{"ADD_SVC_COMMENT": 5, "DEL_SVC_COMMENT": 1, "SCHEDULE_FORCED_SVC_CHECK": 3}[verb]
	if n == 0 {
		return verb, nil
	}
	return verb, strings.SplitN(rest, ";", n)
}
