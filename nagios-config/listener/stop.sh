#!/bin/sh
# Sample stop script: SIGTERM the worker, wait up to STOP_WAIT seconds,
# then SIGKILL. Exits 0 when the worker is gone (or was not running).
set -eu
: "${PIDFILE:=/run/demo/demo.pid}"
: "${STOP_WAIT:=10}"

[ -f "$PIDFILE" ] || { echo "not running (no pid file)"; exit 0; }
pid=$(cat "$PIDFILE")
if ! kill -0 "$pid" 2>/dev/null; then
    rm -f "$PIDFILE"; echo "not running"; exit 0
fi
kill -TERM "$pid"
i=0
while kill -0 "$pid" 2>/dev/null && [ "$i" -lt $((STOP_WAIT * 10)) ]; do
    sleep 0.1; i=$((i + 1))
done
if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid"; echo "killed (pid $pid did not stop in ${STOP_WAIT}s)"
else
    echo "stopped (pid $pid)"
fi
rm -f "$PIDFILE"
