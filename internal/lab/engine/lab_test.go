package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/selfheal/selfheal/internal/lab/testutil"
	"github.com/selfheal/selfheal/internal/nagios"
)

// A plugin whose state comes from a file, and a handler that records its
// arguments: the lab is tested with nothing of ours but the lab itself.
const checkScript = `#!/bin/sh
read s < "$1"
echo "lab state $s"
exit "$s"
`

const handlerScript = `#!/bin/sh
echo "$*" >> "$(dirname "$0")/handler.calls"
`

func scripts(t *testing.T) (dir, stateFile string) {
	t.Helper()
	dir = t.TempDir()
	stateFile = filepath.Join(dir, "state")
	for name, body := range map[string]string{"check.sh": checkScript, "handler.sh": handlerScript, "state": "0\n"} {
		mode := os.FileMode(0o755)
		if name == "state" {
			mode = 0o644
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir, stateFile
}

const nagiosObjects = `
define command {
  command_name lab_check
  command_line $USER1$/check.sh $USER2$
}
define command {
  command_name lab_handler
  command_line $USER1$/handler.sh $SERVICESTATE$ $SERVICESTATETYPE$ $SERVICEATTEMPT$
}
define host {
  host_name             h1
  address               127.0.0.1
  active_checks_enabled 0
  max_check_attempts    1
}
define service {
  host_name           h1
  service_description svc
  check_command       lab_check
  event_handler       lab_handler
  max_check_attempts  2
  check_interval      1
  retry_interval      1
}
`

const icingaObjects = `
object CheckCommand "lab_check" { command = [ LabDir + "/check.sh", LabState ] }
object EventCommand "lab_handler" {
  command = [ LabDir + "/handler.sh", "$service.state$", "$service.state_type$", "$service.check_attempt$" ]
}
object Host "h1" {
  address = "127.0.0.1"
  check_command = "lab_check"
  enable_active_checks = false
}
object Service "svc" {
  host_name = "h1"
  check_command = "lab_check"
  event_command = "lab_handler"
  max_check_attempts = 2
  check_interval = 1s
  retry_interval = 1s
}
`

func TestLabDrivesRealEngine(t *testing.T) {
	for _, kind := range []Kind{Nagios4, Icinga2} {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			bin := testutil.LookTool(t, string(kind), "/usr/sbin/"+string(kind))
			dir, stateFile := scripts(t)
			cfg := Config{Kind: kind, Binary: bin}
			if kind == Nagios4 {
				cfg.Objects = nagiosObjects
				cfg.Resources = map[string]string{"USER1": dir, "USER2": stateFile}
			} else {
				cfg.Objects = icingaObjects
				cfg.Resources = map[string]string{"LabDir": dir, "LabState": stateFile}
			}
			inst, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := inst.Close(); err != nil {
					t.Error(err)
				}
			})
			if len(inst.Dir) > 40 {
				t.Errorf("instance dir %q is long; the query socket needs a short one", inst.Dir)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			if out, err := inst.Validate(ctx); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if err := inst.Start(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := inst.WaitService(ctx, "h1", "svc", StateIs(nagios.OK, false)); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(stateFile, []byte("2\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := inst.WaitService(ctx, "h1", "svc", StateIs(nagios.Critical, true))
			if err != nil {
				t.Fatal(err)
			}
			if s.Output != "lab state 2" {
				t.Errorf("plugin output = %q", s.Output)
			}
			if _, err := inst.WaitLog(ctx, Alert("h1", "svc", "CRITICAL", "HARD")); err != nil {
				t.Fatal(err)
			}
			// The handler ran at HARD (Nagios: attempt 2; Icinga 2 resets it to 1).
			if err := poll(ctx, 100*time.Millisecond, func() (bool, error) {
				b, _ := os.ReadFile(filepath.Join(dir, "handler.calls"))
				return strings.Contains(string(b), "CRITICAL HARD"), nil
			}); err != nil {
				b, _ := os.ReadFile(filepath.Join(dir, "handler.calls"))
				t.Fatalf("handler never saw CRITICAL HARD: %v; calls:\n%s", err, b)
			}
			if err := inst.SubmitCommand("ADD_SVC_COMMENT;h1;svc;1;lab;hello from the lab"); err != nil {
				t.Fatal(err)
			}
			c, err := inst.WaitComment(ctx, "h1", "svc", "hello from the lab")
			if err != nil {
				t.Fatal(err)
			}
			if c.Author != "lab" {
				t.Errorf("comment author = %q", c.Author)
			}
			// A passive OK takes effect through the same FIFO.
			if err := os.WriteFile(stateFile, []byte("0\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := inst.SubmitCommand("SCHEDULE_FORCED_SVC_CHECK;h1;svc;" + strconv.FormatInt(time.Now().Unix(), 10)); err != nil {
				t.Fatal(err)
			}
			if _, err := inst.WaitService(ctx, "h1", "svc", StateIs(nagios.OK, true)); err != nil {
				t.Fatal(err)
			}
			pid := inst.PID()
			if err := inst.Stop(); err != nil {
				t.Fatal(err)
			}
			if inst.Running() {
				t.Error("still running after Stop")
			}
			if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("process group %d still has members: %v", pid, err)
			}
			// The FIFO outlives the engine; writing must fail fast, not hang.
			if err := inst.SubmitCommand("ADD_SVC_COMMENT;h1;svc;1;lab;late"); !errors.Is(err, ErrNoReader) {
				t.Errorf("write to a FIFO without reader: err = %v, want ErrNoReader", err)
			}
		})
	}
}
