package rig

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// AuditRecord is one line of worker_listener's audit log (JSON lines), the
// fields the tests assert on. Raw keeps the line itself for messages.
type AuditRecord struct {
	Time       time.Time `json:"time"`
	Outcome    string    `json:"outcome"`
	Agent      string    `json:"agent"`
	Verb       string    `json:"verb"`
	Service    string    `json:"service"`
	Fault      string    `json:"fault"`
	Origin     string    `json:"origin"`
	ExitCode   *int      `json:"exit_code"`
	BudgetUsed *int      `json:"budget_used"`
	BudgetMax  *int      `json:"budget_max"`
	Reason     string    `json:"reason"`
	Raw        string    `json:"-"`
}

// Ran reports whether this request ran a restart itself: the one audit line
// per real restart ("origin":"run"), whatever its outcome.
func (r AuditRecord) Ran() bool { return r.Verb == "restart" && r.Origin == "run" }

// ReadAudit reads an audit log. A missing file is an empty log; a line that
// is not JSON is an error (the agent writes nothing else there).
func ReadAudit(path string) ([]AuditRecord, error) {
	return readJSONLines(path, true, func(r *AuditRecord, line string) { r.Raw = line })
}

// readJSONLines reads a JSON-lines log into T, one value a line, calling
// raw with each line. A missing file is an empty log. With strict, a line
// that is not JSON is an error; otherwise it is skipped.
func readJSONLines[T any](path string, strict bool, raw func(*T, string)) ([]T, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var r T
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			if strict {
				return out, fmt.Errorf("%s: %w: %q", path, err, line)
			}
			continue
		}
		raw(&r, line)
		out = append(out, r)
	}
	return out, sc.Err()
}

// AuditCounts tallies restart requests by how the agent answered them.
type AuditCounts struct {
	Run, Joined, Recorded, Spent, Denied, Other int
}

func (c AuditCounts) String() string {
	return fmt.Sprintf("run %d, joined %d, recorded %d, spent %d, denied %d, other %d",
		c.Run, c.Joined, c.Recorded, c.Spent, c.Denied, c.Other)
}

// CountRestarts tallies the restart lines of records.
func CountRestarts(records []AuditRecord) AuditCounts {
	var c AuditCounts
	for _, r := range records {
		if r.Verb != "restart" {
			continue
		}
		switch {
		case r.Origin == "run":
			c.Run++
		case r.Origin == "joined":
			c.Joined++
		case r.Origin == "recorded":
			c.Recorded++
		case r.Outcome == "spent":
			c.Spent++
		case r.Outcome == "denied":
			c.Denied++
		default:
			c.Other++
		}
	}
	return c
}
