#!/bin/sh
# Sample start script for a generic worker, run by worker_listener.
# It detaches the worker completely: a new session (setsid), stdio away from
# the agent's pipes, and the worker's PID in $PIDFILE. A worker that keeps
# the agent's stdout open stalls the reply; under Nagios or Icinga it would
# be killed with the handler's process group. The agent's environment is
# explicit: set WORKER, PIDFILE and LOGFILE in the action's env.
set -eu
: "${WORKER:=/opt/demo/bin/demo-worker}"
: "${PIDFILE:=/run/demo/demo.pid}"
: "${LOGFILE:=/dev/null}"

if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "already running (pid $(cat "$PIDFILE"))"
    exit 0
fi
# setsid: own session and process group, so the agent's timeout kill and
# the agent's own restart do not reach the worker.
setsid "$WORKER" </dev/null >>"$LOGFILE" 2>&1 &
echo $! >"$PIDFILE"
# Give it a moment and say whether it survived its start-up.
sleep 1
if kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "started (pid $(cat "$PIDFILE"))"
else
    echo "worker exited during start-up; see $LOGFILE" >&2
    exit 1
fi
