#!/usr/bin/env bash
# packaging/tools.sh nfpm: prints the path of an nfpm binary built from the
# version pinned in tools/nfpm/go.sum, building it first if this machine has
# none yet. The binary is kept outside the tree, keyed by the hash of the
# pin (SELFHEAL_TOOLS, default ~/.cache/selfheal/tools), so every checkout,
# temp build dir and test shares one build: a cold module cache costs its
# minutes once, in `make tools` (which `make test` and .ci/run call before
# any test starts), never inside a test's time limit.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${GO:=go}"
tool=${1:?usage: tools.sh nfpm}
case $tool in
nfpm) pkg=github.com/goreleaser/nfpm/v2/cmd/nfpm ;;
*) echo "tools.sh: unknown tool $tool" >&2; exit 2 ;;
esac
key=$(cat "tools/$tool/go.mod" "tools/$tool/go.sum" | sha256sum | cut -c1-16)
dir=${SELFHEAL_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/selfheal/tools}
bin=$dir/$tool-$key
if [ ! -x "$bin" ]; then
    mkdir -p "$dir"
    # Built to a temp name and renamed: a concurrent build never sees half a file.
    "$GO" -C "tools/$tool" build -trimpath -o "$bin.tmp.$$" "$pkg" >&2
    mv -f "$bin.tmp.$$" "$bin"
fi
echo "$bin"
