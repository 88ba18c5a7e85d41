// Routing: the peer hosts' shares of the overlay (longest-prefix match of a destination vIP over
// their subnets) and each peer's remote-listener view ("is ip:port a SlimFast listener over
// there?"). No engine dependency (tests/routing_test.cc builds it alone): the engine holds one
// RouteTable (Engine::routes), guarded by Engine::mu like the rest of its state, and does the rest
// of setPeers/setRemoteListeners itself (peers.cc: steering keys, the view page).
#pragma once

#include <cstdint>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace sf {

// A peer host's share of the overlay and its reserved port.
struct Route {
  uint32_t net;  // host order
  uint8_t prefix;
  uint32_t peer_ip;  // host order
  uint16_t peer_port;
};

class RouteTable {
 public:
  // Replaces every route (each net masked to its prefix; a later duplicate replaces an earlier one).
  void set(const std::vector<Route>& list);
  // The route with the longest prefix holding ip (host order), or null.
  const Route* lpm(uint32_t ip) const;
  // ip (host order) is the address of some route's peer.
  bool has_peer(uint32_t ip) const;
  // Calls f(const Route&) for every route.
  template <class F>
  void each(F&& f) const {
    for (auto& kv : routes_) f(kv.second);
  }

  // What replacing a peer's view changed.
  struct ViewChange {
    bool lost = false;   // some ip:port is not in it any more
    bool added = false;  // some ip:port is new in it
  };
  // The listeners (addr_key(vip, port)) peer_ip says it has.
  ViewChange set_view(uint32_t peer_ip, const std::vector<uint64_t>& keys);
  // peer_ip's view is unknown again; true if there was one.
  bool drop_view(uint32_t peer_ip);
  bool view_has(uint32_t peer_ip, uint32_t vip, uint16_t port) const;

 private:
  std::vector<uint8_t> prefixes_;                                     // distinct prefix lengths, longest first
  std::unordered_map<uint64_t, Route> routes_;                        // (prefix << 32 | net) -> route
  std::unordered_map<uint32_t, std::unordered_set<uint64_t>> views_;  // peer ip -> "ip:port" keys
};

}  // namespace sf
