// Command handle_worker is the Nagios/Icinga 2 event handler of selfheal: on
// a HARD CRITICAL (or, optionally, SOFT CRITICAL attempt N) it asks the
// worker host's worker_listener to restart the worker, at most once per
// fault and within a restart budget, and tells Nagios what it did.
//
// Usage:
//
//	handle_worker event [flags] STATE STATETYPE ATTEMPT HOSTADDRESS HOSTNAME SERVICEDESC
//	handle_worker send  VERB --host ADDR --target NAME --key-file FILE [flags]
//
// Nagios command definition (pass these macros only, never $SERVICEOUTPUT$):
//
//	define command {
//	    command_name  handle_worker
//	    command_line  /usr/lib/nagios/plugins/handle_worker event --key-file /etc/selfheal/keys/nagios1.key \
//	        --target $_SERVICEWORKER_TARGET$ --state-dir /var/lib/selfheal/handler \
//	        --command-file /var/lib/nagios4/rw/nagios.cmd --log-file /var/log/selfheal/handle_worker.log \
//	        $SERVICESTATE$ $SERVICESTATETYPE$ $SERVICEATTEMPT$ $HOSTADDRESS$ $HOSTNAME$ $SERVICEDESC$
//	}
//
// Icinga 2 passes $service.state$ $service.state_type$ $service.check_attempt$
// $address$ $host.name$ $service.name$ in the same order.
//
// Flags of both subcommands:
//
//	--key-file FILE          key shared with the listener (mode 0600 or 0400); required
//	--target NAME            service name on the listener; required
//	--port 5690              listener port
//	--tls-ca, --tls-cert, --tls-key, --tls-server-name   TLS 1.3 / mTLS to the listener
//	--state-dir DIR          restart budget state (default /var/lib/selfheal/handler; must exist)
//	--max-restarts 3 --window 1h --min-gap 2m   the budget (failed and manual restarts count)
//	--deadline 20s           total time limit, retries included
//	--log-file FILE          JSON log lines (default stderr)
//
// Flags of event only:
//
//	--address ADDR           connect here instead of HOSTADDRESS
//	--action restart         or start
//	--soft-attempt N         also act at SOFT CRITICAL from attempt N (0 = off); never twice per fault
//	--command-file FIFO      Nagios' external command file: comments and a forced re-check
//	--recheck-delay 2s       when to re-check after a successful restart
//	--dry-run                decide and print, send and write nothing
//
// Flags of send only: --host ADDR (required), --hostname NAME and --service
// DESC (the Nagios names the budget state is kept under; default --host and
// --target). A manual restart or start is recorded in the budget but never
// refused by it.
//
// It prints one human line on stdout. Exit codes: 0 healed or nothing to do;
// 1 healing needed but withheld (budget spent, min gap, state unusable: fail
// closed); 2 healing attempted and failed (listener unreachable, denied,
// busy, rate-limited, action failed or timed out); 3 usage or configuration
// error. docs/event-handler.md has the decision table and the budget rules.
package main
