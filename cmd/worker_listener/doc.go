// Command worker_listener is the selfheal agent that runs on each worker
// host. It accepts authenticated requests from handle_worker (the Nagios
// event handler) and runs the allow-listed action the request names:
// restart, start, stop or status of a configured service. Nothing from the
// wire ever reaches a command line or a shell.
//
// The agent is the authority on its services: it has an identity (agent:
// in the config) that every request and reply names, it holds only its own
// host key, it runs at most one restart per fault, and it keeps and
// enforces each service's restart budget, durably, in state_dir.
//
// Usage:
//
//	worker_listener serve --config FILE          # TCP daemon (default port 5690)
//	worker_listener inetd --config FILE [--log-file FILE]
//	worker_listener import-key --out FILE        # this host's key from stdin, mode 0600
//	worker_listener check-config --config FILE    # validate, list every problem, exit
//	worker_listener -V | --version
//
// serve listens on the config's listen address, or on the sockets systemd
// passes (LISTEN_FDS/LISTEN_PID, Accept=no). SIGTERM stops accepting and
// waits up to shutdown_grace for running actions, then kills them. SIGHUP
// reloads the config, keys, TLS files and audit log; a config that fails
// validation is refused and the running one stays.
//
// The agent runs as root, so it trusts no file another user could write:
// the config, its keys and TLS files, state_dir, the audit log, every
// action's binary and every existing file among its arguments, and each
// directory on the way to them, must be owned by root or the agent's user
// and writable by no one else (state_dir: its own, 0700), or it refuses to
// start or reload. check-config lists every such problem with the command
// that fixes it (docs/security.md, "A local attacker").
//
// inetd serves one connection on stdin/stdout, as xinetd (or a systemd
// socket with Accept=yes) starts it; stdin, stdout and stderr are the
// socket there, so the operational log goes to --log-file and the config
// must name an audit_log file. It keeps serve's guarantees: the per-service
// lock in state_dir serialises the processes, and the records coalesce
// identical requests and hold the fault and budget rules.
//
// import-key reads one host key line on stdin, as printed by
// `handle_worker issue-key --key-file FLEET --agent NAME` on a monitoring
// node, refuses a fleet key, and writes it with mode 0600 to a new file.
//
// The protocol is in docs/protocol.md, the threat model in
// docs/security.md, and a commented sample config, xinetd service and
// systemd units in nagios-config/listener/.
//
// Exit codes: 0 clean stop, 1 runtime or config error, 2 usage error.
package main
