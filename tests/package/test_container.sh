#!/usr/bin/env bash
# The container image of contrib/container/Containerfile, from Debian packages only:
#   1. mmdebstrap makes a Debian 12 root file system with the .deb installed (checked: the
#      binary runs in it, the package's postinst made the user and the 0700 state directory);
#   2. with podman: imported as localhost/xoauthd-base, the Containerfile built on it, one
#      message sent through the container against the test rig (tests/rig/demo.py with
#      XOAUTHD_BIN pointing at a `podman run` wrapper), then the container run as its USER
#      with the configuration and state as volumes, and its HEALTHCHECK (xoauthd status on the
#      control socket) run: healthy while it runs.
# Without podman only step 1 runs (and says so). Everything lives in a temp dir, podman
# included (its own --root/--runroot): nothing is left behind.
#
#   bash tests/package/test_container.sh [XOAUTHD.deb]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/package/common.sh
. "$here/common.sh"

require_root "mmdebstrap in root mode, rootful podman"
if ! in_mount_ns; then
  # podman keeps a blob cache in /var/lib/containers/cache whatever --root says: remove what
  # this run creates there.
  fresh=""
  for d in /var/lib/containers /run/containers; do [ -e "$d" ] || fresh="$fresh $d"; done
  export XOAUTHD_CT_FRESH="$fresh"
  reexec_in_mount_ns "$@"
fi

tmp=$(mktemp -d /tmp/xoauthd-ct.XXXXXX)
chmod 755 "$tmp"        # the rig's servers (mail, postfix users) traverse it
P=(podman --root "$tmp/storage" --runroot "$tmp/run" --storage-driver vfs
   --cgroup-manager cgroupfs)
cleanup() {
  local rc=$?
  set +e
  if command -v podman >/dev/null; then
    "${P[@]}" rm -f -t 5 xoauthd-ctest >/dev/null 2>&1
    "${P[@]}" system reset -f >/dev/null 2>&1
  fi
  rm -rf "$tmp"
  for d in $XOAUTHD_CT_FRESH; do rm -rf "$d"; done
  exit $rc
}
trap cleanup EXIT

