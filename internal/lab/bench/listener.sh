#!/usr/bin/env bash
# worker_listener vs the seed's xinetd + sh and vs NRPE (with and without
# TLS): the per-process round trip of one authenticated restart whose
# action is /bin/true, all five paired in one hyperfine run per round (5
# rounds; ratios are the median of the per-round ratios), plus a sustained
# throughput figure for worker_listener counted from its audit log, and what
# the agent's fault records cost (restarts with a new fault id each vs none).
#
#   BIN=bin bash internal/lab/bench/listener.sh     (make bench sets BIN)
#   RUNS=500 ROUNDS=5 STRICT=1 ...   STRICT=1 exits 1 when a target is missed
#
# Targets (issue 3): round trip <= 0.8x xinetd+sh; with TLS <= 0.2x NRPE
# with TLS; >= 1,000 authenticated restarts/s sustained.
set -euo pipefail
cd "$(dirname "$0")/../../.."

BIN=${BIN:-bin}
RUNS=${RUNS:-300}
TPUT_N=${TPUT_N:-1000}   # requests per throughput client and round
TPUT_ROUNDS=${TPUT_ROUNDS:-3}
TPUT_C=${TPUT_C:-8}      # concurrent throughput clients, one service each (at most 16)
CHECK_NRPE=${CHECK_NRPE:-/usr/lib/nagios/plugins/check_nrpe}
wl="$BIN/worker_listener"
hw="$BIN/handle_worker"

missing() {
  echo "listener bench: $1 not found; skipped" >&2
  if [ "${CI:-}" = true ]; then exit 1; fi
  exit 0
}
[ -x "$wl" ] || missing "$wl (run make build)"
[ -x "$hw" ] || missing "$hw (run make build)"
command -v hyperfine >/dev/null || missing hyperfine
command -v xinetd >/dev/null || missing xinetd
command -v socat >/dev/null || missing socat
command -v nrpe >/dev/null || missing "nrpe (nagios-nrpe-server)"
[ -x "$CHECK_NRPE" ] || missing "$CHECK_NRPE (nagios-nrpe-plugin)"

tmp=$(mktemp -d)
chmod 755 "$tmp" # nrpe runs as nagios and reads its config here
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$tmp/wlclient.built" ./internal/lab/bench/wlclient
# Timed as an installed copy, like check_worker (see check_worker.sh: a file
# the linker wrote itself starts 15-25 % slower than a copy of it).
install -m 0755 "$tmp/wlclient.built" "$tmp/wlclient"
cl="$tmp/wlclient"
# The keys the documented way: the fleet key (the client's), the agent's
# host key issued from it.
"$hw" genkey --id bench --out "$tmp/fleet.key" >/dev/null
"$hw" issue-key --key-file "$tmp/fleet.key" --agent bench1 | "$wl" import-key --out "$tmp/bench.key" >/dev/null
"$cl" -gen-pki "$tmp"
ports=($("$cl" -free-ports 3))
p_xinetd=${ports[0]} p_nrpe=${ports[1]} p_nrpe_tls=${ports[2]}

# Two listeners (plain, TLS 1.3 + client certificates), rate limits
# raised: every request comes from 127.0.0.1; the restart budget at its
# largest, with no min gap, so every restart runs.
listener_config() { # name tls-block
  cat >"$tmp/$1.yaml" <<YAML
listen: 127.0.0.1:0
agent: bench1
keys: [$tmp/bench.key]
allow: ["127.0.0.1/32"]
audit_log: $tmp/$1-audit.log
state_dir: $tmp/$1-state
limits: {max_conns: 256, max_conns_per_source: 256, rate: 1000000, burst: 1000000}
budget: {max: 10000, window: 1h, min_gap: 0s}
$2
services:
YAML
  # demo for the round trips; f0..f15, n0..n15 and s0..s15 for the
  # throughput with and without the agent's records (TPUT_C <= 16).
  for s in demo $(printf 'f%d ' $(seq 0 15)) $(printf 'n%d ' $(seq 0 15)) $(printf 's%d ' $(seq 0 15)); do
    printf '  %s:\n    actions:\n      restart: {argv: [/bin/true]}\n      start: {argv: [/bin/true]}\n' "$s" >>"$tmp/$1.yaml"
  done
}
listener_config plain ""
listener_config tls "tls: {cert: $tmp/server.crt, key: $tmp/server.key, client_ca: $tmp/ca.crt}"

