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

// Name is the channel in messages.
func (e NagiosEngine) Name() string { return "the command file" }

// IcingaEngine is Icinga 2's REST API: reads through /v1/objects, writes
// through /v1/actions, each aimed at exactly one object.
type IcingaEngine struct {
	Client *icingaapi.Client
}

// Status reads each named service (with its host) and this handler's
// comments on it.
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
		cs, err := e.Client.Comments(ctx, s.Host, s.Name, Author)
		if err != nil {
			return sd, fmt.Errorf("icinga comments: %w", err)
		}
		for _, c := range cs {
			sd.Comments = append(sd.Comments, nagios.Comment{Host: s.Host, Service: s.Name, ID: c.Name, Author: c.Author,
				Text: c.Text, EntryTime: c.EntryTime})
		}
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
	var errs []error
	for _, c := range cmds {
		verb, f := c.fields()
		var err error
		switch {
		case verb == "ADD_SVC_COMMENT" && len(f) == 5:
			_, err = e.Client.AddComment(ctx, f[0], f[1], f[3], f[4], time.Time{})
		case verb == "DEL_SVC_COMMENT" && len(f) == 1:
			err = e.Client.RemoveComment(ctx, f[0])
		case verb == "SCHEDULE_FORCED_SVC_CHECK" && len(f) == 3:
			var at int64
			if at, err = strconv.ParseInt(f[2], 10, 64); err == nil {
				err = e.Client.RescheduleCheck(ctx, f[0], f[1], time.Unix(at, 0), true)
			}
		default:
			err = fmt.Errorf("no API action for %q", verb)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", strings.ToLower(verb), err))
		}
	}
	return errors.Join(errs...)
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
