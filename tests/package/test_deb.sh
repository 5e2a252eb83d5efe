#!/usr/bin/env bash
# The Debian package, end to end, on this machine (CI: root on a throwaway machine):
#   build (with the unit tests), lintian clean, reproducible, piuparts, then
#   apt-get install ./xoauthd_N.deb  -> files, owners, modes, user; the unedited example is
#                                       not started; `xoauthd check` on it
#   the installed /usr/bin/xoauthd   -> one message through it against the test rig
#   edit the conffile, install N+1   -> the edit and the token store survive, the service
#                                       is restarted
#   remove                           -> stopped; configuration and state kept
#   purge                            -> configuration and state gone, the system user kept
# The package is purged at the end whatever happens, and the user xoauthd removed again when
# it did not exist before: the machine is left as it was found.
#
# systemd is not PID 1 here, so `systemctl` cannot start anything. The test runs in a private
# mount namespace where /run/systemd/system exists (what maintainer scripts test for "systemd
# is running") and where systemctl and deb-systemd-invoke are stand-ins that record their
# arguments: that shows what the maintainer scripts ask systemd to do. The daemon itself is
# exercised by starting the installed binary by hand.
#
#   bash tests/package/test_deb.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/package/common.sh
. "$here/common.sh"

require_root "it installs a package (CI runs as root on a throwaway machine)"
if ! in_mount_ns; then
  # Refuse to touch an installation that is not ours.
  if dpkg-query -W -f='${Status}' xoauthd 2>/dev/null | grep -q "installed\|config-files"; then
    echo "test_deb.sh: the package xoauthd is already on this machine; not touching it" >&2
    exit 1
  fi
  for p in /etc/xoauthd /var/lib/xoauthd; do
    if [ -e "$p" ]; then echo "test_deb.sh: $p exists; not touching it" >&2; exit 1; fi
  done
  had_user=0
  getent passwd xoauthd >/dev/null && had_user=1
  export XOAUTHD_DEB_HAD_USER=$had_user
  reexec_in_mount_ns "$@"
fi

tmp=$(mktemp -d /tmp/xoauthd-deb.XXXXXX)
calls="$tmp/systemd-calls.log"
: > "$calls"
fail=0

piuparts_pid=""
cleanup() {
  local rc=$?
  set +e
  # piuparts unmounts and removes its chroot when it ends: let it, after a TERM on failure.
  if [ -n "$piuparts_pid" ] && kill -0 "$piuparts_pid" 2>/dev/null; then
    kill "$piuparts_pid"; wait "$piuparts_pid"
  fi
  if dpkg-query -W -f='${Status}' xoauthd 2>/dev/null | grep -q "installed\|config-files"; then
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq xoauthd >/dev/null 2>&1 ||
      dpkg --purge xoauthd >/dev/null 2>&1
  fi
  if [ "$XOAUTHD_DEB_HAD_USER" = 0 ] && getent passwd xoauthd >/dev/null; then
    deluser --system --quiet xoauthd >/dev/null 2>&1 || userdel xoauthd
    getent group xoauthd >/dev/null && groupdel xoauthd
  fi
  rm -rf /var/lib/xoauthd
  rm -rf "$tmp"
  exit $rc
}
trap cleanup EXIT

ok()   { echo "ok   $*"; }
bad()  { echo "FAIL $*" >&2; fail=1; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
mode_owner() { [ "$(stat -c '%a %U:%G' "$1")" = "$2" ] || { echo "  $1: $(stat -c '%a %U:%G' "$1"), want $2" >&2; return 1; }; }
apt_get() { DEBIAN_FRONTEND=noninteractive apt-get -y -q --no-install-recommends "$@"; }
logged() { grep -qx -- "$1" "$calls"; }

# --- systemd stand-ins (inside this mount namespace only) ----------------------------------
mount -t tmpfs -o mode=0755 xoauthd-test-run /run/systemd
mkdir -p /run/systemd/system
cat > "$tmp/systemctl" <<EOF
#!/bin/sh
echo "systemctl \$*" >> "$calls"
case "\$*" in
  *is-enabled*) echo disabled; exit 1 ;;
  *is-active*) exit 3 ;;
esac
exit 0
EOF
cat > "$tmp/deb-systemd-invoke" <<EOF
#!/bin/sh
echo "deb-systemd-invoke \$*" >> "$calls"
exit 0
EOF
chmod 755 "$tmp/systemctl" "$tmp/deb-systemd-invoke"
mount --bind "$tmp/systemctl" /usr/bin/systemctl
mount --bind "$tmp/deb-systemd-invoke" /usr/bin/deb-systemd-invoke

# --- build, lint, reproduce ----------------------------------------------------------------
echo "==> building the package (version N)"
deb1=$(bash "$here/build_deb.sh" "$tmp/n")
ok "built $(basename "$deb1")"
cmake_version=$(sed -n 's/^project(xoauthd VERSION \([0-9.]*\).*/\1/p' "$repo/CMakeLists.txt")
deb_version=$(cd "$repo" && dpkg-parsechangelog -S Version)
check "debian/changelog version $deb_version is the CMake project version $cmake_version" \
  test "$deb_version" = "$cmake_version"