if [ $# -ge 1 ]; then
  deb=$(readlink -f "$1")
else
  echo "==> building the package"
  deb=$(DEB_BUILD_OPTIONS=nocheck bash "$here/build_deb.sh" "$tmp/deb")
fi
debname=$(basename "$deb")

echo "==> mmdebstrap: Debian 12 with $debname"
# shellcheck disable=SC2016 # mmdebstrap's hooks expand "$1" (the root directory) themselves
mmdebstrap --quiet --variant=apt --include=ca-certificates \
  --customize-hook="copy-in $deb /tmp" \
  --customize-hook="chroot \"\$1\" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends /tmp/$debname" \
  --customize-hook="rm -f \"\$1/tmp/$debname\"" \
  --customize-hook='chroot "$1" /usr/bin/xoauthd version' \
  --customize-hook='chroot "$1" getent passwd xoauthd' \
  --customize-hook='test "$(stat -c %a "$1/var/lib/xoauthd")" = 700' \
  --customize-hook='test "$(chroot "$1" stat -c %U:%G /etc/xoauthd/xoauthd.ini)" = root:xoauthd' \
  --customize-hook='chroot "$1" apt-get clean' \
  bookworm "$tmp/rootfs.tar" > "$tmp/mmdebstrap.log" 2>&1 ||
  { tail -n 40 "$tmp/mmdebstrap.log" >&2; echo "FAIL mmdebstrap" >&2; exit 1; }
echo "ok   root file system: $(du -m "$tmp/rootfs.tar" | cut -f1) MB, xoauthd runs in it"

if ! command -v podman >/dev/null; then
  echo "SKIP podman is not installed: only the root file system was built and checked"
  exit 0
fi

# This CI machine mounts cgroup v1 controllers plus a cgroup2 hierarchy with one (hybrid);
# crun refuses hybrid mode. In this private mount namespace the cgroup2 mount goes away.
if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi
# Podman's default rlimits are above this sandbox's hard limits; lower ones always work.
RUN=(run --network host --ulimit nofile=4096:4096 --ulimit nproc=4096:4096)

echo "==> podman: import the root file system, build contrib/container/Containerfile"
"${P[@]}" import "$tmp/rootfs.tar" localhost/xoauthd-base:latest >/dev/null 2>>"$tmp/podman.log"
"${P[@]}" build --quiet --format docker -f "$repo/contrib/container/Containerfile" \
  -t localhost/xoauthd:test "$repo/contrib/container" >/dev/null
echo "ok   image built"

echo "==> one message through the container (test rig on loopback, --network host)"
# The rig writes its configuration 0600 as root under /tmp: the wrapper runs the image's
# binary as root with /tmp shared. The USER xoauthd case follows below.
cat > "$tmp/xoauthd-in-podman" <<EOF
#!/bin/sh
wd=/
case "\$PWD" in /tmp/*) wd=\$PWD ;; esac
exec ${P[*]} ${RUN[*]} --no-healthcheck --rm -i --user 0 -v /tmp:/tmp --workdir "\$wd" \
  localhost/xoauthd:test "\$@"
EOF
chmod 755 "$tmp/xoauthd-in-podman"
if XOAUTHD_BIN="$tmp/xoauthd-in-podman" PYTHONPATH="$repo/tests" timeout 300 python3 -m rig.demo \
     --no-wait > "$tmp/demo.log" 2>&1; then
  echo "ok   message sent through the container and read back from the mailbox"
else
  tail -n 60 "$tmp/demo.log" >&2; echo "FAIL demo.py through the container" >&2; exit 1
fi

echo "==> the image as shipped: USER xoauthd, configuration and state as volumes, health check"
uid=$("${P[@]}" "${RUN[@]}" --rm --no-healthcheck --entrypoint id localhost/xoauthd:test -u xoauthd)
gid=$("${P[@]}" "${RUN[@]}" --rm --no-healthcheck --entrypoint id localhost/xoauthd:test -g xoauthd)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$tmp/etc" "$tmp/state"
cat > "$tmp/etc/xoauthd.ini" <<EOF
[xoauthd]
state_dir = /var/lib/xoauthd
[listen smtp]
protocol = smtp
address = 127.0.0.1:$port
tls = none
EOF
chown "root:$gid" "$tmp/etc/xoauthd.ini"; chmod 0640 "$tmp/etc/xoauthd.ini"
chown "$uid:$gid" "$tmp/state"; chmod 0700 "$tmp/state"
# No systemd here for podman's health-check timer: the check is run by hand below.
"${P[@]}" "${RUN[@]}" --health-interval disable -d --name xoauthd-ctest -v "$tmp/etc:/etc/xoauthd:ro" \
  -v "$tmp/state:/var/lib/xoauthd" localhost/xoauthd:test >/dev/null 2>>"$tmp/podman.log"
healthy=0
for _ in $(seq 1 40); do
  if "${P[@]}" healthcheck run xoauthd-ctest >>"$tmp/podman.log" 2>&1; then healthy=1; break; fi
  sleep 0.5
done
if [ $healthy -eq 1 ]; then
  echo "ok   health check passes while the daemon runs (control socket in the state volume)"
else
  "${P[@]}" logs xoauthd-ctest >&2 || true; echo "FAIL health check" >&2; exit 1
fi
# Greeting on the published listener: the daemon serves from the volume's configuration.
if python3 - "$port" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
sys.exit(0 if s.recv(512).startswith(b"220") else 1)
EOF
then echo "ok   SMTP greeting from the container"; else echo "FAIL no SMTP greeting" >&2; exit 1; fi
# The health check is `xoauthd status` as USER xoauthd on the socket in the state volume.
if "${P[@]}" exec xoauthd-ctest /usr/bin/xoauthd status -c /etc/xoauthd/xoauthd.ini \
     2>&1 | grep -q "$port"; then
  echo "ok   xoauthd status (the health check command) lists the listener"
else
  echo "FAIL xoauthd status in the container" >&2; exit 1
fi
"${P[@]}" stop -t 20 xoauthd-ctest >/dev/null 2>>"$tmp/podman.log"
rc=$("${P[@]}" inspect -f '{{.State.ExitCode}}' xoauthd-ctest)
if [ "$rc" = 0 ]; then
  echo "ok   podman stop (SIGTERM): xoauthd exited 0"
else
  echo "FAIL xoauthd exited $rc on podman stop" >&2; exit 1
fi
echo "test_container.sh: passed"
