package engine

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// LogEntry is one line of a Nagios-format log:
// "[epoch] SERVICE ALERT: host;service;CRITICAL;HARD;3;output".
type LogEntry struct {
	Time   time.Time // whole seconds only: the log has no finer resolution
	Type   string    // "SERVICE ALERT", "SERVICE EVENT HANDLER", "EXTERNAL COMMAND", ...; "" if none
	Fields []string  // the text after "TYPE: ", split on ';'
	Raw    string    // the line without its timestamp
}

// ReadLog parses a Nagios-format log file.
func ReadLog(path string) ([]LogEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	defer f.Close()
	var out []LogEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		if e, ok := ParseLogLine(sc.Text()); ok {
			out = append(out, e)
		}
	}
	return out, sc.Err()
}

// ParseLogLine parses one log line; ok is false when it has no [epoch].
func ParseLogLine(line string) (LogEntry, bool) {
	if !strings.HasPrefix(line, "[") {
		return LogEntry{}, false
	}
	ts, rest, ok := strings.Cut(line[1:], "] ")
	if !ok {
		return LogEntry{}, false
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return LogEntry{}, false
	}
	e := LogEntry{Time: time.Unix(sec, 0), Raw: rest}
	if typ, body, ok := strings.Cut(rest, ": "); ok && typ == strings.ToUpper(typ) {
		e.Type = typ
		e.Fields = strings.Split(body, ";")
	}
	return e, true
}

// Log reads the instance's Nagios-format log now.
func (in *Instance) Log() ([]LogEntry, error) { return ReadLog(in.LogFile) }

// WaitLog polls the log until match returns true for some entry and
// returns that entry, bounded by ctx.
func (in *Instance) WaitLog(ctx context.Context, match func(LogEntry) bool) (LogEntry, error) {
	var found LogEntry
	err := poll(ctx, 100*time.Millisecond, func() (bool, error) {
		entries, err := in.Log()
		if err != nil {
			return false, nil
		}
		for _, e := range entries {
			if match(e) {
				found = e
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return found, fmt.Errorf("waiting for a log entry in %s: %w", in.LogFile, err)
	}
	return found, nil
}

// Alert matches a "SERVICE ALERT" for host/service in state (e.g.
// "CRITICAL") and type ("HARD", "SOFT"; "" = any).
func Alert(host, service, state, typ string) func(LogEntry) bool {
	return func(e LogEntry) bool {
		f := e.Fields
		return e.Type == "SERVICE ALERT" && len(f) >= 4 && f[0] == host && f[1] == service &&
			f[2] == state && (typ == "" || f[3] == typ)
	}
}

// EventHandler matches a "SERVICE EVENT HANDLER" line for host/service in
// state and type ("" = any).
func EventHandler(host, service, state, typ string) func(LogEntry) bool {
	return func(e LogEntry) bool {
		f := e.Fields
		return e.Type == "SERVICE EVENT HANDLER" && len(f) >= 4 && f[0] == host && f[1] == service &&
			f[2] == state && (typ == "" || f[3] == typ)
	}
}
