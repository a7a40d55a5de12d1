package engine

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
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
	if s.State != Critical || !s.Hard || s.Attempt != 3 || s.MaxAttempts != 3 || !s.HasBeenChecked {
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

func TestParseLogLine(t *testing.T) {
	tests := []struct {
		line   string
		ok     bool
		typ    string
		fields []string
	}{
		{"[1764023000] SERVICE ALERT: worker1;worker;CRITICAL;HARD;3;CRITICAL - down", true, "SERVICE ALERT",
			[]string{"worker1", "worker", "CRITICAL", "HARD", "3", "CRITICAL - down"}},
		{"[1764023001] SERVICE EVENT HANDLER: worker1;worker;CRITICAL;HARD;3;selfheal-handle-worker", true,
			"SERVICE EVENT HANDLER", []string{"worker1", "worker", "CRITICAL", "HARD", "3", "selfheal-handle-worker"}},
		{"[1764023002] Nagios 4.4.6 starting... (PID=12)", true, "", nil},
		{"no timestamp here", false, "", nil},
		{"[abc] SERVICE ALERT: x;y", false, "", nil},
	}
	for _, tt := range tests {
		e, ok := ParseLogLine(tt.line)
		if ok != tt.ok {
			t.Errorf("%q: ok = %v", tt.line, ok)
			continue
		}
		if !ok {
			continue
		}
		if e.Type != tt.typ || len(e.Fields) != len(tt.fields) {
			t.Errorf("%q: type %q fields %q", tt.line, e.Type, e.Fields)
			continue
		}
		for i := range tt.fields {
			if e.Fields[i] != tt.fields[i] {
				t.Errorf("%q: field %d = %q, want %q", tt.line, i, e.Fields[i], tt.fields[i])
			}
		}
	}
	e, _ := ParseLogLine(tests[0].line)
	if !Alert("worker1", "worker", "CRITICAL", "HARD")(e) || Alert("worker1", "worker", "OK", "")(e) {
		t.Error("Alert matcher wrong")
	}
}

func TestWriteCommandRefusesNonFIFO(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "nagios.cmd")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{plain, filepath.Join(dir, "missing.cmd")} {
		if err := WriteCommand(p, time.Now(), "ADD_SVC_COMMENT;h;s;1;a;b"); !errors.Is(err, ErrNotFIFO) {
			t.Errorf("%s: err = %v, want ErrNotFIFO", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.cmd")); !os.IsNotExist(err) {
		t.Error("WriteCommand created a regular file nobody reads")
	}
}

func TestWriteCommandFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "nagios.cmd")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// No reader: fails at once instead of blocking.
	done := make(chan error, 1)
	go func() { done <- WriteCommand(fifo, time.Now(), "X;1") }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNoReader) {
			t.Fatalf("err = %v, want ErrNoReader", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WriteCommand blocked on a FIFO without reader")
	}
	// With a reader: one line, stamped.
	r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ts := time.Unix(1764023000, 500000000)
	if err := WriteCommand(fifo, ts, "ADD_SVC_COMMENT;h;s;1;a;b"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	n, _ := r.Read(buf)
	if got, want := string(buf[:n]), "[1764023000.500000000] ADD_SVC_COMMENT;h;s;1;a;b\n"; got != want {
		t.Errorf("wrote %q, want %q", got, want)
	}
	if err := WriteCommand(fifo, ts, "A\nB"); err == nil {
		t.Error("accepted a command with a newline (a second, injected command)")
	}
}
