// Command statusd serves a fixed status document on loopback, as a steady
// target for internal/lab/bench/check_selfheal.sh: the plugins and check_http
// are timed against the same endpoint, and a Go server answers in
// microseconds, so the figures measure the plugins, not the server.
//
// Usage: statusd -listen 127.0.0.1:0 -addr-file FILE
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/selfheal/selfheal/internal/status"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	addrFile := flag.String("addr-file", "", "write the bound address here once listening")
	life := flag.Duration("max-life", 10*time.Minute, "exit after this long, so a lost server never lingers")
	flag.Parse()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	started := time.Now().Add(-time.Hour)
	zero, max := 0.0, 1000.0
	mux := http.NewServeMux()
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		now := time.Now()
		d := status.Document{
			Status: "ok", Message: "processed 120 jobs in the last minute",
			Heartbeat: &now, StartedAt: &started, Version: "1.4.2",
			Checks:  []status.Check{{Name: "database", Status: "ok", Message: "select 1 took 3 ms"}},
			Metrics: []status.Metric{{Name: "queue_depth", Value: 12, Min: &zero, Max: &max}},
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(d)
	})
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, []byte(ln.Addr().String()), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	time.AfterFunc(*life, func() { os.Exit(0) })
	log.Fatal(http.Serve(ln, mux))
}
