#!/usr/bin/env bash
# What a storm's held handler run costs (issue 20: storm detection slows
# when the machine saturates): the whole handle_worker process at HARD
# CRITICAL while the zone rule holds 1,000 failing services of 10,000,
# against a real Icinga 2, with the state directory an endpoint has at
# that scale (internal/lab/bench/stormhold). Handler CPU and Icinga 2 CPU
# per run: the zone query and the comment are Icinga's part.
#
#   bash internal/lab/bench/storm_hold.sh        (make bench runs it; needs make build)
#   VS=/path/to/old/bin bash internal/lab/bench/storm_hold.sh   (paired against another build)
set -euo pipefail
cd "$(dirname "$0")/../../.."
if ! command -v icinga2 >/dev/null && [ ! -x /usr/sbin/icinga2 ]; then
  echo "storm hold bench: icinga2 not found; skipped" >&2
  if [ "${CI:-}" = true ]; then exit 1; fi
  exit 0
fi
go run ./internal/lab/bench/stormhold -bin "${BIN:-$PWD/bin}" -n "${RUNS:-200}" ${VS:+-vs "$VS"}
