package main

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestLinksNoNetHTTP: check_worker reads its one response itself
// (internal/check/httpget.go) rather than load net/http's client, HTTP/2
// and multipart code on every start; it logs -v through check.Logger, not
// zerolog (log/slog, go-colorable), and renders through internal/plugin,
// not go-nagios (compress/gzip). Each cost start-up time in every run
// (docs/benchmarks.md). An import that brings one back, directly or
// through a dependency, fails here.
func TestLinksNoNetHTTP(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", ".")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, stderr.String())
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 || !slices.Contains(deps, "crypto/tls") {
		t.Fatalf("go list -deps gave %d packages without crypto/tls; the check would prove nothing", len(deps))
	}
	for _, d := range deps {
		if d == "net/http" || strings.HasPrefix(d, "net/http/") || d == "mime/multipart" ||
			d == "github.com/rs/zerolog" || d == "log/slog" || d == "github.com/atc0005/go-nagios" || d == "compress/gzip" {
			t.Errorf("check_worker links %s", d)
		}
	}
}
