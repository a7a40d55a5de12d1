package cli

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
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
		{"ok", []string{"-H", "x"}, Unknown, -1, ""},
		{"help exits unknown for plugins", []string{"--help"}, Unknown, Unknown, "Usage: prog"},
		{"short help", []string{"-h"}, Unknown, Unknown, "Usage: prog"},
		{"help exits 0 for daemons", []string{"--help"}, OK, OK, "Usage: prog"},
		{"version", []string{"-V"}, Unknown, Unknown, "prog 1.2.3"},
		{"missing required flag", []string{}, Unknown, Unknown, "UNKNOWN - missing flags: --host"},
		{"bad int", []string{"-H", "x", "-t", "abc"}, Unknown, Unknown, "UNKNOWN - --timeout"},
		{"unknown flag", []string{"-H", "x", "--nope"}, Unknown, Unknown, "UNKNOWN - unknown flag --nope"},
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
	if code != Unknown {
		t.Fatalf("panic gave %d, want %d", code, Unknown)
	}
	if got := out.String(); got != "UNKNOWN - internal error: boom second line\n" {
		t.Fatalf("stdout = %q", got)
	}
	if !strings.Contains(errb.String(), "panic: boom") {
		t.Fatalf("stderr lacks the panic: %q", errb.String())
	}
	if code := Guard(&out, &errb, func() int { return 80 }); code != Unknown {
		t.Fatalf("out-of-range code gave %d", code)
	}
	if code := Guard(&out, &errb, func() int { return Critical }); code != Critical {
		t.Fatalf("critical passed through as %d", code)
	}
}