start_listener() { # name -> sets addr_<name>
  "$wl" serve --config "$tmp/$1.yaml" 2>"$tmp/$1.log" &
  pids+=($!)
  local a=""
  for _ in $(seq 1 100); do
    a=$(sed -n 's/.*"listen":\["\([^"]*\)".*/\1/p' "$tmp/$1.log" | head -1)
    [ -n "$a" ] && break
    sleep 0.05
  done
  [ -n "$a" ] || { echo "worker_listener $1 did not start:" >&2; cat "$tmp/$1.log" >&2; exit 1; }
  printf -v "addr_$1" '%s' "$a"
  printf -v "pid_$1" '%s' "${pids[-1]}"
}
start_listener plain
start_listener tls

# The seed's design: xinetd runs a shell script per connection.
cat >"$tmp/restart.sh" <<'SH'
#!/bin/sh
read -r cmd
case "$cmd" in
  foo-restart) /bin/true ;;
  *) echo "Er, thanks for calling!" ;;
esac
SH
chmod 755 "$tmp/restart.sh"
cat >"$tmp/xinetd.conf" <<CONF
defaults
{
  cps = 10000 1
  instances = UNLIMITED
}
service selfheal_bench
{
  type = UNLISTED
  socket_type = stream
  protocol = tcp
  wait = no
  bind = 127.0.0.1
  port = $p_xinetd
  $( [ "$(id -u)" = 0 ] && echo "user = root" )
  server = $tmp/restart.sh
}
CONF
printf 'foo-restart\n' >"$tmp/req.txt"
xinetd -dontfork -f "$tmp/xinetd.conf" -pidfile "$tmp/xinetd.pid" 2>"$tmp/xinetd.log" &
pids+=($!)

# NRPE, default (anonymous-DH) TLS and plain.
nrpe_config() { # file port
  cat >"$1" <<CONF
server_address=127.0.0.1
server_port=$2
allowed_hosts=127.0.0.1
nrpe_user=nagios
nrpe_group=nagios
pid_file=$1.pid
command[true]=/bin/true
CONF
}
nrpe_config "$tmp/nrpe-tls.cfg" "$p_nrpe_tls"
nrpe_config "$tmp/nrpe.cfg" "$p_nrpe"
nrpe -c "$tmp/nrpe-tls.cfg" -f & pids+=($!)
nrpe -c "$tmp/nrpe.cfg" -n -f & pids+=($!)

wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "nothing listens on $1" >&2; exit 1; }
wait_port "$p_xinetd"; wait_port "$p_nrpe"; wait_port "$p_nrpe_tls"

ours="$cl -addr $addr_plain -key $tmp/fleet.key -agent bench1 -service demo"
ours_tls="$cl -addr $addr_tls -key $tmp/fleet.key -agent bench1 -service demo -tls-ca $tmp/ca.crt -tls-cert $tmp/client.crt -tls-key $tmp/client.key"
# socat without a shell in front, so the peer is not charged for sh: read
# the request from a file, print the reply, return when the script exits.
xin="socat OPEN:$tmp/req.txt,rdonly!!STDOUT TCP:127.0.0.1:$p_xinetd"
nrpe_plain="$CHECK_NRPE -H 127.0.0.1 -p $p_nrpe -n -c true"
nrpe_tls="$CHECK_NRPE -H 127.0.0.1 -p $p_nrpe_tls -c true"

