// Routing: longest-prefix match of a destination vIP over the peers' subnets, and each peer's
// remote-listener view ("is ip:port a SlimFast listener over there?"). No engine dependency.
#include "routing.h"

#include <algorithm>

#include "util.h"

namespace sf {

static uint64_t route_key(uint8_t prefix, uint32_t net) { return (uint64_t(prefix) << 32) | net; }

void RouteTable::set(const std::vector<Route>& list) {
  routes_.clear();
  prefixes_.clear();
  for (const Route& r : list) {
    Route x = r;
    x.net &= prefix_mask(x.prefix);
    routes_[route_key(x.prefix, x.net)] = x;
    if (std::find(prefixes_.begin(), prefixes_.end(), x.prefix) == prefixes_.end()) prefixes_.push_back(x.prefix);
  }
  std::sort(prefixes_.begin(), prefixes_.end(), [](uint8_t a, uint8_t b) { return a > b; });
}

// One hash lookup per distinct prefix length (usually one: every host owns a /24 or so).
const Route* RouteTable::lpm(uint32_t ip) const {
  for (uint8_t p : prefixes_) {
    auto it = routes_.find(route_key(p, ip & prefix_mask(p)));
    if (it != routes_.end()) return &it->second;
  }
  return nullptr;
}

bool RouteTable::has_peer(uint32_t ip) const {
  for (auto& kv : routes_)
    if (kv.second.peer_ip == ip) return true;
  return false;
}

RouteTable::ViewChange RouteTable::set_view(uint32_t peer_ip, const std::vector<uint64_t>& keys) {
  std::unordered_set<uint64_t>& v = views_[peer_ip];
  std::unordered_set<uint64_t> next(keys.begin(), keys.end());
  ViewChange c;
  for (uint64_t k : v) c.lost |= !next.count(k);
  for (uint64_t k : next) c.added |= !v.count(k);
  v.swap(next);
  return c;
}

bool RouteTable::drop_view(uint32_t peer_ip) { return views_.erase(peer_ip) != 0; }

bool RouteTable::view_has(uint32_t peer_ip, uint32_t vip, uint16_t port) const {
  auto it = views_.find(peer_ip);
  return it != views_.end() && it->second.count(addr_key(vip, port)) != 0;
}

}  // namespace sf
