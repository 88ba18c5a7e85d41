#!/usr/bin/env bash
# Runs the preload tests against tests/bin/fakebroker inside a private network namespace
# (needs root and iproute2). Usage: tests/run_local.sh [t_name ...]
# Environment: VALGRIND=1 runs each test under valgrind; SANITIZE=1 under the sanitizer build
# (tests/sanitize.sh: libslimfast-san.so behind ASan/UBSan; a sanitizer report fails the test).
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$here/tests/bin
lib=$here/libslimfast.so
ns=sfpre-$$-$RANDOM
sock=/tmp/$ns.sock
vip=10.250.0.2
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  ip netns del "$ns" 2>/dev/null
  rm -f "$sock" "$log"
}
trap cleanup EXIT
ip netns add "$ns" || { echo "cannot create a network namespace" >&2; exit 77; }
ip -n "$ns" link set lo up
ip -n "$ns" addr add $vip/24 dev lo
nsx() { ip netns exec "$ns" "$@"; }

log=/tmp/$ns.log
ip netns exec "$ns" "$bin/fakebroker" --socket "$sock" --vip $vip --net 10.250.0.0/24 >>"$log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.02; done
ip netns exec "$ns" env LD_PRELOAD="$lib" SLIMFAST_SOCKET="$sock" "$bin/echo_server" 9000 >>"$log" 2>&1 &
pids+=($!)
ip netns exec "$ns" "$bin/echo_server" 9001 >>"$log" 2>&1 &
pids+=($!)
sleep 0.3

export SF_TEST_SELF_IP=$vip SF_TEST_ECHO=$vip:9000 SF_TEST_CLOSED=$vip:9999 SF_TEST_PLAIN=$vip:9001
tests=("$@")
[ ${#tests[@]} -eq 0 ] && tests=($(cd "$bin" && ls t_* | sort))
pass=0 fail=0 skip=0
for t in "${tests[@]}"; do
  wrap=()
  [ "${VALGRIND:-0}" = 1 ] && wrap=(valgrind -q --error-exitcode=99 --trace-children=yes)
  [ "${SANITIZE:-0}" = 1 ] && wrap=(sh "$here/tests/sanitize.sh")
  start=$(date +%s.%N)
  out=$(nsx env LD_PRELOAD="$lib" SLIMFAST_SOCKET="$sock" "${wrap[@]}" "$bin/$t" 2>&1)
  rc=$?
  if [ "${SANITIZE:-0}" = 1 ] && [ $rc -eq 0 -o $rc -eq 77 ] &&
    echo "$out" | grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:'; then rc=86; fi
  dt=$(echo "$(date +%s.%N) - $start" | bc -l)
  case $rc in
    0) pass=$((pass+1)); printf 'PASS %-28s %5.2fs\n' "$t" "$dt" ;;
    77) skip=$((skip+1)); printf 'SKIP %-28s %s\n' "$t" "$(echo "$out" | tail -1)" ;;
    *) fail=$((fail+1)); printf 'FAIL %-28s rc=%d\n%s\n' "$t" "$rc" "$out" ;;
  esac
done
echo "passed $pass, failed $fail, skipped $skip"
[ $fail -eq 0 ]
