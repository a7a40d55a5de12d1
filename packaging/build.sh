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

# The Nagios 4 objects, enabled by linking them into /etc/nagios4/conf.d.
# Debian's resource.cfg defines $USER1$ (the plugin dir) only, and an object
# file cannot define $USERn$: the packaged files carry the values instead,
# those of the sample resource.cfg with the package's own paths for the
# fleet key, the handler's state and its log.
mkdir -p "$c/nagios4/site" "$c/icinga2"
resource=()
while IFS= read -r line; do
    n=${line%%=*}; v=${line#*=}
    case $n in
    '$USER1$') continue ;;
    '$USER3$') v=/etc/selfheal/handler/fleet1.key ;;
    '$USER4$') v=/var/lib/selfheal/handler ;;
    '$USER5$') v=/var/log/selfheal/handler/handle_worker.log ;;
    esac
    v=${v//\\/\\\\}; v=${v//&/\\&}; v=${v//|/\\|}
    resource+=(-e "s|\\\$${n:1:-1}\\\$|$v|g")
done < <(grep -E '^\$USER[0-9]+\$=' nagios-config/nagios4/resource.cfg)
debianize() {
    echo "# Packaged by selfheal-node from $(basename "$1"): the values of the sample"
    echo "# resource.cfg stand where it used \$USER2\$ and up (Debian's defines \$USER1\$"
    echo "# only), with this package's paths for the fleet key, state and log."
    echo
    sed "${resource[@]}" "$1"
}
debianize nagios-config/nagios4/commands.cfg >"$c/nagios4/selfheal-commands.cfg"
# The site sample to copy into conf.d and edit (not linked: it names
# hosts): the worker and, with it, check_selfheal's healer checks, so one
# copy enables both. Each object also uses Debian's linux-server (as
# Debian's localhost does; generic-host names no contacts) or
# generic-service, from /etc/nagios4/objects/templates.cfg, which Debian's
# nagios.cfg always reads, for contacts and periods. Ours come first, so
# ours win where both set a directive: `nagios4 -v` has nothing to warn of.
{
    debianize nagios-config/nagios4/worker.cfg
    if [ -f nagios-config/nagios4/healer.cfg ]; then
        echo
        sed "${resource[@]}" nagios-config/nagios4/healer.cfg
    fi
} | sed -E -e 's/^([[:space:]]*use[[:space:]]+selfheal-host)[[:space:]]*$/\1,linux-server/' \
            -e 's/^([[:space:]]*use[[:space:]]+selfheal-(worker|reevaluator|healer))[[:space:]]*$/\1,generic-service/' \
    >"$c/nagios4/site/worker.cfg"
# Debian's nagios.cfg has interval_length=60, so the templates' intervals
# are minutes. The site's worker service checks faster on its own, not
# through the global interval_length (which would speed up, and page for,
# every other check): 0.5 and 0.25 are 30 s and 15 s, whole seconds, which
# Nagios 4 schedules exactly (README.md, "How fast it heals").
awk '{ print }
     /^[[:space:]]*use[[:space:]]+selfheal-worker,generic-service[[:space:]]*$/ && !done {
         print "  # Debian: interval_length=60. Check every 30 s, re-check a problem every"
         print "  # 15 s: HARD CRITICAL 30-60 s after a crash (README.md, \"How fast it heals\")."
         print "  check_interval       0.5"
         print "  retry_interval       0.25"
         done = 1
     }
     END { if (!done) { print "worker.cfg: no service uses selfheal-worker" > "/dev/stderr"; exit 1 } }' \
    "$c/nagios4/site/worker.cfg" >"$c/nagios4/site/worker.cfg.new"
mv "$c/nagios4/site/worker.cfg.new" "$c/nagios4/site/worker.cfg"
if grep -hE '^\s*command_line' "$c"/nagios4/selfheal-commands.cfg "$c"/nagios4/site/*.cfg | grep -E '\$USER([2-9]|[1-9][0-9])\$'; then
    echo "a \$USERn\$ macro the sample resource.cfg does not define is left" >&2; exit 1
fi
cp nagios-config/nagios4/templates.cfg "$c/nagios4/selfheal-templates.cfg"
# Icinga 2: the constants with the package's paths, and the objects as they are.
sed -e 's|^const SelfhealKeyFile = .*|const SelfhealKeyFile = "/etc/selfheal/handler/fleet1.key"|' \
    -e 's|^const SelfhealStateDir = .*|const SelfhealStateDir = "/var/lib/selfheal/handler"|' \
    -e 's|^const SelfhealLogFile = .*|const SelfhealLogFile = "/var/log/selfheal/handler/handle_worker.log"|' \
    -e 's|^const SelfhealIcingaCredentials = .*|const SelfhealIcingaCredentials = "/etc/selfheal/handler/icinga-api-credentials"|' \
    nagios-config/icinga2/constants.conf >"$c/icinga2/selfheal-constants.conf"
cp nagios-config/icinga2/selfheal.conf "$c/icinga2/selfheal-objects.conf"
for want in /etc/selfheal/handler/fleet1.key /var/lib/selfheal/handler /var/log/selfheal/handler/handle_worker.log /etc/selfheal/handler/icinga-api-credentials; do
    grep -q "$want" "$c/icinga2/selfheal-constants.conf" || { echo "constants.conf: no line took $want" >&2; exit 1; }
done

# The xinetd sample, for the packaged agent: its path, its user, its log.
sed -e 's|/usr/local/sbin/worker_listener|/usr/sbin/worker_listener|' \
    -e 's|^\(    user *= \)root$|\1selfheal|' \
    -e 's|/var/log/selfheal/listener.log|/var/log/selfheal/listener/inetd.log|' \
    nagios-config/listener/xinetd.worker_listener >"$c/xinetd.worker_listener"

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