echo "==> lintian"
# (As root lintian prints "running with root privileges is not recommended!": not a tag.)
if lintian --fail-on error,warning "$deb1" > "$tmp/lintian.txt" 2>&1; then
  ok "lintian: no error, no warning"
else
  cat "$tmp/lintian.txt" >&2; bad "lintian"
fi
sed 's/^/  lintian: /' "$tmp/lintian.txt"

echo "==> piuparts: install and purge in a clean Debian 12 chroot (in the background)"
# It needs the Debian mirror to make its chroot, like mmdebstrap, and spends its time there
# (network, disk): it runs beside the builds below, its result is read at the end. Its own
# upgrade test needs the package in an archive, so it skips that; the upgrade below covers it.
mkdir -p "$tmp/piuparts"
timeout 900 piuparts -d bookworm -m http://deb.debian.org/debian --tmpdir="$tmp/piuparts" \
  "$deb1" > "$tmp/piuparts.log" 2>&1 &
piuparts_pid=$!

echo "==> reproducibility"
check "a second build in another directory is byte-identical" \
  bash "$here/test_reproducible.sh" "$deb1"

echo "==> building version N+1 (changelog bumped in a copy)"
deb2=$(DEB_BUILD_OPTIONS=nocheck bash "$here/build_deb.sh" "$tmp/n1" "${deb_version}+pkgtest1")
ok "built $(basename "$deb2")"

# --- install ------------------------------------------------------------------------------
echo "==> apt-get install ./$(basename "$deb1")"
(cd "$(dirname "$deb1")" && apt_get install "./$(basename "$deb1")") > "$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log" >&2; bad "apt-get install"; exit 1; }
ok "installed"
CONF=/etc/xoauthd/xoauthd.ini
check "binary /usr/bin/xoauthd 755 root:root" mode_owner /usr/bin/xoauthd "755 root:root"
check "$CONF 640 root:xoauthd" mode_owner "$CONF" "640 root:xoauthd"
check "/etc/xoauthd 755 root:root" mode_owner /etc/xoauthd "755 root:root"
check "/var/lib/xoauthd 700 xoauthd:xoauthd" mode_owner /var/lib/xoauthd "700 xoauthd:xoauthd"
check "$CONF is a conffile" sh -c "dpkg-query -W -f='\${Conffiles}' xoauthd | grep -q ' $CONF '"
check "$CONF is the shipped example" cmp -s "$CONF" "$repo/conf/xoauthd.ini"
# shellcheck disable=SC2016 # expanded by the inner sh
check "system user xoauthd, no login shell" sh -c \
  'u=$(getent passwd xoauthd) && [ "$(echo "$u" | cut -d: -f3)" -lt 1000 ] &&
   [ "$(echo "$u" | cut -d: -f6)" = /var/lib/xoauthd ] &&
   case "$(echo "$u" | cut -d: -f7)" in */nologin|*/false) true;; *) false;; esac'
unit=/lib/systemd/system/xoauthd.service
check "unit $unit" test -f "$unit"
check "unit runs the installed binary on $CONF" \
  grep -qx "ExecStart=/usr/bin/xoauthd run -c $CONF" "$unit"
for key in User=xoauthd StateDirectory=xoauthd StateDirectoryMode=0700 NoNewPrivileges=yes \
           ProtectSystem=strict CapabilityBoundingSet= SystemCallFilter=@system-service; do
  check "unit has $key" grep -qx "$key" "$unit"
done
check "unit logs to the journal (no StandardOutput= to a file, no logrotate file)" \
  sh -c "! grep -q '^Standard\(Output\|Error\)=file' $unit && [ ! -e /etc/logrotate.d/xoauthd ]"
check "unit not enabled by the package" \
  test ! -e /etc/systemd/system/multi-user.target.wants/xoauthd.service
for f in /usr/share/man/man8/xoauthd.8.gz /usr/share/man/man5/xoauthd.ini.5.gz \
         /usr/share/doc/xoauthd/examples/main.cf /usr/share/doc/xoauthd/examples/sasl_passwd \
         /usr/share/doc/xoauthd/examples/xoauthd.conf \
         /usr/share/doc/xoauthd/examples/jail.d-xoauthd.local \
         /usr/share/doc/xoauthd/copyright; do
  check "file $f" test -s "$f"
done
# shellcheck disable=SC2016 # expanded by the inner sh
check "no vendored library: only /usr/bin/xoauthd is an ELF file" sh -c \
  '[ "$(dpkg -L xoauthd | while read -r f; do [ -f "$f" ] && head -c4 "$f" | grep -q ELF && echo "$f"; done)" = /usr/bin/xoauthd ]'
