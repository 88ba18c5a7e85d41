// The pools' own bookkeeping (native/addon/pool_stock.cc), without the engine: pooled connections
// per peer, parked pools, the size of a queued SF_POOLED, and one pool's backoff, target and take
// reports. Built and run by selftest.mjs (g++); exits non-zero on failure.
#include <cstdio>
#include <string>
#include <vector>

#include "pool_stock.h"
#include "slimfast_wire.h"

using namespace sf;

static int fails = 0;
static void check(bool ok, const std::string& name) {
  if (!ok) printf("FAIL pool_stock: %s\n", name.c_str()), fails++;
}

int main() {
  PoolStock s;
  const uint32_t a = 0xc0a80002, b = 0xc0a80003;

  // ---- per peer ----
  check(s.at_peer(a) == 0 && s.peers() == 0, "no pool: no peer holds anything");
  s.add(a, 4);
  s.add(a, 1);
  s.add(b, 2);
  check(s.at_peer(a) == 5 && s.at_peer(b) == 2 && s.peers() == 2, "counts add up per peer");
  s.add(a, -3);
  check(s.at_peer(a) == 2, "and go down");
  s.add(a, -2);
  check(s.at_peer(a) == 0 && s.peers() == 1, "a peer at 0 is forgotten");
  s.add(b, -5);
  check(s.at_peer(b) == 0 && s.peers() == 0, "below 0 too");
  s.add(a, 0);
  check(s.peers() == 0, "adding nothing to an unknown peer keeps it unknown");

  // ---- parked pools (never dereferenced: any distinct addresses do) ----
  int x[3];
  Pool *p0 = reinterpret_cast<Pool*>(&x[0]), *p1 = reinterpret_cast<Pool*>(&x[1]), *p2 = reinterpret_cast<Pool*>(&x[2]);
  check(!s.any_parked(), "none parked at first");
  s.park(p0, 1000);
  s.park(p1, 1000 + kPoolParkNs / 2);
  s.park(p2, 1000 + kPoolParkNs / 4);
  std::vector<Pool*> due;
  auto collect = [&](Pool* p) { due.push_back(p); };
  s.unpark_due(1000 + kPoolParkNs - 1, collect);
  check(due.empty() && s.any_parked(), "none is due before kPoolParkNs");
  s.unpark_due(1000 + kPoolParkNs, collect);
  check(due.size() == 1 && due[0] == p0, "the first is due kPoolParkNs after it was parked");
  s.unpark(p1);
  due.clear();
  s.unpark_due(1000 + 2 * kPoolParkNs, collect);
  check(due.size() == 1 && due[0] == p2 && !s.any_parked(), "one unparked early is not reported");
  s.park(p0, 0);
  s.park(p1, 0);
  due.clear();
  s.unpark_due(kPoolParkNs, [&](Pool* p) {
    due.push_back(p);
    if (p == p0) s.park(p0, kPoolParkNs);  // parked again while the others are gone through
  });
  check(due.size() == 2 && s.any_parked(), "both due; one parked again from the callback stays");
  s.unpark(p0);
  check(!s.any_parked(), "unpark takes it off");

  // ---- the size of a queued SF_POOLED ----
  uint32_t m = s.msg_size();
  check(m >= sizeof(sf_pooled), "one queued SF_POOLED holds at least its bytes");
  check(s.msg_size() == m, "measured once");

  // ---- backoff ----
  std::vector<int> steps;
  for (int ms = 0, i = 0; i < 7; i++) steps.push_back(ms = PoolStock::next_backoff(ms));
  check(steps == std::vector<int>({1000, 2000, 4000, 8000, 16000, 30000, 30000}), "1 s, doubling up to 30 s");

  // ---- target (depth 4, max 64) ----
  check(PoolStock::target_after(4, true, false, 4, 64) == 4, "a take alone keeps the target");
  check(PoolStock::target_after(4, true, true, 4, 64) == 8, "an empty pool doubles it");
  check(PoolStock::target_after(48, false, true, 4, 64) == 64, "up to the max");
  check(PoolStock::target_after(64, true, true, 4, 64) == 64, "and no further");
  check(PoolStock::target_after(1, true, false, 4, 64) == 4, "taking again after a full channel: back to depth");
  check(PoolStock::target_after(1, false, false, 4, 64) == 1, "no take: left small");
  check(PoolStock::target_after(1, true, true, 4, 64) == 8, "back to depth, then doubled");

  // ---- take reports ----
  uint32_t presumed = 0;
  PoolStock::Took t = PoolStock::report(3, 0, &presumed, 8);
  check(t.dequeued == 3 && t.connections == 3, "three used: three leave the pool, three connections");
  t = PoolStock::report(2, 1, &presumed, 8);
  check(t.dequeued == 3 && t.connections == 2, "a discarded one leaves the pool but is no connection");
  t = PoolStock::report(5, 0, &presumed, 2);
  check(t.dequeued == 2 && t.connections == 5, "no more leave than are queued");
  presumed = 4;  // the channel's depth showed four takes (counted then, and gone from queued)
  t = PoolStock::report(3, 0, &presumed, 6);
  check(t.dequeued == 0 && t.connections == 0 && presumed == 1, "takes already seen are not counted again");
  t = PoolStock::report(2, 1, &presumed, 6);
  check(t.dequeued == 2 && t.connections == 1 && presumed == 0, "the rest of a report counts as usual");
  presumed = 2;
  t = PoolStock::report(0, 3, &presumed, 6);
  check(t.dequeued == 1 && t.connections == 0 && presumed == 0, "seen ones that were discarded stay connections");

  printf("%s pool_stock\n", fails ? "FAIL" : "ok");
  return fails != 0;
}
