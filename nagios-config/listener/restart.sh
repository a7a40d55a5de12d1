#!/bin/sh
# Sample restart script: stop, then start (both next to this script).
set -eu
dir=$(dirname "$0")
"$dir/stop.sh"
exec "$dir/start.sh"
