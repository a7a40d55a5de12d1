#!/usr/bin/env bash
# What the Icinga 2 REST API write-back costs a heal (issue 20: under
# 20 ms), measured as the user pays it: the whole handle_worker process
# with --icinga-api against the same without, paired, against a real
# Icinga 2 with 10,000 services (internal/lab/bench/writeback).
#
#   bash internal/lab/bench/icinga_api.sh      (make bench runs it; needs make build)
set -euo pipefail
cd "$(dirname "$0")/../../.."
if ! command -v icinga2 >/dev/null && [ ! -x /usr/sbin/icinga2 ]; then
  echo "icinga api bench: icinga2 not found; skipped" >&2
  if [ "${CI:-}" = true ]; then exit 1; fi
  exit 0
fi
go run ./internal/lab/bench/writeback -bin "${BIN:-$PWD/bin}" -n "${RUNS:-40}" -services "${SERVICES:-10000}"
