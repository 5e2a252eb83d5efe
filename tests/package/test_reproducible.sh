#!/usr/bin/env bash
# The package builds reproducibly: two builds of the same tree, in different directories,
# with the same SOURCE_DATE_EPOCH, give byte-identical xoauthd_*.deb files.
#
#   test_reproducible.sh [FIRST.deb]   compare FIRST.deb (e.g. test_deb.sh's build) with a
#                                      new build; without it, build twice
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d /tmp/xoauthd-repro.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# The changelog's date, as dpkg-buildpackage would pick it, exported so both builds use it.
SOURCE_DATE_EPOCH=$(cd "$repo" && date -d "$(dpkg-parsechangelog -S Date)" +%s)
export SOURCE_DATE_EPOCH

if [ $# -ge 1 ]; then
  first=$1
else
  first=$(DEB_BUILD_OPTIONS=nocheck bash "$here/build_deb.sh" "$tmp/a")
fi
# Another directory name: the build path must not leak into the package.
second=$(DEB_BUILD_OPTIONS=nocheck bash "$here/build_deb.sh" "$tmp/b-other-path")
a=$(sha256sum < "$first" | cut -d' ' -f1)
b=$(sha256sum < "$second" | cut -d' ' -f1)
if [ "$a" != "$b" ]; then
  echo "NOT REPRODUCIBLE: $first ($a) != $second ($b)" >&2
  if command -v diffoscope >/dev/null; then diffoscope "$first" "$second" >&2 || true; fi
  # Without diffoscope: the listings and control files usually show what moved.
  diff <(dpkg-deb -c "$first") <(dpkg-deb -c "$second") >&2 || true
  exit 1
fi
echo "reproducible: $(basename "$first") sha256 $a (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)"