# The example holds no secret: every secret-bearing key is a placeholder or commented out.
check "example: client secrets are REPLACE-ME placeholders" sh -c \
  "! grep -E '^client_secret *=' $CONF | grep -v '= *REPLACE-ME'"
check "example: no refresh token, no key material" sh -c \
  "! grep -E '^refresh_token *= *[^ ]' $CONF && ! grep -q 'PRIVATE KEY' $CONF"
check "postinst: the unedited example is not started, and says what to do" \
  grep -q "is the unedited example; the service is not started" "$tmp/install.log"
check "postinst: nothing started" sh -c "! grep -q '^deb-systemd-invoke' '$calls'"

echo "==> xoauthd check on the installed example"
# As the service user: the group read of the 0640 file is what the daemon relies on.
set +e
runuser -u xoauthd -- /usr/bin/xoauthd check -c "$CONF" > "$tmp/check.txt" 2>&1
rc=$?
set -e
sed 's/^/  check: /' "$tmp/check.txt"
check "xoauthd check accepts the installed example as user xoauthd (exit $rc)" \
  sh -c "[ $rc -eq 0 ] && grep -q '^$CONF: ok' '$tmp/check.txt'"

echo "==> the installed binary against the test rig: one message"
if XOAUTHD_BIN=/usr/bin/xoauthd PYTHONPATH="$repo/tests" timeout 300 python3 -m rig.demo --no-wait \
     > "$tmp/demo.log" 2>&1; then
  ok "message sent through /usr/bin/xoauthd and read back from the mailbox"
else
  tail -n 60 "$tmp/demo.log" >&2; bad "demo.py with /usr/bin/xoauthd"
fi

# --- upgrade with an edited conffile --------------------------------------------------------
echo "==> upgrade to $(basename "$deb2") with $CONF edited"
edit="; edited by tests/package/test_deb.sh $$"
echo "$edit" >> "$CONF"
echo "token store survives" > /var/lib/xoauthd/marker
chown xoauthd:xoauthd /var/lib/xoauthd/marker
uid_before=$(id -u xoauthd)
: > "$calls"
(cd "$(dirname "$deb2")" && apt_get -o Dpkg::Options::=--force-confdef \
   -o Dpkg::Options::=--force-confold install "./$(basename "$deb2")") > "$tmp/upgrade.log" 2>&1 ||
  { cat "$tmp/upgrade.log" >&2; bad "apt-get install (upgrade)"; exit 1; }
check "version is now ${deb_version}+pkgtest1" \
  test "$(dpkg-query -W -f='${Version}' xoauthd)" = "${deb_version}+pkgtest1"
check "the conffile edit survived" grep -qxF -- "$edit" "$CONF"
check "$CONF still 640 root:xoauthd" mode_owner "$CONF" "640 root:xoauthd"
check "the token store survived" test -f /var/lib/xoauthd/marker
check "same uid for xoauthd" test "$(id -u xoauthd)" = "$uid_before"
check "postinst restarted the service (edited configuration)" \
  logged "deb-systemd-invoke restart xoauthd.service"
check "not stopped during the upgrade" sh -c "! grep -q 'deb-systemd-invoke stop' '$calls'"

# --- remove, purge ------------------------------------------------------------------------
echo "==> apt-get remove xoauthd"
: > "$calls"
apt_get remove xoauthd > "$tmp/remove.log" 2>&1 || { cat "$tmp/remove.log" >&2; bad "remove"; }
check "prerm stopped the service" logged "deb-systemd-invoke stop xoauthd.service"
check "binary gone" test ! -e /usr/bin/xoauthd
check "configuration kept on remove" grep -qxF -- "$edit" "$CONF"
check "state kept on remove" test -f /var/lib/xoauthd/marker

echo "==> apt-get purge xoauthd"
apt_get purge xoauthd > "$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log" >&2; bad "purge"; }
check "package gone" sh -c "! dpkg-query -W -f='\${Status}' xoauthd 2>/dev/null | grep -q ."
check "/etc/xoauthd gone" test ! -e /etc/xoauthd
check "/var/lib/xoauthd gone" test ! -e /var/lib/xoauthd
check "system user kept (Debian policy: never reuse its uid)" sh -c "getent passwd xoauthd >/dev/null"
check "no unit state left" sh -c \
  '! ls /var/lib/systemd/deb-systemd-helper-enabled 2>/dev/null | grep -q xoauthd &&
   ! ls /var/lib/systemd/deb-systemd-helper-masked 2>/dev/null | grep -q xoauthd'

echo "==> piuparts result"
if wait "$piuparts_pid"; then
  ok "piuparts: $(grep -o 'PASS: .*' "$tmp/piuparts.log" | tail -n1)"
else
  grep -v DEBUG "$tmp/piuparts.log" | tail -n 40 >&2; bad "piuparts"
fi

if [ $fail -ne 0 ]; then
  echo "test_deb.sh: FAILED" >&2
  exit 1
fi
echo "test_deb.sh: all package checks passed"
