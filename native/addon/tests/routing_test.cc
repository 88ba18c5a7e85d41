// The route table (native/addon/routing.cc), without the engine: longest-prefix match, peers and
// their remote-listener views. Built and run by selftest.mjs (g++); exits non-zero on failure.
#include <cstdio>
#include <string>
#include <vector>

#include "routing.h"
#include "util.h"

using namespace sf;

static int fails = 0;
static void check(bool ok, const std::string& name) {
  if (!ok) printf("FAIL routing: %s\n", name.c_str()), fails++;
}

static uint32_t ip(int a, int b, int c, int d) {
  return uint32_t(a) << 24 | uint32_t(b) << 16 | uint32_t(c) << 8 | uint32_t(d);
}

int main() {
  RouteTable t;
  check(t.lpm(ip(10, 0, 1, 1)) == nullptr, "an empty table routes nothing");
  check(!t.has_peer(ip(192, 168, 0, 2)), "and knows no peer");

  t.set({
      {ip(10, 0, 1, 77), 24, ip(192, 168, 0, 2), 7001},  // the net is masked to its prefix
      {ip(10, 0, 0, 0), 16, ip(192, 168, 0, 3), 7002},
      {ip(10, 0, 2, 128), 25, ip(192, 168, 0, 4), 7003},
      {0, 0, ip(192, 168, 0, 5), 7004},  // a default route
  });
  const Route* r = t.lpm(ip(10, 0, 1, 9));
  check(r && r->peer_ip == ip(192, 168, 0, 2) && r->net == ip(10, 0, 1, 0) && r->prefix == 24,
        "the /24 holding the address, its net masked");
  r = t.lpm(ip(10, 0, 3, 9));
  check(r && r->peer_ip == ip(192, 168, 0, 3), "the /16 where no longer prefix holds it");
  r = t.lpm(ip(10, 0, 2, 200));
  check(r && r->peer_ip == ip(192, 168, 0, 4) && r->peer_port == 7003, "the /25 before the /16");
  r = t.lpm(ip(10, 0, 2, 100));
  check(r && r->peer_ip == ip(192, 168, 0, 3), "the other half of the /24 is the /16's");
  r = t.lpm(ip(172, 16, 0, 1));
  check(r && r->peer_ip == ip(192, 168, 0, 5), "the default route takes the rest");
  check(t.has_peer(ip(192, 168, 0, 3)) && !t.has_peer(ip(10, 0, 1, 0)), "peers by their address");
  int n = 0;
  t.each([&](const Route&) { n++; });
  check(n == 4, "each() visits every route");

  t.set({{ip(10, 0, 1, 0), 24, ip(192, 168, 0, 2), 7001}, {ip(10, 0, 1, 5), 24, ip(192, 168, 0, 9), 7009}});
  r = t.lpm(ip(10, 0, 1, 1));
  check(r && r->peer_ip == ip(192, 168, 0, 9), "a later route for the same subnet replaces the earlier");
  check(t.lpm(ip(10, 0, 3, 9)) == nullptr && t.lpm(ip(172, 16, 0, 1)) == nullptr, "set() replaces every route");
  check(!t.has_peer(ip(192, 168, 0, 3)) && !t.has_peer(ip(192, 168, 0, 2)), "and every peer");

  uint32_t peer = ip(192, 168, 0, 9), vip = ip(10, 0, 1, 4);
  check(!t.view_has(peer, vip, 80), "no view: no listener");
  check(!t.drop_view(peer), "dropping an unknown view changes nothing");
  RouteTable::ViewChange c = t.set_view(peer, {addr_key(vip, 80), addr_key(vip, 443)});
  check(!c.lost && c.added, "a first view only adds");
  check(t.view_has(peer, vip, 80) && t.view_has(peer, vip, 443) && !t.view_has(peer, vip, 8080),
        "listeners by vIP and port");
  check(!t.view_has(ip(192, 168, 0, 2), vip, 80), "views are per peer");
  c = t.set_view(peer, {addr_key(vip, 443), addr_key(vip, 80)});
  check(!c.lost && !c.added, "the same listeners in another order change nothing");
  c = t.set_view(peer, {addr_key(vip, 443), addr_key(vip, 8080)});
  check(c.lost && c.added && !t.view_has(peer, vip, 80) && t.view_has(peer, vip, 8080), "one gone, one new");
  c = t.set_view(peer, {});
  check(c.lost && !c.added && !t.view_has(peer, vip, 443), "an empty view loses everything");
  check(t.drop_view(peer), "an empty view is still a known one");
  t.set_view(peer, {addr_key(vip, 80)});
  t.set({});
  check(t.view_has(peer, vip, 80), "views outlive the routes (the peer list and the views come separately)");

  printf("%s routing\n", fails ? "FAIL" : "ok");
  return fails != 0;
}
