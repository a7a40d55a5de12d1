package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"

	"github.com/selfheal/selfheal/internal/cli"
	"github.com/selfheal/selfheal/internal/listener"
	"github.com/selfheal/selfheal/internal/protocol"
	"github.com/selfheal/selfheal/internal/version"
)

type grammar struct {
	Version     kong.VersionFlag `short:"V" help:"Print the version and exit."`
	Serve       serveCmd         `cmd:"" default:"withargs" help:"Run the TCP daemon (systemd socket activation when LISTEN_FDS is set)."`
	Inetd       inetdCmd         `cmd:"" help:"Serve one connection on stdin/stdout, as xinetd or a systemd Accept=yes socket runs it."`
	ImportKey   importKeyCmd     `cmd:"" name:"import-key" help:"Write this host's key, read from stdin (handle_worker issue-key), to a new file with mode 0600."`
	CheckConfig checkConfigCmd   `cmd:"" name:"check-config" help:"Validate a config file and its keys, actions and TLS files, then exit."`
	PolkitRule  polkitRuleCmd    `cmd:"" name:"polkit-rule" help:"Print the polkit rule that lets the agent's user run exactly the systemctl actions of the config (for /etc/polkit-1/rules.d/)."`
}

type serveCmd struct {
	Config string `short:"c" required:"" type:"path" help:"Config file (YAML)."`
}
type inetdCmd struct {
	Config  string `short:"c" required:"" type:"path" help:"Config file (YAML)."`
	LogFile string `type:"path" help:"Operational log file (stdin/stdout/stderr are the socket, so nothing is logged there)."`
}
type importKeyCmd struct {
	Out string `required:"" type:"path" help:"File to create with mode 0600 (never overwritten); list it under keys: in the config."`
}
type checkConfigCmd struct {
	Config string `short:"c" required:"" type:"path" help:"Config file (YAML)."`
}
type polkitRuleCmd struct {
	Config string `short:"c" required:"" type:"path" help:"Config file (YAML)."`
	User   string `default:"selfheal" help:"The user the agent runs as (User= of its unit)."`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var g grammar
	app := cli.App{
		Name:        "worker_listener",
		Description: "The selfheal agent: runs allow-listed restart actions for authenticated requests.",
		Version:     version.String("worker_listener"),
		Stdout:      stdout, Stderr: stderr, InfoExit: 0,
	}
	kctx, err := cli.Parse(app, &g, args)
	if err != nil {
		var er *cli.ExitRequest
		if errors.As(err, &er) {
			return er.Code
		}
		fmt.Fprintf(stderr, "worker_listener: %s\n", err)
		return 2
	}
	switch kctx.Command() {
	case "import-key":
		return importKey(g.ImportKey, stdin, stdout, stderr)
	case "check-config":
		return checkConfig(g.CheckConfig.Config, stdout, stderr)
	case "polkit-rule":
		return polkitRule(g.PolkitRule, stdout, stderr)
	case "inetd":
		return inetd(g.Inetd)
	default:
		return serve(g.Serve.Config, stderr)
	}
}

// importKey writes the host key read from stdin: the far end of
// `handle_worker issue-key ... | ssh root@host worker_listener import-key`.
// Only a host key is accepted: a fleet key on a worker host would give its
// root every other host.
func importKey(c importKeyCmd, stdin io.Reader, stdout, stderr io.Writer) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "worker_listener import-key: "+format+"\n", a...)
		return 1
	}
	b, err := io.ReadAll(io.LimitReader(stdin, maxKeyLine+1))
	if err != nil {
		return fail("reading stdin: %v", err)
	}
	if len(b) > maxKeyLine {
		return fail("stdin holds more than one key line (over %d bytes)", maxKeyLine)
	}
	var k protocol.Key
	if err := k.UnmarshalText(b); err != nil {
		return fail("stdin: %v", err)
	}
	if k.Kind == protocol.FleetKey {
		return fail("this is fleet key %q: a fleet key belongs on the monitoring nodes only; send this host's key instead: handle_worker issue-key --key-file FLEET --agent NAME", k.ID)
	}
	if k.Kind != protocol.HostKey {
		return fail("stdin does not hold a host key")
	}
	if err := protocol.WriteKeyFile(c.Out, k); err != nil {
		return fail("%v", err)
	}
	fmt.Fprintf(stdout, "wrote host key for agent %s (fleet %s) to %s\n", k.Agent, k.ID, c.Out)
	return 0
}

// maxKeyLine bounds what import-key reads: a host key line is ~150 bytes.
const maxKeyLine = 1024

