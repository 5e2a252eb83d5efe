#!/usr/bin/env bash
# Builds the Debian package from a clean copy of the checkout (the files git tracks plus new,
# not ignored ones: what a fresh clone with the work tree's changes would hold), never in the
# work tree itself. Prints the path of the xoauthd_*.deb it made.
#
#   build_deb.sh OUTDIR [VERSION]
#
# VERSION (e.g. 0.1.0+test1) adds a changelog entry on top in the copy only: the "next
# release" for the upgrade test. DEB_BUILD_OPTIONS and SOURCE_DATE_EPOCH pass through
# (dpkg-buildpackage takes SOURCE_DATE_EPOCH from debian/changelog when it is unset).
set -euo pipefail
out=$1
version=${2:-}
repo=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
# dpkg-buildpackage writes the .deb next to the source directory: into OUTDIR.
src="$out/xoauthd"
rm -rf "$src"
mkdir -p "$src"
(cd "$repo" && git ls-files -co --exclude-standard -z | xargs -0 cp -P --parents -t "$src")

if [ -n "$version" ]; then
  # The same entry layout dch writes; the date is the previous entry's (reproducible).
  prev_date=$(cd "$src" && dpkg-parsechangelog -S Date)
  maint=$(cd "$src" && dpkg-parsechangelog -S Maintainer)
  { printf 'xoauthd (%s) unstable; urgency=medium\n\n  * Test build (tests/package).\n\n' "$version"
    printf ' -- %s  %s\n\n' "$maint" "$prev_date"
    cat "$src/debian/changelog"; } > "$src/debian/changelog.new"
  mv "$src/debian/changelog.new" "$src/debian/changelog"
fi

log="$out/build.log"
if ! (cd "$src" && DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-} parallel=2" \
        dpkg-buildpackage -us -uc -b >"$log" 2>&1); then
  tail -n 60 "$log" >&2
  echo "build_deb.sh: dpkg-buildpackage failed, full log: $log" >&2
  exit 1
fi
v=$(cd "$src" && dpkg-parsechangelog -S Version)
ls "$out/xoauthd_${v}_"*.deb
