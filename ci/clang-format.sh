#!/usr/bin/env bash
# clang-format over the project's C and C++ (.clang-format at the top): checks by default, rewrites
# with --write. `npm run lint` and `npm run format` call it.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v clang-format >/dev/null; then
  echo "ci/clang-format.sh: clang-format is not installed: apt-get install clang-format (ci/setup.sh does)" >&2
  exit 1
fi
mapfile -t files < <(git ls-files '*.c' '*.h' '*.cc')
if [ "${1:-}" = --write ]; then
  clang-format -i "${files[@]}"
else
  clang-format --dry-run -Werror "${files[@]}"
fi
