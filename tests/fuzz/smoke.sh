#!/usr/bin/env bash
# Short libFuzzer run of every target (CI): builds with XOAUTHD_FUZZ=ON (clang) in BUILD_DIR
# (default build-fuzz) and runs each target for FUZZ_SECONDS (default 10) on a copy of its seed
# corpus, so the tree's corpus stays as committed. A crash fails the script; the input is left
# in the work directory (printed) to be kept as a regression seed.
set -euo pipefail
cd "$(dirname "$0")/../.."
builddir=$(realpath -m "${1:-build-fuzz}")
secs=${FUZZ_SECONDS:-10}
if ! command -v clang >/dev/null; then
  echo "fuzz smoke: clang not installed, skipped" >&2
  exit 0
fi
cmake -S . -B "$builddir" -DXOAUTHD_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
  >/dev/null
targets=()
for src in tests/fuzz/fuzz_*.c; do
  targets+=("$(basename "$src" .c)")
done
cmake --build "$builddir" -j"$(nproc)" --target "${targets[@]}" >/dev/null
work=$(mktemp -d "${TMPDIR:-/tmp}/xoauthd-fuzz.XXXXXX")
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
rc=0
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  cp tests/fuzz/corpus/"$t"/* "$work/$t"/ 2>/dev/null || true
  if (cd "$work" && "$builddir/tests/fuzz/$t" -max_total_time="$secs" -max_len=8192 \
        -timeout=10 -rss_limit_mb=1024 -print_final_stats=0 "$work/$t" >"$work/$t.log" 2>&1); then
    echo "fuzz smoke: $t ok ($(ls "$work/$t" | wc -l) corpus files after ${secs}s)"
  else
    echo "fuzz smoke: $t FAILED; log and crash input in $work" >&2
    tail -40 "$work/$t.log" >&2
    rc=1
  fi
done
[ $rc -ne 0 ] || rm -rf "$work"
exit $rc
