package rig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadAuditAndCount(t *testing.T) {
	p := filepath.Join(t.TempDir(), "audit.log")
	if recs, err := ReadAudit(p); err != nil || recs != nil {
		t.Fatalf("a missing log: %v %v", recs, err)
	}
	lines := []string{
		`{"level":"info","peer":"127.0.0.1:1","outcome":"ok","key_id":"fleet1","agent":"worker1","verb":"ping","service":"-","fault":"-","origin":"-","time":"2026-01-02T03:04:05Z","message":"request"}`,
		`{"level":"info","outcome":"ok","agent":"worker1","verb":"restart","service":"demo","fault":"17","origin":"run","exit_code":0,"budget_used":1,"budget_max":3,"time":"2026-01-02T03:04:06Z","message":"request"}`,
		`{"level":"info","outcome":"ok","agent":"worker1","verb":"restart","service":"demo","fault":"17","origin":"recorded","exit_code":0,"message":"request"}`,
		`{"level":"info","outcome":"ok","agent":"worker1","verb":"restart","service":"demo","fault":"18","origin":"joined","exit_code":0,"message":"request"}`,
		`{"level":"warn","outcome":"spent","agent":"worker1","verb":"restart","service":"demo","fault":"19","origin":"-","message":"request"}`,
		`{"level":"warn","outcome":"denied","verb":"restart","service":"demo","reason":"MAC does not verify","message":"request"}`,
		`{"level":"warn","outcome":"busy","peer":"127.0.0.1:2","message":"request"}`,
		``,
	}
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	recs, err := ReadAudit(p)
	if err != nil || len(recs) != 7 {
		t.Fatalf("%d records, %v", len(recs), err)
	}
	if r := recs[1]; !r.Ran() || r.Fault != "17" || *r.ExitCode != 0 || *r.BudgetUsed != 1 || *r.BudgetMax != 3 ||
		r.Time.Unix() != 1767323046 || r.Raw != lines[1] {
		t.Errorf("the run: %+v", r)
	}
	if recs[0].Ran() || recs[2].Ran() {
		t.Error("a ping or a recorded answer counted as a run")
	}
	want := AuditCounts{Run: 1, Joined: 1, Recorded: 1, Spent: 1, Denied: 1}
	if c := CountRestarts(recs); c != want {
		t.Errorf("counts %s, want %s", c, want)
	}
	if err := os.WriteFile(p, []byte("not json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadAudit(p); err == nil {
		t.Error("a line that is not JSON was accepted")
	}
}
