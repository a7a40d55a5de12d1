package check

import "testing"

func TestTarget(t *testing.T) {
	tests := []struct {
		g    Flags
		want string
	}{
		{Flags{Hostname: "10.0.0.1", Port: 8080, Path: "/status"}, "http://10.0.0.1:8080/status"},
		{Flags{Hostname: "w1", Path: "/status", SSL: true}, "https://w1:443/status"},
		{Flags{Hostname: "::1", Port: 9, Path: "/s"}, "http://[::1]:9/s"},
		{Flags{Hostname: "[::1]", Port: 9, Path: "/s"}, "http://[::1]:9/s"},
		{Flags{Hostname: "w1", Port: 81, URL: "/health?full=1", Path: "/status"}, "http://w1:81/health?full=1"},
		{Flags{URL: "https://w1:8443/status"}, "https://w1:8443/status"},
		{Flags{UnixSocket: "/run/w.sock", Path: "/status"}, "http://localhost:80/status"},
	}
	for _, tt := range tests {
		got, err := tt.g.Target()
		if err != nil || got != tt.want {
			t.Errorf("%+v: %q %v, want %q", tt.g, got, err, tt.want)
		}
	}
	for _, g := range []Flags{
		{Path: "/status"},
		{Hostname: "a/b", Path: "/status"},
		{Hostname: "w1", Path: "status"},
		{URL: "ftp://w1/"},
		{URL: "http://"},
		{URL: "http://w1/", UnixSocket: "/s"},
	} {
		if got, err := g.Target(); err == nil {
			t.Errorf("%+v: accepted as %q", g, got)
		}
	}
}
