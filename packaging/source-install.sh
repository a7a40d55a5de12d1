#!/usr/bin/env bash
# packaging/source-install.sh install|uninstall: `make install` and `make
# uninstall`. The same layout as the packages, under PREFIX for what the
# packages put under /usr: the same user, directories, fleet key, config and
# Nagios/Icinga objects (packaging/objects.sh), so every later command is the
# README's but for /usr/local. No Debian file is edited: the objects carry
# their paths, as the packaged ones do, instead of lines appended to
# /etc/nagios4/resource.cfg. The Makefile passes BIN, PREFIX, PLUGINDIR,
# MANDIR and DESTDIR (a staging root: then nothing outside it is touched, no
# user made, no unit enabled). PURGE=1 with uninstall also deletes the
# config, the keys, the state and the logs, as apt-get purge does.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BIN:?}" "${PREFIX:?}" "${PLUGINDIR:?}" "${MANDIR:?}"
D=${DESTDIR:-}
sbin=$PREFIX/sbin
lib=$PREFIX/lib/selfheal
share=$PREFIX/share/selfheal
doc=$PREFIX/share/doc/selfheal/examples
units=$PREFIX/lib/systemd/system
rule=/etc/polkit-1/rules.d/60-selfheal-demo.rules
unitfiles="worker_listener.service worker_listener.socket worker_listener-inetd.socket worker_listener-inetd@.service selfheal-demo.service"
live() { [ -z "$D" ] && [ "$(id -u)" -eq 0 ]; }
systemd() { live && [ -d /run/systemd/system ]; }

# The packaged files' /usr paths, moved under PREFIX.
relocate() {
    sed -e "s|/usr/sbin/worker_listener|$sbin/worker_listener|g" -e "s|/usr/lib/selfheal/|$lib/|g" "$@"
}

