#!/usr/bin/env bash
# Time to heal under a real Nagios Core 4 (`make bench`; not a test).
# Starts the whole loop in a throwaway Nagios (interval_length=1, the sample
# definitions from nagios-config/nagios4), crashes the worker HEAL_RUNS times
# and splits each heal into detection, decision, action and confirmation
# (internal/lab/bench/healtime). Results go to docs/benchmarks.md by hand.
set -euo pipefail
cd "$(dirname "$0")/../../.."
BIN=${BIN:-$PWD/bin}
RUNS=${HEAL_RUNS:-10}
FAULT=${HEAL_FAULT:-crash}

echo "== Time to heal under a real Nagios Core 4 =="
if ! command -v nagios4 >/dev/null 2>&1 && [ ! -x /usr/sbin/nagios4 ]; then
	echo "heal.sh: nagios4 is not installed; skipping (apt-get install nagios4-core)"
	exit 0
fi
for b in check_worker handle_worker worker_listener demo_worker; do
	[ -x "$BIN/$b" ] || { echo "heal.sh: $BIN/$b missing: run make build" >&2; exit 1; }
done
PATH=$PATH:/usr/sbin go run ./internal/lab/bench/healtime -bin-dir "$BIN" -config-dir nagios-config -runs "$RUNS" -fault "$FAULT"
