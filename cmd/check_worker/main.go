package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"

	"github.com/selfheal/selfheal/internal/check"
	"github.com/selfheal/selfheal/internal/cli"
	"github.com/selfheal/selfheal/internal/version"
)

type grammar struct {
	Hostname   string           `short:"H" placeholder:"HOST" help:"Worker host name or address."`
	Port       int              `short:"p" placeholder:"PORT" help:"TCP port (default 80, or 443 with --ssl)."`
	Path       string           `default:"/status" help:"Path of the status endpoint."`
	SSL        bool             `short:"S" name:"ssl" help:"Use HTTPS."`
	URL        string           `short:"u" name:"url" placeholder:"URL" help:"Full URL of the status endpoint instead of -H/-p/--path (a value starting with / is taken as --path, as check_http does)."`
	UnixSocket string           `name:"unix-socket" placeholder:"PATH" help:"Talk HTTP over this unix socket (local workers, e.g. under NRPE)."`
	Timeout    string           `short:"t" default:"10" placeholder:"SECONDS[:STATE]" help:"Give up after SECONDS; STATE for a worker that does not answer (default critical)."`
	Warning    string           `short:"w" placeholder:"RANGE" help:"Response time (seconds) range for WARNING."`
	Critical   string           `short:"c" placeholder:"RANGE" help:"Response time (seconds) range for CRITICAL."`
	Metric     []string         `sep:"none" placeholder:"NAME,warn=RANGE,crit=RANGE" help:"Thresholds on a worker metric (repeatable)."`
	MaxAge     string           `name:"max-age" placeholder:"WARN,CRIT" help:"Heartbeat age limits (seconds or durations, e.g. 60,300 or ,5m)."`
	MinUptime  string           `name:"min-uptime" placeholder:"DURATION" help:"WARNING while the worker has been up for less than this (shows restart loops)."`
	Plain      bool             `help:"Not JSON: 2xx is OK, anything else CRITICAL, the body's first line is the message."`
	Header     []string         `sep:"none" placeholder:"'NAME: VALUE'" help:"Extra request header, e.g. an auth token (repeatable)."`
	CAFile     string           `name:"ca-file" placeholder:"FILE" help:"PEM CA bundle to verify the worker's certificate."`
	CertFile   string           `name:"cert-file" placeholder:"FILE" help:"PEM client certificate (mTLS)."`
	KeyFile    string           `name:"key-file" placeholder:"FILE" help:"PEM client key (mTLS)."`
	Insecure   bool             `help:"Do not verify the worker's certificate."`
	Verbose    int              `short:"v" type:"counter" help:"Diagnostics on stderr (repeatable); stdout stays plugin output only."`
	Version    kong.VersionFlag `short:"V" help:"Print the version and exit 3."`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, so the watchdog and tests share one path.
func run(args []string, stdout, stderr io.Writer) int {
	out := &onceWriter{w: stdout}
	return cli.Guard(out, stderr, func() int {
		var g grammar
		app := cli.App{
			Name:        "check_worker",
			Description: "Nagios plugin: is this worker healthy? Reads the worker's status document.",
			Version:     version.String("check_worker"),
			Stdout:      stdout, Stderr: stderr,
			InfoExit: cli.Unknown,
		}
		if !fastParse(args, &g) {
			g = grammar{}
			if _, err := cli.Parse(app, &g, args); err != nil {
				return cli.PluginExit(out, err)
			}
		}
		cfg, tlsOpts, err := g.flags().Config("check_worker/" + version.Version + " (selfheal)")
		if err != nil {
			return cli.PluginExit(out, &cli.UsageError{Err: err})
		}
		log := zerolog.Nop()
		if g.Verbose > 0 {
			lvl := zerolog.DebugLevel
			if g.Verbose > 2 {
				lvl = zerolog.TraceLevel
			}
			// stderr only: stdout is Nagios' and must carry nothing but the result.
			log = zerolog.New(zerolog.ConsoleWriter{Out: stderr, NoColor: true, TimeFormat: time.TimeOnly}).
				Level(lvl).With().Timestamp().Logger()
		}
		// Last line of defence: Run and the TLS file reads are bounded, so
		// this only fires on a bug, which is our failure and therefore UNKNOWN.
		wd := time.AfterFunc(cfg.Timeout+2*time.Second, func() {
			out.write(fmt.Sprintf("WORKER UNKNOWN - check_worker did not finish within %s (internal hang)\n", cfg.Timeout))
			os.Exit(cli.Unknown)
		})
		defer wd.Stop()
		tc, err := check.NewTLSConfig(tlsOpts)
		if err != nil {
			return cli.PluginExit(out, &cli.UsageError{Err: err})
		}

		res := check.Run(context.Background(), cfg, check.Deps{TLS: tc, Logger: &log})
		out.write(res.Output)
		return int(res.State)
	})
}

// flags hands the parsed command line to the core, which validates it.
func (g *grammar) flags() check.Flags {
	return check.Flags{
		Hostname: g.Hostname, Port: g.Port, Path: g.Path, SSL: g.SSL, URL: g.URL, UnixSocket: g.UnixSocket,
		Timeout: g.Timeout, Warning: g.Warning, Critical: g.Critical, Metric: g.Metric,
		MaxAge: g.MaxAge, MinUptime: g.MinUptime, Plain: g.Plain, Header: g.Header,
		CAFile: g.CAFile, CertFile: g.CertFile, KeyFile: g.KeyFile, Insecure: g.Insecure,
	}
}

// onceWriter lets exactly one answer reach stdout, whether it comes from
// the check, a usage error, Guard or the watchdog.
type onceWriter struct {
	mu   sync.Mutex
	w    io.Writer
	done bool
}

func (o *onceWriter) Write(p []byte) (int, error) {
	o.write(string(p))
	return len(p), nil
}

func (o *onceWriter) write(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.done {
		return
	}
	o.done = true
	io.WriteString(o.w, s)
}
