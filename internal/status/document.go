// Package status defines the status contract a worker serves and
// check_worker reads (docs/status-contract.md). Any worker in any language
// can implement it; demo_worker serves it with these very types.
package status

import (
	"encoding/json"
	"fmt"
	"time"
)

// Document is the JSON body of a worker's status endpoint. Only Status is
// required; every other field is optional and checked only when present.
type Document struct {
	Status    string     `json:"status"`               // ok | warning | critical | unknown (any case)
	Message   string     `json:"message,omitempty"`    // one human line
	Heartbeat *time.Time `json:"heartbeat,omitempty"`  // last moment the worker made progress
	StartedAt *time.Time `json:"started_at,omitempty"` // process start, for uptime
	Version   string     `json:"version,omitempty"`
	Checks    []Check    `json:"checks,omitempty"`
	Metrics   []Metric   `json:"metrics,omitempty"`
}

// Check is one sub-check the worker ran (database, disk, ...). Scope says
// whose fault a failure is: "self" (the default) or "dependency", a shared
// service the worker needs, which restarting the worker does not repair.
type Check struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
	Scope   string `json:"scope,omitempty"` // self (default) | dependency (any case)
}

// Metric is one number the worker reports; it becomes perfdata and can be
// given thresholds with check_worker --metric.
type Metric struct {
	Name  string   `json:"name"`
	Value float64  `json:"value"`
	UOM   string   `json:"uom,omitempty"`
	Min   *float64 `json:"min,omitempty"`
	Max   *float64 `json:"max,omitempty"`
}

// UnmarshalJSON refuses a metric without a value: read as 0 it would
// break a threshold such as crit=1: and restart a healthy worker over a
// contract bug, which is UNKNOWN, not CRITICAL.
func (m *Metric) UnmarshalJSON(b []byte) error {
	type plain Metric // no methods: no recursion
	var v struct {
		plain
		Value *float64 `json:"value"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if v.Value == nil {
		return fmt.Errorf("metric %q has no \"value\"", clip(v.Name))
	}
	*m = Metric(v.plain)
	m.Value = *v.Value
	return nil
}
