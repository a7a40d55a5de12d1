package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testdata/debug.log is a real Nagios 4.4.6 debug log of one heal (a crash,
// SOFT 1, SOFT 2, HARD 3 with the handler, its feedback, the forced
// re-check and the recovery).
func TestReadDebugFindsTheHeal(t *testing.T) {
	d, err := readDebug(filepath.Join("testdata", "debug.log"), 0)
	if err != nil {
		t.Fatal(err)
	}
	want := func(name string, got time.Time, sec, usec int64) {
		t.Helper()
		if w := time.Unix(sec, usec*1000); !got.Equal(w) {
			t.Errorf("%s = %s, want %s", name, got.Format("05.000000"), w.Format("05.000000"))
		}
	}
	// The handler run that sent the feedback is the HARD one (the third),
	// not the SOFT ones before it nor the recovery run after it.
	want("handler start", d.handlerStart, 1795560961, 175968)
	want("feedback", d.feedback, 1795560961, 243318)
	want("recovered", d.recovered, 1795560962, 248198)
}

func TestReadDebugWithoutHealFails(t *testing.T) {
	p := filepath.Join(t.TempDir(), "debug.log")
	body := "[1795560958.158059] [016.0] [pid=1] Attempting to run scheduled check of service 'worker' on host 'worker1'\n"
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readDebug(p, 0); err == nil {
		t.Error("a log without a heal gave no error")
	}
}

func TestDebugTime(t *testing.T) {
	tests := []struct {
		line string
		ok   bool
		want time.Time
	}{
		{"[1795560961.175968] [016.1] [pid=1205] Running", true, time.Unix(1795560961, 175968000)},
		{"[1795560961.5] x", true, time.Unix(1795560961, 500000000)},
		{"[1795560961] x", true, time.Unix(1795560961, 0)},
		{"WORKER CRITICAL - connection refused", false, time.Time{}},
		{"[abc] x", false, time.Time{}},
	}
	for _, tt := range tests {
		got, ok := debugTime(tt.line)
		if ok != tt.ok || !got.Equal(tt.want) {
			t.Errorf("debugTime(%q) = %v, %v; want %v, %v", tt.line, got, ok, tt.want, tt.ok)
		}
	}
}

func TestLastJSON(t *testing.T) {
	p := filepath.Join(t.TempDir(), "h.log")
	body := `{"decision":"nothing","elapsed_ms":0.6}
not json
{"decision":"restart","action_duration":59.4,"elapsed_ms":63.6}
{"decision":"close-episode","elapsed_ms":1.4}
`
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	m := lastJSON(p, 0, func(m map[string]any) bool { return m["decision"] == "restart" })
	if m == nil || m["action_duration"] != 59.4 {
		t.Errorf("lastJSON = %v", m)
	}
	// From an offset past the restart line, there is none.
	if m := lastJSON(p, int64(len(body)-40), func(m map[string]any) bool { return m["decision"] == "restart" }); m != nil {
		t.Errorf("lastJSON after the restart line = %v", m)
	}
}
