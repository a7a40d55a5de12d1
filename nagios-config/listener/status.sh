#!/bin/sh
# Sample status script: exit 0 if the worker runs, 3 if not (LSB codes).
set -eu
: "${PIDFILE:=/run/demo/demo.pid}"
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    echo "running (pid $(cat "$PIDFILE"))"; exit 0
fi
echo "not running"; exit 3