# Each must complete a real round trip before it is timed. check_nrpe
# exits 3 ("Unable to read output") for /bin/true's empty output, so its
# success is judged by that answer, and hyperfine runs with -i.
$ours >/dev/null || { echo "wlclient failed" >&2; exit 1; }
$ours_tls >/dev/null || { echo "wlclient TLS failed" >&2; exit 1; }
$xin >/dev/null || { echo "xinetd round trip failed" >&2; exit 1; }
nrpe_ok() { # command: nrpe forks its listener; give it a moment to settle
  local out=""
  for _ in $(seq 1 20); do
    out=$($1 || true)
    echo "$out" | grep -q "Unable to read output" && return 0
    sleep 0.1
  done
  echo "$1 failed: $out" >&2; exit 1
}
nrpe_ok "$nrpe_plain"
nrpe_ok "$nrpe_tls"

# The machine is shared, and hyperfine runs all of one command before the
# next: a load change in between would bias the ratio. So the 300 runs are
# split into ROUNDS interleaved rounds, and each ratio is the median of the
# per-round ratios (each round pairs its commands a few seconds apart).
ROUNDS=${ROUNDS:-5}
per=$(( (RUNS + ROUNDS - 1) / ROUNDS ))
echo "== worker_listener vs xinetd+sh vs NRPE: hyperfine -N -i, $ROUNDS rounds x $per runs each, loopback"
med() { awk -F, -v n="$2" '$1 == n { printf "%.3f", $4 * 1000 }' "$1"; }
low() { awk -F, -v n="$2" '$1 == n { printf "%.3f", $7 * 1000 }' "$1"; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
: >"$tmp/rounds"
for round in $(seq 1 "$ROUNDS"); do
  hyperfine -N -i --warmup 10 --runs "$per" --style none --export-csv "$tmp/h$round.csv" \
    -n worker_listener "$ours" \
    -n xinetd+sh "$xin" \
    -n nrpe "$nrpe_plain" \
    -n worker_listener_tls "$ours_tls" \
    -n nrpe_tls "$nrpe_tls" >/dev/null
  f="$tmp/h$round.csv"
  printf '%s %s %s %s %s %s %s\n' "$(med "$f" worker_listener)" "$(med "$f" xinetd+sh)" "$(med "$f" nrpe)" \
    "$(med "$f" worker_listener_tls)" "$(med "$f" nrpe_tls)" "$(low "$f" worker_listener)" "$(low "$f" xinetd+sh)" >>"$tmp/rounds"
  awk -v r="$round" '{ printf "round %d medians ms: worker_listener %s  xinetd+sh %s  nrpe %s  worker_listener_tls %s  nrpe_tls %s  -> %.2fx, TLS %.3fx\n", r, $1, $2, $3, $4, $5, $1 / $2, $4 / $5 }' <(tail -1 "$tmp/rounds")
done
col() { awk -v c="$1" '{ print $c }' "$tmp/rounds" | median; }
m_ours=$(col 1); m_xin=$(col 2); m_nrpe=$(col 3); m_tls=$(col 4); m_nrpe_tls=$(col 5)
r_xin=$(awk '{ printf "%.3f\n", $1 / $2 }' "$tmp/rounds" | median)
r_tls=$(awk '{ printf "%.4f\n", $4 / $5 }' "$tmp/rounds" | median)
min_ours=$(awk '{ print $6 }' "$tmp/rounds" | sort -n | head -1)
min_xin=$(awk '{ print $7 }' "$tmp/rounds" | sort -n | head -1)
r_min=$(awk -v a="$min_ours" -v b="$min_xin" 'BEGIN { printf "%.2f", a / b }')

# Sustained throughput: TPUT_C clients in one process, each sending
# TPUT_N requests one after another to its own service, so no request can
# coalesce with another; every one runs /bin/true. Counted from the
# agent's audit log: requests whose action ran (origin run) and exited 0.
# Each round in three modes, each on services of its own (f*, n*, s*), so
# the records each request rewrites grow alike:
#   restart, a new fault id per request: what handle_worker's requests
#     cost; the agent writes the fault record and the restart time
#     (fsync'ed) before the run, and the outcome after;
#   restart, no fault id ("-"): the restart time (the budget) only;
#   start: no budget, no fault record (the last run's record only).
# TPUT_ROUNDS rounds; the median round is each figure (the machine is shared).
ran_count() { grep -c '"origin":"run","exit_code":0,' "$tmp/plain-audit.log" || true; }
tput_round() { # verb fault-mode service-prefix -> prints "rate ran secs tput-line"
  local before after ran secs tput
  before=$(ran_count)
  tput=$("$cl" -addr "$addr_plain" -key "$tmp/fleet.key" -agent bench1 -verb "$1" -fault "$2" -service "$3" -services "$TPUT_C" -c "$TPUT_C" -n "$TPUT_N")
  after=$(ran_count)
  ran=$((after - before))
  secs=$(echo "$tput" | sed -n 's/.*elapsed \([0-9.]*\)s.*/\1/p')
  echo "$(awk -v r="$ran" -v s="$secs" 'BEGIN { printf "%.0f", r / s }') $ran ${secs}s ($tput)"
}
rates=() rates_none=() rates_start=()
for round in $(seq 1 "$TPUT_ROUNDS"); do
  set -- $(tput_round restart unique f)
  echo "throughput round $round, restart with a new fault each: $2 ran (audit log: origin run, exit 0) in $3 = $1/s   (client: ${*:4})"
  rates+=("$1")
  set -- $(tput_round restart - n)
  echo "throughput round $round, restart without a fault id:    $2 ran in $3 = $1/s"
  rates_none+=("$1")
  set -- $(tput_round start - s)
  echo "throughput round $round, start (no budget, no fault):   $2 ran in $3 = $1/s"
  rates_start+=("$1")
done
rate=$(printf '%s\n' "${rates[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
rate_none=$(printf '%s\n' "${rates_none[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
rate_start=$(printf '%s\n' "${rates_start[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
# The records' cost: the difference of the time per request at each rate
# (all TPUT_C clients together), in microseconds.
per() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.0f", 1e6 / a - 1e6 / b; else printf "?" }'; }
echo
printf '%-20s median of round medians %8s ms\n' worker_listener "$m_ours" xinetd+sh "$m_xin" nrpe "$m_nrpe" worker_listener_tls "$m_tls" nrpe_tls "$m_nrpe_tls"
echo "ratio worker_listener/xinetd+sh: ${r_xin}x (median of per-round ratios; fastest runs: $min_ours vs $min_xin ms = ${r_min}x)   target <= 0.8x"
echo "ratio worker_listener_tls/nrpe_tls: ${r_tls}x (median of per-round ratios)   target <= 0.2x"
rss=$(awk '/VmHWM/ { print $2 }' "/proc/$pid_plain/status" 2>/dev/null || echo "?")
echo "worker_listener peak RSS (VmHWM) after all runs: $rss kB"
echo "throughput: median of $TPUT_ROUNDS rounds ${rates[*]}: $rate restarts/s with $TPUT_C clients, a fault record each   target >= 1000/s"
echo "throughput, restart without a fault id: median of ${rates_none[*]}: $rate_none/s; start: median of ${rates_start[*]}: $rate_start/s"
echo "cost per request at the agent: fault record $(per "$rate" "$rate_none") us, budget record $(per "$rate_none" "$rate_start") us (time per request at each rate, $TPUT_C clients)"

ok=1
awk -v r="$r_xin" 'BEGIN { exit !(r <= 0.8) }' || { echo "TARGET MISSED: round trip ratio $r_xin > 0.8"; ok=0; }
awk -v r="$r_tls" 'BEGIN { exit !(r <= 0.2) }' || { echo "TARGET MISSED: TLS ratio $r_tls > 0.2"; ok=0; }
[ "$rate" -ge 1000 ] || { echo "TARGET MISSED: $rate restarts/s < 1000"; ok=0; }
[ $ok = 1 ] && echo "targets met"
if [ $ok = 0 ] && [ "${STRICT:-}" = 1 ]; then exit 1; fi
