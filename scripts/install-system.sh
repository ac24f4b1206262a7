#!/usr/bin/env bash
# Debian packages the product and its tests use. Installs only what is missing, so a second run
# costs a dpkg query.
set -euo pipefail
packages=(
  chromium          # real browser for the widget and console tests (driven by Playwright)
  sip-tester        # SIPp: a real SIP peer
  baresip           # a second real softphone that records what it hears
  postgresql        # the production database, started by the test run
  sox               # audio conversions for test fixtures
  tcpdump           # captures RTP that SIPp sends (SIPp cannot record)
  iproute2          # unshare -n + ip link: tests confined to loopback
  libsndfile1
  fonts-wqy-microhei  # Chinese glyphs for the widget and console in headless Chromium (screenshots, tests)
  ffmpeg
  nginx             # the load balancer in front of the workers (deploy/nginx, tests/cluster)
  kamailio          # the SIP proxy spreading calls over the workers (deploy/kamailio, tests/cluster)
  coturn            # the TURN server for the widget behind NAT (deploy/coturn, tests/cluster/test_turn.py)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "installing Debian packages: ${missing[*]}"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
# Installing must not start the packages' own services (nginx on :80, coturn, kamailio): the
# tests and `carecall cluster up` run their own instances with their own configs.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod +x "$policy" && own_policy=1
fi
trap '[ "$own_policy" = 1 ] && $SUDO rm -f "$policy"' EXIT
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
