#!/usr/bin/env bash
# The test suite: unit tests, preload behaviour tests and end-to-end tests in network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "ci/test.sh: run as root: the tests create network namespaces" >&2
  exit 1
fi
# Incremental: a no-op right after `npm ci`, but for the preload's sanitizer build (libslimfast-san.so,
# ASan + UBSan, for dist/test/preload-sanitized.test.js; a few seconds).
npx tsc -p tsconfig.json
make -s -C native/preload all sanitize tests
make -s -C bench/clients
make -s -C native/launcher
make -s -C native/keeper all sanitize
[ -f build/Release/slimfast_addon.node ] || npx node-gyp rebuild --silent
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
npx ava "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# One plain summary line ("N passed, N failed, N skipped") counted from ava's per-test lines.
passed=$(grep -cE '^\s*✔' "$log" || true)
failed=$(grep -cE '^\s*✘' "$log" || true)
skipped=$(grep -cE '^\s*- ' "$log" || true)
echo "ava: ${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped"
exit "$rc"
