#!/usr/bin/env bash
# packaging/xinetd.sh AGENT: the xinetd sample for an installed agent
# (selfheal-agent: /usr/sbin/worker_listener; make install:
# /usr/local/sbin/worker_listener), run as the agent's own user selfheal,
# logging into the directory that user owns: it cannot create a file in
# /var/log/selfheal itself, and xinetd gives it no other place to write.
set -euo pipefail
cd "$(dirname "$0")/.."
agent=${1:?usage: xinetd.sh AGENT}
out=$(sed -e "s|/usr/local/sbin/worker_listener|$agent|" \
    -e 's|^\(    user *= \)root$|\1selfheal|' \
    -e 's|/var/log/selfheal/listener.log|/var/log/selfheal/listener/inetd.log|' \
    nagios-config/listener/xinetd.worker_listener)
for want in "server          = $agent" "user            = selfheal" "--log-file /var/log/selfheal/listener/inetd.log"; do
    grep -qF -- "$want" <<<"$out" || { echo "xinetd.sh: the sample no longer takes: $want" >&2; exit 1; }
done
printf '%s\n' "$out"
