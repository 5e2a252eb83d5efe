#!/usr/bin/env bash
# xoauthd demo: installs what is needed, builds xoauthd, starts private test servers on
# 127.0.0.1 (mock OAuth identity provider, Dovecot, Postfix), runs xoauthd with conf/demo.ini
# and sends one message through it the way a scan-to-email device does (swaks, AUTH LOGIN).
#
#   bash tests/demo.sh            run from the repository root (or anywhere)
#
# With a terminal it waits for Enter before stopping everything; without one (CI, a pipe) it
# stops by itself. Nothing is left running and nothing outside a temp dir under /tmp is
# changed, apart from the Debian packages (tests/install-deps.sh; needs root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> Installing build and test dependencies (tests/install-deps.sh)"
bash tests/install-deps.sh

echo "==> Building xoauthd into build/"
if [ ! -f build/CMakeCache.txt ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build build --target xoauthd -j"$(nproc 2>/dev/null || echo 2)"

export XOAUTHD_BIN="${XOAUTHD_BIN:-$PWD/build/xoauthd}"
export PYTHONPATH="$PWD/tests${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m rig.demo "$@"
