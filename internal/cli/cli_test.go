package cli

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/alecthomas/kong"

	"github.com/selfheal/selfheal/internal/nagios"
)

// Exit codes as the tables read them.
const (
	okCode       = int(nagios.OK)
	criticalCode = int(nagios.Critical)
	unknownCode  = int(nagios.Unknown)
)

type grammar struct {
	Version kong.VersionFlag `short:"V" help:"Print version and exit."`
	Timeout int              `short:"t" default:"10" help:"Timeout."`
	Host    string           `short:"H" required:"" help:"Host."`
}

func TestParse(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		infoExit int
		wantCode int // -1: parsed fine
		wantOut  string
	}{
		{"ok", []string{"-H", "x"}, unknownCode, -1, ""},
		{"help exits unknown for plugins", []string{"--help"}, unknownCode, unknownCode, "Usage: prog"},
		{"short help", []string{"-h"}, unknownCode, unknownCode, "Usage: prog"},
		{"help exits 0 for daemons", []string{"--help"}, okCode, okCode, "Usage: prog"},
		{"version", []string{"-V"}, unknownCode, unknownCode, "prog 1.2.3"},
		{"missing required flag", []string{}, unknownCode, unknownCode, "UNKNOWN - missing flags: --host"},
		{"bad int", []string{"-H", "x", "-t", "abc"}, unknownCode, unknownCode, "UNKNOWN - --timeout"},
		{"unknown flag", []string{"-H", "x", "--nope"}, unknownCode, unknownCode, "UNKNOWN - unknown flag --nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			var g grammar
			app := App{Name: "prog", Description: "d", Version: "prog 1.2.3", Stdout: &out, Stderr: &errb, InfoExit: tt.infoExit}
			_, err := Parse(app, &g, tt.args)
			if tt.wantCode == -1 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if g.Host != "x" || g.Timeout != 10 {
					t.Fatalf("parsed %+v", g)
				}
				return
			}
			if err == nil {
				t.Fatal("expected an error")
			}
			code := PluginExit(&out, err)
			if code != tt.wantCode {
				t.Fatalf("code = %d, want %d", code, tt.wantCode)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Fatalf("stdout %q does not contain %q", out.String(), tt.wantOut)
			}
			var ue *UsageError
			if errors.As(err, &ue) && strings.Count(out.String(), "\n") != 1 {
				t.Fatalf("usage error must be one line, got %q", out.String())
			}
		})
	}
}

func TestGuard(t *testing.T) {
	var out, errb bytes.Buffer
	code := Guard(&out, &errb, func() int { panic("boom\nsecond line") })
	if code != unknownCode {
		t.Fatalf("panic gave %d, want %d", code, unknownCode)
	}
	if got := out.String(); got != "UNKNOWN - internal error: boom second line\n" {
		t.Fatalf("stdout = %q", got)
	}
	if !strings.Contains(errb.String(), "panic: boom") {
		t.Fatalf("stderr lacks the panic: %q", errb.String())
	}
	for _, bad := range []int{80, 4, -1} {
		if code := Guard(&out, &errb, func() int { return bad }); code != unknownCode {
			t.Fatalf("out-of-range code %d gave %d", bad, code)
		}
	}
	if code := Guard(&out, &errb, func() int { return criticalCode }); code != criticalCode {
		t.Fatalf("critical passed through as %d", code)
	}
}
