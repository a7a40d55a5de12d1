#!/bin/sh
# Prints the Debian version of this tree, from git:
#   tag v1.2.3 on HEAD, clean           1.2.3
#   4 commits after v1.2.3              1.2.3+git20261201153012.abc1234
#   no tag                              0.0~git20261201153012.abc1234
#   uncommitted changes                 ...+dirty appended
# The committer time (UTC, to the second) comes before the hash, so later
# commits always sort higher and upgrade as dpkg expects.
set -eu
if ! sha=$(git rev-parse --short=7 HEAD 2>/dev/null); then
    echo "0.0~nogit"; exit 0
fi
when=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S HEAD)
if tag=$(git describe --tags --abbrev=0 --match 'v[0-9]*' 2>/dev/null); then
    base=${tag#v}
    if [ "$(git rev-list -n1 "$tag")" = "$(git rev-parse HEAD)" ]; then
        v=$base
    else
        v="$base+git$when.$sha"
    fi
else
    v="0.0~git$when.$sha"
fi
# Debian versions allow [A-Za-z0-9.+~-] only; a tag like v1.0-rc1 becomes 1.0~rc1.
v=$(printf '%s' "$v" | sed 's/-/~/g; s/[^A-Za-z0-9.+~]/./g')
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    v="$v+dirty"
fi
echo "$v"
