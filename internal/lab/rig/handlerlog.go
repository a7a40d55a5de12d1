package rig

// HandlerRecord is one line of handle_worker's own log (JSON lines, one per
// run), the fields the tests assert on. Raw keeps the line itself.
type HandlerRecord struct {
	State    string  `json:"state"`
	Type     string  `json:"state_type"`
	Agent    string  `json:"agent"`
	Fault    string  `json:"fault"`
	Exit     int     `json:"exit"`
	Decision string  `json:"decision"`
	Result   string  `json:"result"`
	Outcome  string  `json:"outcome"`
	Origin   string  `json:"origin"`
	Held     string  `json:"held"`   // the rule or agent outcome that held a restart back
	Source   string  `json:"source"` // event or reevaluate
	Elapsed  float64 `json:"elapsed_ms"`
	Message  string  `json:"message"`
	Raw      string  `json:"-"`
}

// ReadHandlerLog reads handle_worker's log. A missing file is an empty log;
// lines that are not JSON (none are expected) are skipped.
func ReadHandlerLog(path string) ([]HandlerRecord, error) {
	return readJSONLines(path, false, func(r *HandlerRecord, line string) { r.Raw = line })
}

// Restarts are the records of runs that decided to restart (and so asked
// the agent), in order.
func Restarts(records []HandlerRecord) []HandlerRecord {
	var out []HandlerRecord
	for _, r := range records {
		if r.Decision == "restart" {
			out = append(out, r)
		}
	}
	return out
}
