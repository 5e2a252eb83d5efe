#!/usr/bin/env bash
# Short libFuzzer run of every target (CI): builds with XOAUTHD_FUZZ=ON (clang) in BUILD_DIR
# (default build-fuzz) and runs each target for FUZZ_SECONDS (default 30) on a copy of its seed
# corpus, so the tree's corpus stays as committed; FUZZ_JOBS targets (default 2) run at once.
# The seeds, regression inputs (regress-*) included, are replayed first. A crash, leak, UB
# report or timeout fails the script: it names the target, prints the log's tail and where the
# input that did it was saved (keep it as tests/fuzz/corpus/TARGET/regress-WHAT).
# Long runs: tests/fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
builddir=$(realpath -m "${1:-build-fuzz}")
secs=${FUZZ_SECONDS:-30}
jobs=${FUZZ_JOBS:-2}
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

# Runs one target; its verdict goes to $work/TARGET.rc.
run_target() {
  local t=$1 rc=0
  mkdir -p "$work/$t" "$work/$t.artifacts"
  cp tests/fuzz/corpus/"$t"/* "$work/$t"/ 2>/dev/null || true
  (cd "$work" && "$builddir/tests/fuzz/$t" -max_total_time="$secs" -max_len=8192 \
      -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
      -artifact_prefix="$work/$t.artifacts/" "$work/$t" >"$work/$t.log" 2>&1) || rc=$?
  echo "$rc" >"$work/$t.rc"
}

running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  run_target "$t" &
  running=$((running + 1))
done
wait || true

rc=0
for t in "${targets[@]}"; do
  if [ "$(cat "$work/$t.rc" 2>/dev/null || echo 99)" = 0 ]; then
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log" | tail -n 1)
    echo "fuzz smoke: $t ok (${secs}s, ${execs:-?} runs, $(ls "$work/$t" | wc -l) corpus files)"
  else
    echo "fuzz smoke: $t FAILED (exit $(cat "$work/$t.rc" 2>/dev/null || echo '?'))" >&2
    echo "--- last 40 lines of $work/$t.log:" >&2
    tail -n 40 "$work/$t.log" >&2 || true
    for a in "$work/$t.artifacts"/*; do
      [ -e "$a" ] && echo "fuzz smoke: $t: input that failed: $a" >&2
    done
    rc=1
  fi
done
if [ $rc -ne 0 ]; then
  echo "fuzz smoke: logs and inputs kept in $work; replay one with" \
       "$builddir/tests/fuzz/TARGET INPUT" >&2
else
  rm -rf "$work"
fi
exit $rc
