#!/usr/bin/env bash
# packaging/objects.sh OUTDIR: the Nagios 4 and Icinga 2 objects with the
# installed paths, as selfheal-node ships them (packaging/build.sh) and
# `make install` installs them: OUTDIR/nagios4/selfheal-{commands,templates}.cfg
# and site/worker.cfg, OUTDIR/icinga2/selfheal-{constants,objects,healer}.conf.
# Both installs put the fleet key, the handler's state and log in the same
# places, so one generator serves both, and no Debian file is edited.
set -euo pipefail
cd "$(dirname "$0")/.."
c=${1:?usage: objects.sh OUTDIR}

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
# Nagios 4.4.6 expands $STATUSDATAFILE$ to nothing after a reload (SIGHUP):
# the packaged commands name Debian's files instead, so that nothing on
# their command lines can be emptied by a reload ($COMMANDFILE$ survives
# one, and keeps following nagios.cfg; handle_worker looks an empty one up
# in nagios.cfg anyway).
resource+=(-e '/^[[:space:]]*command_line/s|\$STATUSDATAFILE\$|/var/lib/nagios4/status.dat|g'
          -e '/^[[:space:]]*command_line/s|\$MAINCONFIGFILE\$|/etc/nagios4/nagios.cfg|g')
debianize() {
    echo "# Packaged by selfheal-node from $(basename "$1"): the values of the sample"
    echo "# resource.cfg stand where it used \$USER2\$ and up (Debian's defines \$USER1\$"
    echo "# only), with this package's paths for the fleet key, state and log, and"
    echo "# Debian's status.dat and nagios.cfg for \$STATUSDATAFILE\$ and \$MAINCONFIGFILE\$"
    echo "# (a reload empties \$STATUSDATAFILE\$)."
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
if grep -hE '^\s*command_line' "$c"/nagios4/selfheal-commands.cfg "$c"/nagios4/site/*.cfg | grep -E '\$(STATUSDATAFILE|MAINCONFIGFILE)\$'; then
    echo "a file macro a reload can empty is left in a packaged command" >&2; exit 1
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

cp nagios-config/icinga2/healer.conf "$c/icinga2/selfheal-healer.conf"
