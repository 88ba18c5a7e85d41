// Routing: longest-prefix match of a destination vIP over the peers' subnets, and each peer's
// remote-listener view ("is ip:port a SlimFast listener over there?").
#include <algorithm>

#include "engine.h"
#include "util.h"

namespace sf {

static uint64_t route_key(uint8_t prefix, uint32_t net) { return (uint64_t(prefix) << 32) | net; }

void Engine::set_peers(const std::vector<Route>& list) {
  std::lock_guard<std::mutex> lk(mu);
  routes.clear();
  route_prefixes.clear();
  for (const Route& r : list) {
    Route x = r;
    x.net &= prefix_mask(x.prefix);
    routes[route_key(x.prefix, x.net)] = x;
    if (std::find(route_prefixes.begin(), route_prefixes.end(), x.prefix) == route_prefixes.end())
      route_prefixes.push_back(x.prefix);
  }
  std::sort(route_prefixes.begin(), route_prefixes.end(), [](uint8_t a, uint8_t b) { return a > b; });
  update_steer_keys();
  view.both();
}

// One hash lookup per distinct prefix length (usually one: every host owns a /24 or so).
const Route* Engine::lpm(uint32_t ip) const {
  for (uint8_t p : route_prefixes) {
    auto it = routes.find(route_key(p, ip & prefix_mask(p)));
    if (it != routes.end()) return &it->second;
  }
  return nullptr;
}

void Engine::set_remote_listeners(uint32_t peer_ip, const std::vector<uint64_t>* keys) {
  std::lock_guard<std::mutex> lk(mu);
  if (!keys) {
    if (views.erase(peer_ip)) view.gone();
    return;
  }
  std::unordered_set<uint64_t>& v = views[peer_ip];
  std::unordered_set<uint64_t> next(keys->begin(), keys->end());
  bool lost = false, added = false;
  for (uint64_t k : v) lost |= !next.count(k);
  for (uint64_t k : next) added |= !v.count(k);
  v.swap(next);
  if (lost) view.gone();
  if (added) view.found();
}

bool Engine::view_has(uint32_t peer_ip, uint32_t vip, uint16_t port) const {
  auto it = views.find(peer_ip);
  return it != views.end() && it->second.count(addr_key(vip, port)) != 0;
}

}  // namespace sf
