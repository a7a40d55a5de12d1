package engine

import (
	"path/filepath"
	"testing"

	"github.com/selfheal/selfheal/internal/nagios"
)

func TestReadStatus(t *testing.T) {
	st, err := ReadStatus(filepath.Join("testdata", "status.dat"))
	if err != nil {
		t.Fatal(err)
	}
	s, ok := st.Service("worker1", "worker")
	if !ok {
		t.Fatal("service worker1/worker not found")
	}
	if s.State != nagios.Critical || !s.Hard || s.Attempt != 3 || s.MaxAttempts != 3 || !s.HasBeenChecked {
		t.Errorf("service = %+v", s)
	}
	if s.Output != "CRITICAL - connection refused" {
		t.Errorf("output = %q", s.Output)
	}
	if got := s.LastCheck.Unix(); got != 1764023000 {
		t.Errorf("last_check = %d", got)
	}
	if _, ok := st.Service("worker1", "nope"); ok {
		t.Error("found a service that is not there")
	}
	cs := st.CommentsFor("worker1", "worker")
	if len(cs) != 1 || cs[0].Author != "handle_worker" || cs[0].Text != "restart budget spent: 3 restarts in 1h" {
		t.Errorf("comments = %+v", cs)
	}
}
