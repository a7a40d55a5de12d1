package worker

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// controlBase turns a --listen address into the loopback URL that reaches
// it: a wildcard host (":8080", "0.0.0.0:8080") is reached on 127.0.0.1.
func controlBase(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("--listen %q: %w", listen, err)
	}
	if port == "" || port == "0" {
		return "", fmt.Errorf("--listen %q: a fixed port is needed", listen)
	}
	switch {
	case host == "" || host == "0.0.0.0":
		host = "127.0.0.1"
	case host == "::":
		host = "::1"
	}
	if a, err := netip.ParseAddr(host); err == nil && !a.Unmap().IsLoopback() {
		// The control endpoint only answers loopback peers; a worker bound
		// to one specific non-loopback address cannot be reached from here.
		return "", fmt.Errorf("--listen %q: the control endpoint needs a loopback or wildcard address", listen)
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// StatusURL is the worker's status endpoint for a --listen address.
func StatusURL(listen string) (string, error) {
	base, err := controlBase(listen)
	if err != nil {
		return "", err
	}
	return base + "/status", nil
}

// SendFault injects f into the worker listening on listen and returns its
// one-line answer.
func SendFault(ctx context.Context, client *http.Client, listen string, f Fault) (string, error) {
	base, err := controlBase(listen)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/fault/"+string(f), nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("fault %s: %w", f, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	line := strings.TrimSpace(string(body))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("fault %s: HTTP %d: %s", f, resp.StatusCode, line)
	}
	return line, nil
}
