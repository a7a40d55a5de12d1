#!/usr/bin/env bash
# What the Icinga 2 REST API write-back adds to a heal (issue 12: target
# under 50 ms): internal/lab/bench/apiwrite against a real Icinga 2 with
# only the api feature.
#
#   bash internal/lab/bench/icinga_api.sh      (make bench runs it)
set -euo pipefail
cd "$(dirname "$0")/../../.."
if ! command -v icinga2 >/dev/null && [ ! -x /usr/sbin/icinga2 ]; then
  echo "icinga api bench: icinga2 not found; skipped" >&2
  if [ "${CI:-}" = true ]; then exit 1; fi
  exit 0
fi
echo "== Icinga 2 API write-back, per heal"
go run ./internal/lab/bench/apiwrite -n "${RUNS:-200}"
