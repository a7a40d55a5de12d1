package rig

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadHandlerLog(t *testing.T) {
	p := filepath.Join(t.TempDir(), "handler.log")
	text := `{"level":"info","state":"CRITICAL","state_type":"SOFT","agent":"worker1","fault":"5","exit":0,"decision":"wait","elapsed_ms":1.5}
garbage
{"level":"info","state":"CRITICAL","state_type":"HARD","agent":"worker1","fault":"5","exit":0,"decision":"restart","outcome":"ok","origin":"run","elapsed_ms":64.2}
{"level":"warn","state":"CRITICAL","state_type":"HARD","agent":"worker1","fault":"6","exit":1,"decision":"restart","outcome":"spent","origin":"-"}
`
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	recs, err := ReadHandlerLog(p)
	if err != nil || len(recs) != 3 {
		t.Fatalf("%d records, %v", len(recs), err)
	}
	r := Restarts(recs)
	if len(r) != 2 || r[0].Origin != "run" || r[0].Elapsed != 64.2 || r[1].Outcome != "spent" || r[1].Exit != 1 || r[1].Fault != "6" {
		t.Errorf("restarts %+v", r)
	}
}
