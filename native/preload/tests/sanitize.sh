#!/bin/sh
# Runs a command under the sanitizer build of the preload library (make -C native/preload sanitize):
#   tests/sanitize.sh PROGRAM [ARG...]
# The test programs are not instrumented, so the ASan runtime must come first in the initial
# library list: LD_PRELOAD is libasan, libubsan, then libslimfast-san.so (replacing any LD_PRELOAD
# already set). Children inherit all of it. Any report ends the process: ASan and LeakSanitizer
# with exit code 86, UBSan with 87. ASAN_OPTIONS/UBSAN_OPTIONS/LSAN_OPTIONS already set are
# appended to ours (later options win). LeakSanitizer checks at exit() and, because the test
# programs end with _exit(), in fx_pass() (fixture.c).
set -eu
dir=$(cd "$(dirname "$0")/.." && pwd)
cc=${CC:-cc}
asan=$($cc -print-file-name=libasan.so)
ubsan=$($cc -print-file-name=libubsan.so)
lib=$dir/libslimfast-san.so
for f in "$asan" "$ubsan" "$lib"; do
  if [ ! -f "$f" ]; then
    echo "sanitize.sh: $f not found (libasan8/libubsan1, make -C native/preload sanitize)" >&2
    exit 2
  fi
done
[ $# -gt 0 ] || { echo "usage: sanitize.sh PROGRAM [ARG...]" >&2; exit 2; }
supp=$dir/tests/lsan.supp
export LD_PRELOAD="$asan $ubsan $lib"
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:exitcode=86${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=87${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
if [ -f "$supp" ]; then
  export LSAN_OPTIONS="suppressions=$supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
fi
exec "$@"
