#!/bin/sh
# restart.sh: the worker_listener action "restart" for demo_worker (see
# worker_listener.yaml next to this file). demo_worker's daemon mode does
# the real work: setsid, stdio on /dev/null or LOGFILE, no inherited
# descriptors, pid file, bounded stop (SIGTERM, then SIGKILL), flock
# against concurrent start/stop. The listener passes no environment of its
# own: set WORKER, LISTEN, PIDFILE and LOGFILE in the action's env.
# Stop (SIGKILL after 4 s) plus start (ready within 5 s) fit the action's
# 10 s timeout, which must stay inside handle_worker's 18 s deadline.
set -eu
: "${WORKER:=/usr/local/bin/demo_worker}"
: "${LISTEN:=127.0.0.1:8080}"
: "${PIDFILE:=/run/demo/demo.pid}"
: "${LOGFILE:=}"
exec "$WORKER" daemon restart --listen "$LISTEN" --pid-file "$PIDFILE" --stop-timeout 4s --start-timeout 5s \
  ${LOGFILE:+--log-file "$LOGFILE"}
