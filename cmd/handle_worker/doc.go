// Command handle_worker is the Nagios/Icinga 2 event handler of selfheal: on
// a HARD CRITICAL (or, optionally, SOFT CRITICAL attempt N) it asks the
// worker host's worker_listener (the agent) to restart the worker for one
// named fault, and tells Nagios what the agent answered. The agent is the
// authority: it runs at most one restart per fault and keeps the restart
// budget for every caller. handle_worker also makes the keys: the fleet key
// of the monitoring nodes and each worker host's key derived from it; and
// it checks the files it trusts.
//
// Usage:
//
//	handle_worker event [flags] STATE STATETYPE ATTEMPT HOSTADDRESS HOSTNAME SERVICEDESC
//	handle_worker send  VERB --host ADDR --target NAME --key-file FILE [flags]
//	handle_worker genkey --id ID --out FILE
//	handle_worker issue-key --key-file FLEET --agent NAME [--out FILE]
//	handle_worker check --key-file FILE [--state-dir DIR] [--log-file FILE] [--command-file FIFO]
//
// Nagios command definition (pass these macros only, never $SERVICEOUTPUT$;
// each one quoted argument, so that one Nagios expands to nothing, as
// $STATUSDATAFILE$ after a reload, never shifts the next; the full sample
// is nagios-config/nagios4/commands.cfg):
//
//	define command {
//	    command_name  handle_worker
//	    command_line  /usr/lib/nagios/plugins/handle_worker event --key-file /etc/selfheal/fleet1.key \
//	        "--target=$_SERVICEWORKER_TARGET$" "--fault=$SERVICEPROBLEMID$" --deadline 18s \
//	        --state-dir /var/lib/selfheal/handler "--command-file=$COMMANDFILE$" \
//	        "--status-file=$STATUSDATAFILE$" "--nagios-config=$MAINCONFIGFILE$" \
//	        --log-file /var/log/selfheal/handle_worker.log \
//	        "$SERVICESTATE$" "$SERVICESTATETYPE$" "$SERVICEATTEMPT$" "$HOSTADDRESS$" "$HOSTNAME$" "$SERVICEDESC$"
//	}
//
// An empty optional value is "not given"; an empty --status-file or
// --command-file is looked up in --nagios-config (default
// /etc/nagios4/nagios.cfg); an empty required value sends nothing and
// leaves a comment saying which.
//
// Icinga 2 passes $service.state$ $service.state_type$ $service.check_attempt$
// $address$ $host.name$ $service.name$ in the same order, and --fault
// $service.last_state_change$ (shared by both endpoints of an HA zone).
//
// Flags of event and send:
//
//	--key-file FILE          the fleet key, or the agent's own host key (mode 0600 or 0400); required
//	--agent NAME             the agent's name (agent: in its config); default: the Nagios host name lower-cased
//	--target NAME            service name on the listener; required
//	--port 5690              listener port
//	--tls-ca, --tls-cert, --tls-key, --tls-server-name   TLS 1.3 / mTLS to the listener
//	--state-dir DIR          this node's records, holds, pauses and breaker (default /var/lib/selfheal/handler)
//	--deadline 20s           total time limit, retries included (samples: 18s)
//	--log-file FILE          JSON log lines (default stderr)
//
// Flags of event only:
//
//	--fault ID               the fault: $SERVICEPROBLEMID$ or $service.last_state_change$ (default -: none)
//	--fault-since=UNIX       when it began: $LASTSERVICESTATECHANGE$ or $service.last_state_change$ (empty: not known)
//	--address ADDR           connect here instead of HOSTADDRESS
//	--action restart         or start
//	--soft-attempt N         also ask at SOFT CRITICAL from attempt N (0 = off); the agent restarts once per fault
//	--command-file FIFO      Nagios' external command file: comments and a forced re-check
//	--status-file FILE       Nagios' status.dat: the acknowledgement, this handler's comments
//	--nagios-config FILE     nagios.cfg, where an empty --status-file/--command-file is looked up
//	--recheck-delay 2s       when to re-check after a successful restart
//	--dry-run                decide, ask the agent what it would answer (a query that changes nothing), print; write nothing
//
// Flags of send only: --host ADDR (required), --hostname NAME and --service
// DESC (the Nagios names the record is kept under, and --hostname
// lower-cased is the default --agent; default --host and --target). A manual
// restart gets a fault id of its own and obeys the agent's budget.
//
// The files it trusts are judged as the user it runs as (nagios) by the
// trust rule (sshd's StrictModes): the key file (owned by root or that
// user, mode 0600/0400, every directory up to / not writable by others;
// else exit 3, and on a CRITICAL the "auto-healing impossible" comment),
// the state dir (that user's own, mode 0700; else no record), the log file
// (else stderr). What it writes is opened O_NOFOLLOW relative to a checked
// directory; the command file must be a FIFO and is opened O_NOFOLLOW (it
// is group-writable by design, so the ownership rule does not apply).
// check lists every problem of these files at once, each with its fix,
// and exits 0 when there is none, 3 otherwise.
//
// There is no local restart budget: the agent keeps it. Transport failures,
// busy and rate-limited are retried with jittered backoff inside --deadline,
// with the same fault; the agent answers a retry from its fault record, so
// a lost reply never means a second restart.
// An unsigned denied to the extended request (an agent older than that
// form answers so) is asked once more in the short form, and the line
// says the agent is old.
//
// event and send print one human line on stdout. Exit codes: 0 healed (now,
// or already for this fault) or nothing to do; 1 healing needed but withheld
// (the agent's budget is spent, its back-off or breaker holds it, or a new
// fault came inside its min_gap: reevaluate asks again); 2 healing attempted and failed or
// unconfirmed (listener unreachable, sent without a reply, denied, clock
// skew, busy, action failed or timed out); 3 usage or configuration error
// (then no request is sent). genkey and issue-key print to stdout only what
// they made (issue-key without --out: the key line, for worker_listener
// import-key) and exit 1 on error, 3 on a usage error, with the message on
// stderr. docs/event-handler.md has the decision table, the retries and the
// messages.
package main
