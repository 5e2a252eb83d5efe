# Sourced by the package tests (test_deb.sh, test_container.sh): they need root, and run in a
# private mount namespace of their own so that what they mount (systemd stand-ins, a cgroup
# workaround) never shows outside. unshare(1) makes the mounts private by default.
# shellcheck shell=bash
repo=$(cd "${here:?set here to the directory of the sourcing script}/../.." && pwd)
export repo

require_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "$(basename "$0") needs root: $1" >&2
    exit 1
  fi
}

# True once the script runs inside the namespace that reexec_in_mount_ns made.
in_mount_ns() { [ -n "${XOAUTHD_PKG_NS:-}" ]; }

reexec_in_mount_ns() {
  export XOAUTHD_PKG_NS=1
  exec unshare --mount bash "$0" "$@"
}
