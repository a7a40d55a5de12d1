#!/usr/bin/env bash
# Builds selfheal-node and selfheal-agent .debs into dist/ for each Debian
# architecture given (make package). The Makefile passes GO, LDFLAGS,
# DEB_VERSION and MAN (the man pages `make man` rendered from each binary's
# own grammar). Everything generated goes to build/pkg/, so the tree's own
# files are installed as they are or with the few path substitutions below.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
: "${GO:=go}" "${LDFLAGS:=}" "${DEB_VERSION:?}" "${MAN:?}"
# Beside the man pages (make passes $(BUILD)/man): a build with its own
# BUILD= stages apart from a concurrent one.
case $MAN in */man) ;; *) echo "MAN=$MAN: want BUILD/man (make man)" >&2; exit 1 ;; esac
stage=$(dirname "$MAN")/pkg
dist=${DIST:-$root/dist}
rm -rf "$stage"
mkdir -p "$stage/common" "$dist"

# nfpm, pinned in its own module (tools/nfpm) so the product's go.mod
# carries none of its dependencies; built by packaging/tools.sh (make
# tools), once per pinned version and machine, not per tree or build.
nfpm=$(GO=$GO bash packaging/tools.sh nfpm)

# The commit's time: the changelog's date and every file's mtime.
if epoch=$(git log -1 --format=%ct HEAD 2>/dev/null); then :; else epoch=0; fi
export SOURCE_DATE_EPOCH=$epoch
sha=$(git rev-parse --short=7 HEAD 2>/dev/null || echo unknown)

c=$stage/common
# Man pages, gzipped as Debian ships them (-n: no name or time inside).
mkdir -p "$c/man"
for f in "$MAN"/*.[18]; do
    gzip -9nc "$f" >"$c/man/$(basename "$f").gz"
done

# The engines' objects with the package's paths (shared with make install).
bash packaging/objects.sh "$c"

# The xinetd sample, for the packaged agent: its path, its user, its log
# (make install writes the same with /usr/local/sbin: packaging/xinetd.sh).
bash packaging/xinetd.sh /usr/sbin/worker_listener >"$c/xinetd.worker_listener"

# A Debian changelog per package (native: no Debian revision).
for p in selfheal-node selfheal-agent; do
    {
        echo "$p ($DEB_VERSION) unstable; urgency=medium"
        echo
        echo "  * Built from git commit $sha (make package)."
        echo
        echo " -- The selfheal authors <selfheal@users.noreply.github.com>  $(LC_ALL=C date -u -R -d "@$epoch")"
    } | gzip -9nc >"$c/$p.changelog.gz"
done

# Debian architecture -> Go's.
goarch() {
    case $1 in
    amd64) echo amd64 ;; arm64) echo arm64 ;; armhf) echo arm ;; i386) echo 386 ;;
    ppc64el) echo ppc64le ;; s390x) echo s390x ;; riscv64) echo riscv64 ;;
    *) echo "no Go architecture for Debian's $1" >&2; return 1 ;;
    esac
}

for arch in "$@"; do
    ga=$(goarch "$arch")
    b=$stage/$arch/bin
    mkdir -p "$b"
    for cmd in check_worker handle_worker worker_listener demo_worker check_selfheal; do
        [ -d "cmd/$cmd" ] || continue
        CGO_ENABLED=0 GOOS=linux GOARCH=$ga GOARM=7 "$GO" build -trimpath -ldflags "$LDFLAGS" -o "$b/$cmd" "./cmd/$cmd"
    done
    # The configs' ${VARS}, filled in here (nfpm expands only some fields).
    # nfpm wants every listed file to exist: a plugin not built here (a
    # tree without check_selfheal) is left out.
    for p in node agent; do
        cfg=$stage/$arch/$p.yaml
        sed -e "s|\${DEB_ARCH}|$arch|g" -e "s|\${DEB_VERSION}|$DEB_VERSION|g" \
            -e "s|\${COMMON}|$c|g" -e "s|\${BINDIR}|$b|g" -e "s|\${ROOT}|$root|g" \
            "packaging/$p.yaml" >"$cfg"
        if [ ! -x "$b/check_selfheal" ]; then
            sed -i '/check_selfheal/,+2d' "$cfg"
        fi
        if grep -n '\${' "$cfg" >&2; then
            echo "$cfg: a variable was left unset" >&2; exit 1
        fi
        "$nfpm" package --config "$cfg" --packager deb --target "$dist/"
    done
done
ls -l "$dist"/*.deb
