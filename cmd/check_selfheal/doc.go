// Command check_selfheal is a Nagios plugin that watches the healer
// itself, and exits 0 OK, 1 WARNING, 2 CRITICAL or 3 UNKNOWN. A healer
// that dies quietly is worse than none, so it runs in two modes:
//
//	check_selfheal agent -H HOST --agent NAME --key-file FILE [--target SVC]...
//	check_selfheal node [--state-dir DIR] [--command-file FIFO] [--icinga-api URL [--icinga-credentials FILE]]
//
// agent (one service per worker host, run on the monitoring node with the
// handler's fleet key): a signed ping proves the agent is reachable and
// accepts our key, and gives its clock (clock_offset, judged by -w/-c in
// milliseconds, default 30000/50000: the agent refuses requests more than
// its replay_window, 60s by default, off) and its version; then, per
// service, the status verb gives the restart budget (used, left: judged by
// --budget-warning, default 1:, and --budget-critical), the last restart
// and the restarts of the last hour.
//
// node (one service per monitoring node, run as the handler's user):
// whether healing is paused, the node's breaker open, heals held back or
// failing; whether the handler can use and write its state directory (the
// trust rule, then a real write); whether the engine's write-back channel
// answers (the command FIFO has a reader; the Icinga 2 API answers, and
// accepts the handler's credentials when given them).
//
// WARNING when healing is held back, CRITICAL when it cannot heal (agent
// unreachable, key refused, state unwritable), UNKNOWN for its own
// failures (bad flags, an unreadable key, an internal hang past -t). It
// always answers within -t (default 10s). -h and -V exit 3.
//
// docs/check_selfheal.md has every flag, the states table and the
// perfdata labels.
package main
