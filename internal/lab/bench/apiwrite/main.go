// Command apiwrite measures what the Icinga 2 REST API write-back adds to
// one heal: the handler's reads before it acts (the service with its host,
// and its own comments) and its writes after (the success comment, the
// deletion of the one it replaces, the forced re-check), against a real
// Icinga 2 with only the api feature, as the ApiUser of docs/icinga-api.md.
// It prints the median and p95 of N heals' worth of calls.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/selfheal/selfheal/internal/handler"
	"github.com/selfheal/selfheal/internal/icingaapi"
	"github.com/selfheal/selfheal/internal/lab/engine"
)

func main() {
	n := flag.Int("n", 200, "heals to time")
	flag.Parse()
	if err := run(*n); err != nil {
		fmt.Fprintln(os.Stderr, "apiwrite:", err)
		os.Exit(1)
	}
}

func run(n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	perms := []string{`"objects/query/Service"`, `"objects/query/Host"`, `"objects/query/Comment"`,
		`"actions/add-comment"`, `"actions/remove-comment"`, `"actions/reschedule-check"`, `"filter-expression"`}
	a, err := engine.NewAPI(engine.APIConfig{
		Objects: `object CheckCommand "lab-true" { command = [ "/bin/true" ] }
object Host "web1" { check_command = "lab-true"; enable_active_checks = false }
object Service "worker" { host_name = "web1"; check_command = "lab-true"; check_interval = 1h }
`,
		Users: []engine.APIUser{{Name: "selfheal", Password: "bench-password", Permissions: perms}},
	})
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.Start(ctx); err != nil {
		return err
	}
	names := [][2]string{{"web1", "worker"}}
	// Each heal is a new handle_worker process: a new client, a new TLS
	// handshake (the CA is read each time too). One warm-up heal first.
	heal := func() (time.Duration, error) {
		start := time.Now()
		c, err := icingaapi.New(icingaapi.Config{URL: a.URL, CAFile: a.CAFile, ServerName: a.NodeName, User: "selfheal", Password: "bench-password"})
		if err != nil {
			return 0, err
		}
		defer c.Close()
		e := handler.IcingaEngine{Client: c}
		sd, err := e.Status(ctx, names)
		if err != nil {
			return 0, err
		}
		cmds := []handler.Command{handler.AddSvcComment("web1", "worker", false, handler.Author, "auto-restart ok in 12ms (bench)"),
			handler.ScheduleForcedSvcCheck("web1", "worker", time.Now().Add(time.Hour))}
		for _, old := range sd.CommentsOn("web1", "worker", handler.Author) {
			if d, ok := handler.DelSvcComment(old.ID); ok {
				cmds = append(cmds, d)
			}
		}
		if err := e.Write(ctx, time.Now(), cmds...); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}
	if _, err := heal(); err != nil {
		return err
	}
	var ds []time.Duration
	for range n {
		d, err := heal()
		if err != nil {
			return err
		}
		ds = append(ds, d)
	}
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	fmt.Printf("icinga api write-back per heal (read service+comments, add comment, delete the old one, reschedule): median %.2f ms  p95 %.2f ms  (%d heals)\n",
		ms(ds[len(ds)/2]), ms(ds[len(ds)*95/100]), n)
	fmt.Printf("target < 50 ms: %v\n", ms(ds[len(ds)/2]) < 50)
	return nil
}
