package protocol

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// What the agent reports about itself beyond an action's output, for
// check_selfheal: the services a ping can ask the status of, and, in a
// status reply, the service's last restart. Both travel in Reply.Output,
// which the MAC covers; the reply's format is unchanged, so a client that
// does not read them sees one more line of text.

// pingServicesPrefix starts the ping output's second line.
const pingServicesPrefix = "status: "

// FormatPing is the ping output: the agent's version line and, when
// there are any, the services with a status action (sorted by the caller).
func FormatPing(version string, statusServices []string) string {
	if len(statusServices) == 0 {
		return version
	}
	return version + "\n" + pingServicesPrefix + strings.Join(statusServices, " ")
}

// ParsePing splits a ping output into the version line and the services
// the status verb can report (nil: none listed, or an older agent).
func ParsePing(out string) (version string, statusServices []string) {
	version, rest, _ := strings.Cut(out, "\n")
	if s, ok := strings.CutPrefix(rest, pingServicesPrefix); ok {
		for _, n := range strings.Fields(s) {
			if nameOK(n) {
				statusServices = append(statusServices, n)
			}
		}
	}
	return version, statusServices
}

// LastRestart is a service's last restart as its agent recorded it, and
// how many restarts it ran in the hour before the status reply.
type LastRestart struct {
	Outcome  Outcome
	At       time.Time // when it started, on the agent's clock
	Fault    string    // "-": none
	LastHour int
}

// The status reply's last line, when the service has a restart record:
//
//	[agent <nonce[:8]>] last restart <outcome> at <RFC 3339 UTC>, fault <fault>; <n> restarts in the last hour
//
// The tag carries the start of the request's nonce, which the status
// action never sees, so that a line the action printed itself (a worker's
// text can reach a status script's output) is never taken for the agent's.
const restartTag = "[agent "

func restartTagFor(nonce string) string {
	return restartTag + nonce[:min(len(nonce), 8)] + "] "
}

// FormatLastRestart is the line for r in the reply to the request that
// carried nonce.
func FormatLastRestart(nonce string, r LastRestart) string {
	fault := r.Fault
	if fault == "" {
		fault = "-"
	}
	return restartTagFor(nonce) + "last restart " + string(r.Outcome) + " at " + r.At.UTC().Format(time.RFC3339) +
		", fault " + fault + "; " + strconv.Itoa(r.LastHour) + " restarts in the last hour"
}

// ErrNoLastRestart: the status output ends in no agent line for this
// request (the service was never restarted, or the agent is older).
var ErrNoLastRestart = errors.New("no last-restart line from the agent")

// ParseLastRestart reads the agent's line at the end of a status output
// for the request that carried nonce; rest is the action's own output.
func ParseLastRestart(out, nonce string) (r LastRestart, rest string, err error) {
	i := strings.LastIndexByte(out, '\n')
	line := out[i+1:]
	if i >= 0 {
		rest = out[:i]
	}
	body, ok := strings.CutPrefix(line, restartTagFor(nonce))
	if !ok || len(nonce) < 8 {
		return LastRestart{}, out, ErrNoLastRestart
	}
	bad := func() (LastRestart, string, error) {
		return LastRestart{}, out, errors.New("malformed last-restart line: " + line)
	}
	body, ok = strings.CutPrefix(body, "last restart ")
	o, body, ok2 := strings.Cut(body, " at ")
	at, body, ok3 := strings.Cut(body, ", fault ")
	fault, body, ok4 := strings.Cut(body, "; ")
	n, ok5 := strings.CutSuffix(body, " restarts in the last hour")
	if !ok || !ok2 || !ok3 || !ok4 || !ok5 || (!Outcome(o).valid() && o != "pending") || !ValidFault(fault) {
		return bad()
	}
	t, err := time.Parse(time.RFC3339, at)
	if err != nil {
		return bad()
	}
	count, ok := parseUint(n)
	if !ok || count > 1<<20 {
		return bad()
	}
	return LastRestart{Outcome: Outcome(o), At: t, Fault: fault, LastHour: int(count)}, rest, nil
}
