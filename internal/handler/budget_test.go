package handler

import (
	"testing"
	"time"
)

func TestBudgetCheck(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	b := Budget{Max: 3, Window: time.Hour, MinGap: 2 * time.Minute}
	at := func(ago time.Duration) Record { return Record{At: now.Add(-ago)} }
	tests := []struct {
		name    string
		recs    []Record
		allowed bool
		kind    string
		used    int
		wait    time.Duration
	}{
		{"empty", nil, true, "", 0, 0},
		{"two in window", []Record{at(50 * time.Minute), at(10 * time.Minute)}, true, "", 2, 0},
		{"three in window", []Record{at(50 * time.Minute), at(30 * time.Minute), at(10 * time.Minute)}, false, "exhausted", 3, 10 * time.Minute},
		{"oldest just left the window", []Record{at(time.Hour), at(30 * time.Minute), at(10 * time.Minute)}, true, "", 2, 0},
		{"oldest one ns inside", []Record{at(time.Hour - 1), at(30 * time.Minute), at(10 * time.Minute)}, false, "exhausted", 3, 1},
		{"min gap", []Record{at(time.Minute)}, false, "min-gap", 1, time.Minute},
		{"min gap exactly over", []Record{at(2 * time.Minute)}, true, "", 1, 0},
		{"clock went back: future record counts", []Record{at(-5 * time.Minute)}, false, "min-gap", 1, 7 * time.Minute},
		{"old records ignored", []Record{at(3 * time.Hour), at(2 * time.Hour), at(90 * time.Minute)}, true, "", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := b.Check(tt.recs, now)
			if v.Allowed != tt.allowed || v.Kind != tt.kind || v.Used != tt.used || v.Wait != tt.wait {
				t.Fatalf("got %+v, want allowed=%v kind=%q used=%d wait=%s", v, tt.allowed, tt.kind, tt.used, tt.wait)
			}
			if !v.Allowed && v.Reason == "" {
				t.Fatal("refusal without a reason")
			}
		})
	}
}

func TestBudgetValidate(t *testing.T) {
	tests := []struct {
		b  Budget
		ok bool
	}{
		{DefaultBudget, true},
		{Budget{Max: 1, Window: time.Second}, true},
		{Budget{Max: 0, Window: time.Hour}, false},
		{Budget{Max: 3, Window: 0}, false},
		{Budget{Max: 3, Window: time.Hour, MinGap: -1}, false},
		{Budget{Max: 3, Window: time.Minute, MinGap: time.Hour}, false},
	}
	for _, tt := range tests {
		if err := tt.b.Validate(); (err == nil) != tt.ok {
			t.Errorf("Validate(%+v) = %v, want ok=%v", tt.b, err, tt.ok)
		}
	}
}

func TestBudgetPrune(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	b := Budget{Max: 3, Window: time.Hour, MinGap: time.Minute}
	var recs []Record
	for i := 0; i < 200; i++ {
		recs = append(recs, Record{ID: "r", At: now.Add(-time.Duration(200-i) * time.Second)})
	}
	recs = append([]Record{{ID: "old", At: now.Add(-2 * time.Hour)}}, recs...)
	got := b.prune(recs, now)
	if len(got) != maxRecords {
		t.Fatalf("kept %d records, want the cap %d", len(got), maxRecords)
	}
	if !got[len(got)-1].At.Equal(recs[len(recs)-1].At) {
		t.Fatal("the newest record must be kept")
	}
	for _, r := range got {
		if r.ID == "old" {
			t.Fatal("a record outside the window was kept")
		}
	}
}
