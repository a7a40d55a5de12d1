#!/usr/bin/env bash
# check_selfheal (the healer's own check) vs check_http, paired in one
# hyperfine run per round (wall only; check_worker.sh pairs wall and CPU
# with internal/lab/bench/pair): agent mode against a
# real worker_listener on loopback (a signed ping and one status request),
# node mode on a handler state directory, check_http against the loopback
# status server. Prints the medians and the ratios; no target is set by
# the issue, so the figures are recorded, not judged.
#
#   BIN=bin bash internal/lab/bench/check_selfheal.sh     (make bench sets BIN)
set -euo pipefail
cd "$(dirname "$0")/../../.."

BIN=${BIN:-bin}
RUNS=${RUNS:-300}
ROUNDS=${ROUNDS:-5}
CHECK_HTTP=${CHECK_HTTP:-/usr/lib/nagios/plugins/check_http}
cs="$BIN/check_selfheal" wl="$BIN/worker_listener" hw="$BIN/handle_worker"

missing() {
  echo "check_selfheal bench: $1 not found; skipped" >&2
  if [ "${CI:-}" = true ]; then exit 1; fi
  exit 0
}
for b in "$cs" "$wl" "$hw"; do [ -x "$b" ] || missing "$b (run make build)"; done
[ -x "$CHECK_HTTP" ] || missing "$CHECK_HTTP (apt-get install monitoring-plugins-basic)"
command -v hyperfine >/dev/null || missing hyperfine

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# Installed copies, as Nagios runs them (see check_worker.sh).
install -m 0755 "$cs" "$tmp/check_selfheal"
cs="$tmp/check_selfheal"

"$hw" genkey --id bench --out "$tmp/fleet.key" >/dev/null
"$hw" issue-key --key-file "$tmp/fleet.key" --agent bench1 | "$wl" import-key --out "$tmp/bench.key" >/dev/null
cat >"$tmp/wl.yaml" <<YAML
listen: 127.0.0.1:0
agent: bench1
keys: [$tmp/bench.key]
allow: ["127.0.0.1/32"]
audit_log: $tmp/audit.log
state_dir: $tmp/wl-state
limits: {max_conns: 256, max_conns_per_source: 256, rate: 1000000, burst: 1000000}
services:
  demo:
    actions:
      restart: {argv: [/bin/true]}
      status: {argv: [/bin/true]}
YAML
"$wl" serve --config "$tmp/wl.yaml" 2>"$tmp/wl.log" &
pids+=($!)
addr=""
for _ in $(seq 1 100); do
  addr=$(sed -n 's/.*"listen":\["\([^"]*\)".*/\1/p' "$tmp/wl.log" | head -1)
  [ -n "$addr" ] && break
  sleep 0.05
done
[ -n "$addr" ] || { echo "worker_listener did not start:" >&2; cat "$tmp/wl.log" >&2; exit 1; }
wport=${addr##*:}

CGO_ENABLED=0 go build -trimpath -o "$tmp/statusd" ./internal/lab/bench/statusd
"$tmp/statusd" -listen 127.0.0.1:0 -addr-file "$tmp/addr" -max-life 10m &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$tmp/addr" ] && break; sleep 0.05; done
[ -s "$tmp/addr" ] || { echo "statusd did not start" >&2; exit 1; }
sport=$(cut -d: -f2 "$tmp/addr")

install -d -m 0700 "$tmp/handler-state"
agent_cmd="$cs agent -H 127.0.0.1 -p $wport --agent bench1 --key-file $tmp/fleet.key --target demo -t 5"
node_cmd="$cs node --state-dir $tmp/handler-state -t 5"
ch_cmd="$CHECK_HTTP -H 127.0.0.1 -p $sport -u /status -t 5"
for c in "$agent_cmd" "$node_cmd" "$ch_cmd"; do
  $c >/dev/null || { echo "not OK before timing: $c" >&2; $c >&2 || true; exit 1; }
done

per=$(( (RUNS + ROUNDS - 1) / ROUNDS ))
echo "== check_selfheal vs check_http: hyperfine -N, $ROUNDS rounds x $per runs each, loopback"
echo "   $agent_cmd"
echo "   $node_cmd"
echo "   $ch_cmd"
med() { awk -F, -v n="$1" '$1 == n { printf "%.3f", $4 * 1000 }' "$2"; }
: >"$tmp/rounds"
for r in $(seq 1 "$ROUNDS"); do
  hyperfine -N --warmup 10 --runs "$per" --style none --export-csv "$tmp/h$r.csv" \
    -n agent "$agent_cmd" -n node "$node_cmd" -n check_http "$ch_cmd" >/dev/null 2>&1
  a=$(med agent "$tmp/h$r.csv"); n=$(med node "$tmp/h$r.csv"); h=$(med check_http "$tmp/h$r.csv")
  printf '   round %d: agent %s ms  node %s ms  check_http %s ms\n' "$r" "$a" "$n" "$h"
  echo "$a $n $h" >>"$tmp/rounds"
done
median_col() { sort -g -k"$1","$1" "$tmp/rounds" | awk -v c="$1" '{ v[NR] = $c } END { printf "%.3f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
a=$(median_col 1) n=$(median_col 2) h=$(median_col 3)
echo
printf 'check_selfheal agent  median %8s ms   %sx check_http\n' "$a" "$(awk -v a="$a" -v h="$h" 'BEGIN { printf "%.2f", a / h }')"
printf 'check_selfheal node   median %8s ms   %sx check_http\n' "$n" "$(awk -v a="$n" -v h="$h" 'BEGIN { printf "%.2f", a / h }')"
printf 'check_http            median %8s ms\n' "$h"