func checkConfig(path string, stdout, stderr io.Writer) int {
	cfg, err := listener.Load(path)
	if err != nil {
		fmt.Fprintf(stderr, "worker_listener: config refused:\n%v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "config OK: agent %s, listen %s, keys %s, %d service(s)\n", cfg.Agent, cfg.Listen, strings.Join(cfg.KeyIDs(), ","), len(cfg.Services))
	return 0
}

func polkitRule(c polkitRuleCmd, stdout, stderr io.Writer) int {
	cfg, err := listener.Load(c.Config)
	if err == nil {
		var rule string
		if rule, err = listener.PolkitRule(cfg, c.User); err == nil {
			fmt.Fprint(stdout, rule)
			return 0
		}
	}
	fmt.Fprintf(stderr, "worker_listener polkit-rule: %v\n", err)
	return 1
}

func serve(path string, stderr io.Writer) int {
	// SIGHUP's default action kills the process, and a reload (logrotate,
	// systemctl reload) may come while the config is still loading.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	log := zerolog.New(stderr).With().Timestamp().Str("component", "worker_listener").Logger()
	cfg, err := listener.Load(path)
	if err != nil {
		log.Error().Msg("config refused: " + err.Error())
		return 1
	}
	lns, err := listeners(cfg.Listen)
	if err != nil {
		log.Error().Err(err).Msg("listen")
		return 1
	}
	srv, err := listener.NewServer(cfg, listener.Deps{Log: log})
	if err != nil {
		log.Error().Err(err).Msg("start")
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		for range hup {
			nc, err := listener.Load(path)
			if err == nil {
				err = srv.Reload(nc)
			}
			if err != nil {
				log.Error().Msg("reload refused, keeping the running config: " + err.Error())
				// Kept, but not trusted blindly: an action whose files now
				// fail the rule is refused at every run; say which.
				for _, d := range srv.Distrusted() {
					log.Error().Msg("action disabled until its files pass the trust rule again: " + d)
				}
				continue
			}
			log.Info().Strs("keys", nc.KeyIDs()).Int("services", len(nc.Services)).Msg("config reloaded")
		}
	}()
	addrs := make([]string, len(lns))
	for i, l := range lns {
		addrs[i] = l.Addr().String()
	}
	log.Info().Strs("listen", addrs).Str("agent", cfg.Agent).Strs("keys", cfg.KeyIDs()).Int("services", len(cfg.Services)).Str("version", version.Version).Msg("serving")
	if err := srv.Serve(ctx, lns...); err != nil {
		log.Warn().Err(err).Msg("stopped")
		return 1
	}
	log.Info().Msg("stopped")
	return 0
}

// listeners returns systemd's sockets when socket-activated (LISTEN_PID is
// us, LISTEN_FDS >= 1), else a new listener on addr.
func listeners(addr string) ([]net.Listener, error) {
	if pid, _ := strconv.Atoi(os.Getenv("LISTEN_PID")); pid == os.Getpid() {
		n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS"))
		os.Unsetenv("LISTEN_PID")
		os.Unsetenv("LISTEN_FDS")
		os.Unsetenv("LISTEN_FDNAMES")
		var lns []net.Listener
		for fd := 3; fd < 3+n; fd++ {
			f := os.NewFile(uintptr(fd), "systemd-socket")
			ln, err := net.FileListener(f)
			f.Close()
			if err != nil {
				return nil, fmt.Errorf("systemd fd %d is not a listening socket (use Accept=no with serve, or the inetd command with Accept=yes): %w", fd, err)
			}
			lns = append(lns, ln)
		}
		if len(lns) > 0 {
			return lns, nil
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return []net.Listener{ln}, nil
}

// inetd serves the one connection on stdin. stdout and stderr are the
// socket too, so nothing but the reply may be written there.
func inetd(c inetdCmd) int {
	log := zerolog.Nop()
	if c.LogFile != "" {
		// As the audit log: through its checked directory, never a symlink;
		// refused, there is nowhere to say so (stderr is the socket).
		if f, err := listener.OpenLog(c.LogFile); err == nil {
			defer f.Close()
			log = zerolog.New(f).With().Timestamp().Str("component", "worker_listener").Int("pid", os.Getpid()).Logger()
		}
	}
	conn, err := net.FileConn(os.Stdin)
	if err != nil {
		log.Error().Err(err).Msg("stdin is not a socket")
		return 1
	}
	refuse := func(msg string, err error) int {
		log.Error().Err(err).Msg(msg)
		conn.Write(protocol.MarshalReply(protocol.Reply{Outcome: protocol.OutcomeDenied, ExitCode: -1}, nil, ""))
		conn.Close()
		return 1
	}
	cfg, err := listener.Load(c.Config)
	if err != nil {
		return refuse("config refused", err)
	}
	if cfg.AuditLog == "" || cfg.AuditLog == "-" {
		return refuse("inetd mode needs audit_log set to a file: stderr is the peer's socket", nil)
	}
	srv, err := listener.NewServer(cfg, listener.Deps{Log: log, Inetd: true})
	if err != nil {
		return refuse("start", err)
	}
	defer srv.Close()
	srv.ServeConn(conn)
	return 0
}