install_() {
    for b in check_worker handle_worker worker_listener demo_worker; do
        [ -x "$BIN/$b" ] || { echo "make install: $BIN/$b is missing (make build)" >&2; exit 1; }
    done
    install -d "$D$PLUGINDIR" "$D$sbin" "$D$lib" "$D$MANDIR/man1" "$D$MANDIR/man8" "$D$doc" "$D$units" "$D$share"
    install -m 0755 "$BIN/check_worker" "$BIN/handle_worker" "$D$PLUGINDIR/"
    [ ! -x "$BIN/check_selfheal" ] || install -m 0755 "$BIN/check_selfheal" "$D$PLUGINDIR/"
    install -m 0755 "$BIN/worker_listener" "$D$sbin/"
    install -m 0755 "$BIN/demo_worker" "$D$lib/"
    relocate packaging/agent/demo-ctl >"$D$lib/demo-ctl" && chmod 0755 "$D$lib/demo-ctl"
    for b in check_worker handle_worker worker_listener demo_worker check_selfheal; do
        [ -x "$BIN/$b" ] || continue
        sec=$("$BIN/$b" --help-man | awk '/^\.TH/ {print $3; exit}')
        "$BIN/$b" --help-man >"$D$MANDIR/man$sec/$b.$sec"
    done
    # The engines' objects, as selfheal-node ships them in /usr/share/selfheal.
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    bash packaging/objects.sh "$tmp"
    rm -rf "$D$share/nagios4" "$D$share/icinga2"
    cp -r "$tmp/nagios4" "$tmp/icinga2" "$D$share/"
    chmod -R u=rwX,go=rX "$D$share"
    bash packaging/xinetd.sh "$sbin/worker_listener" >"$D$doc/xinetd.worker_listener"
    # The packaged units, for systemd's /usr/local/lib/systemd/system.
    for u in worker_listener.service worker_listener-inetd@.service selfheal-demo.service; do
        relocate "packaging/agent/$u" >"$D$units/$u"
    done
    cp nagios-config/listener/worker_listener.socket nagios-config/listener/worker_listener-inetd.socket "$D$units/"
    chmod 0644 "$D$units"/*
    install -d "$D$(dirname "$rule")"
    sed "s|/usr/share/polkit-1/rules.d/60-selfheal-demo.rules (selfheal-agent)|$rule (make install)|" \
        packaging/agent/selfheal-demo.rules >"$D$rule"
    chmod 0644 "$D$rule"
    live || { echo "make install: staged under DESTDIR=$D (no user, directories or keys made)"; return; }

    # The packages' maintainer scripts' part: the user, the directories,
    # the fleet key, the config (never overwritten: it is the admin's).
    if ! getent passwd selfheal >/dev/null; then
        adduser --system --group --no-create-home --home /nonexistent --gecos "selfheal worker_listener" --quiet selfheal
    fi
    install -d -o root -g root -m 0755 /etc/selfheal /var/lib/selfheal /var/log/selfheal
    install -d -o selfheal -g selfheal -m 0700 /etc/selfheal/keys /var/lib/selfheal/listener /var/lib/selfheal/demo
    install -d -o selfheal -g selfheal -m 0750 /var/log/selfheal/listener
    if [ ! -e /etc/selfheal/worker_listener.yaml ]; then
        relocate packaging/agent/worker_listener.yaml >/etc/selfheal/worker_listener.yaml
        chmod 0644 /etc/selfheal/worker_listener.yaml
    fi
    if getent passwd nagios >/dev/null; then
        install -d -o nagios -g nagios -m 0700 /etc/selfheal/handler /var/lib/selfheal/handler
        install -d -o nagios -g nagios -m 0750 /var/log/selfheal/handler
        if [ ! -e /etc/selfheal/handler/fleet1.key ]; then
            runuser -u nagios -- "$PLUGINDIR/handle_worker" genkey --id fleet1 --out /etc/selfheal/handler/fleet1.key
        fi
    else
        echo "make install: no nagios user yet: install nagios4-core (or icinga2), then make install again"
    fi
    if systemd; then
        systemctl daemon-reload
        systemctl enable --now worker_listener.socket
    fi
    echo "make install: done; next, the host key and Nagios (README.md, \"From source\")"
}

# Every process still running the installed agent or demo worker:
# SIGTERM, 5 s, SIGKILL (matched by executable, nothing else is touched).
stop_ours() {
    local self
    self=$(readlink /proc/self/ns/pid)
    ours() {
        for p in /proc/[0-9]*; do
            # This host's processes only, not a container's (another pid
            # namespace) that happens to run the same package.
            [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$self" ] || continue
            case "$(readlink "$p/exe" 2>/dev/null)" in
            "$sbin/worker_listener" | "$lib/demo_worker") echo "${p#/proc/}" ;;
            esac
        done
    }
    local pids i=0
    pids=$(ours)
    [ -n "$pids" ] || return 0
    kill -TERM $pids 2>/dev/null || true
    while [ $i -lt 50 ] && [ -n "$(ours)" ]; do sleep 0.1; i=$((i + 1)); done
    pids=$(ours)
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
}

uninstall_() {
    if systemd; then
        systemctl disable --now worker_listener.socket worker_listener-inetd.socket >/dev/null 2>&1 || true
        systemctl stop worker_listener.service selfheal-demo.service >/dev/null 2>&1 || true
    fi
    if live; then
        [ ! -f /var/lib/selfheal/demo/demo.pid ] || "$lib/demo_worker" daemon stop \
            --pid-file /var/lib/selfheal/demo/demo.pid --stop-timeout 3s >/dev/null 2>&1 || true
        stop_ours
    fi
    rm -f "$D$PLUGINDIR/check_worker" "$D$PLUGINDIR/handle_worker" "$D$PLUGINDIR/check_selfheal" \
        "$D$sbin/worker_listener" "$D$lib/demo_worker" "$D$lib/demo-ctl" "$D$doc/xinetd.worker_listener" "$D$rule"
    for b in check_worker handle_worker check_selfheal demo_worker; do rm -f "$D$MANDIR/man1/$b.1"; done
    rm -f "$D$MANDIR/man8/worker_listener.8"
    for u in $unitfiles; do rm -f "$D$units/$u"; done
    rm -rf "$D$share"
    rmdir "$D$lib" "$D$doc" "$D$PREFIX/share/doc/selfheal" 2>/dev/null || true
    # The conf.d links to the removed objects (they would dangle, and the
    # engine would refuse its config), as the package's postrm does.
    for l in "$D"/etc/nagios4/conf.d/selfheal-*.cfg "$D"/etc/icinga2/conf.d/selfheal-*.conf; do
        if [ -L "$l" ]; then
            case "$(readlink "$l")" in "$share"/*) rm -f "$l" ;; esac
        fi
    done
    if [ "${PURGE:-}" = 1 ] && live; then
        rm -rf /etc/selfheal /var/lib/selfheal /var/log/selfheal
    fi
    if systemd; then systemctl daemon-reload; fi
    echo "make uninstall: done${PURGE:+ (config, keys, state and logs deleted)}; the user selfheal stays (deluser --system selfheal)"
}

case ${1-} in
install) install_ ;;
uninstall) uninstall_ ;;
*) echo "usage: source-install.sh install|uninstall" >&2; exit 2 ;;
esac
