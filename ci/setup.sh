#!/usr/bin/env bash
# Prepares a fresh Debian 12 machine (as root) to build, test and demo SlimFast:
# Debian packages from ci/packages.txt, then `npm ci` (which builds the TypeScript, the addon and
# the preload library). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "ci/setup.sh: run as root (it installs Debian packages and the tests create network namespaces)" >&2
  exit 1
fi

mapfile -t pkgs < <(grep -v '^\s*#' ci/packages.txt | sed '/^\s*$/d')
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "ci/setup.sh: installing ${missing[*]}"
  # Keep package installs from starting system services (nginx, redis, memcached): tests start their own.
  policy_added=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy_added=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -n "$policy_added" ] && rm -f /usr/sbin/policy-rc.d
fi

if ! command -v node >/dev/null || ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=8)?0:1)'; then
  echo "ci/setup.sh: Node.js >= 20.8 with npm is required" >&2
  exit 1
fi
# Build the addon against the installed Node's headers when they are there (no download needed).
if [ -f /usr/include/node/node_api.h ] && [ -z "${npm_config_nodedir:-}" ]; then
  export npm_config_nodedir=/usr
fi
npm ci --no-audit --no-fund
