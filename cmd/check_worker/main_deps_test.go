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
// and multipart code on every start. An import that brings net/http back,
// directly or through a dependency, fails here.
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
		if d == "net/http" || strings.HasPrefix(d, "net/http/") || d == "mime/multipart" {
			t.Errorf("check_worker links %s", d)
		}
	}
}
