#!/usr/bin/env bash
# Installs every Debian package xoauthd needs to build, test and run its demo, and to build
# and check its own .deb (tests/package).
# Dovecot and Postfix are installed without letting Debian start or configure the
# system-wide daemons: tests and the demo run private instances on loopback.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

pkgs=(build-essential cmake pkg-config clang gcc
      libuv1-dev libssl-dev libcurl4-openssl-dev libcjson-dev libinih-dev libxml2-dev libxml2-utils
      libgmime-3.0-dev
      dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd dovecot-submissiond
      postfix swaks libnet-ssleay-perl curl isync openssl python3 ca-certificates
      libsasl2-modules systemd groff-base fail2ban
      libnss-wrapper
      debhelper fakeroot lintian mmdebstrap podman piuparts)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
# policy-rc.d exit 101: maintainer scripts may not start services.
had_policy=0
[ -e /usr/sbin/policy-rc.d ] && had_policy=1
if [ $had_policy -eq 0 ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod 755 /usr/sbin/policy-rc.d
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
[ $had_policy -eq 1 ] || $SUDO rm -f /usr/sbin/policy-rc.d
