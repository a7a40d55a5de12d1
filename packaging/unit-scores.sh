#!/usr/bin/env bash
# make lint: every shipped systemd service scores no worse under
# `systemd-analyze security --offline=true` than the figure docs/security.md
# gives for it, and every shipped service has a figure there. The figures
# are read from the doc's table (rows "| `UNIT` [with `DROP-IN`] | N.N | ..."),
# so they are written down once.
set -euo pipefail
cd "$(dirname "$0")/.."
doc=docs/security.md

if ! command -v systemd-analyze >/dev/null; then
    if [ "${CI:-}" = true ]; then
        echo "unit-scores: systemd-analyze is missing (apt-get install systemd)" >&2
        exit 1
    fi
    echo "unit-scores: skipped, no systemd-analyze"
    exit 0
fi

rows=$(grep -E '^\| `[^`]+\.service`( with `[^`]+`)? \| [0-9]+\.[0-9] \|' "$doc" || true)
if [ -z "$rows" ]; then
    echo "unit-scores: $doc has no unit score table" >&2
    exit 1
fi

fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
declare -A seen
while IFS= read -r row; do
    unit=$(sed -E 's/^\| `([^`]+)`.*/\1/' <<<"$row")
    dropin=$(sed -nE 's/^\| `[^`]+` with `([^`]+)`.*/\1/p' <<<"$row")
    want=$(sed -E 's/^\| `[^`]+`( with `[^`]+`)? \| ([0-9.]+) \|.*/\2/' <<<"$row")
    [ -n "$dropin" ] || seen[$unit]=1
    # Scored in a directory of its own, with its drop-in beside it as
    # systemd would find it in /etc/systemd/system/UNIT.d/.
    d=$tmp/$RANDOM$RANDOM
    mkdir -p "$d"
    name=$(basename "$unit")
    cp "$unit" "$d/$name"
    if [ -n "$dropin" ]; then
        mkdir -p "$d/$name.d"
        cp "$dropin" "$d/$name.d/"
    fi
    got=$(cd "$d" && systemd-analyze security --offline=true --no-pager "$name" 2>&1 |
        sed -nE 's/.*Overall exposure level for [^:]*: ([0-9]+\.[0-9]).*/\1/p')
    if [ -z "$got" ]; then
        echo "unit-scores: no score for $unit${dropin:+ with $dropin}" >&2
        fail=1
    elif awk -v g="$got" -v w="$want" 'BEGIN {exit !(g > w)}'; then
        echo "unit-scores: $unit${dropin:+ with $dropin} scores $got, above the $want in $doc" >&2
        fail=1
    else
        echo "unit-scores: $unit${dropin:+ with $dropin} $got (documented $want)"
    fi
done <<<"$rows"

for u in packaging/agent/*.service nagios-config/listener/*.service; do
    if [ -z "${seen[$u]:-}" ]; then
        echo "unit-scores: $u ships but $doc gives no score for it" >&2
        fail=1
    fi
done
exit $fail
