#!/usr/bin/env bash
# The whole test suite: installs the Debian packages it needs, builds, runs every unit and
# end-to-end test with ctest. `bash tests/run.sh --sanitize` does the same with an
# AddressSanitizer + UndefinedBehaviorSanitizer build (clang) in build-asan/.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/install-deps.sh

builddir=build
cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [ "${1:-}" = "--sanitize" ]; then
  builddir=build-asan
  cmake_args=(-DCMAKE_BUILD_TYPE=Debug -DXOAUTHD_SANITIZE=ON -DCMAKE_C_COMPILER=clang)
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
fi

cmake -S . -B "$builddir" "${cmake_args[@]}"
cmake --build "$builddir" -j"$(nproc)"
ctest --test-dir "$builddir" --output-on-failure -j2 --timeout 300
