// The peer hosts in the engine: JS's setPeers and setRemoteListeners edit the route table
// (routing.h), then the steering program's keys and the view page follow.
#include "engine.h"

namespace sf {

void Engine::set_peers(const std::vector<Route>& list) {
  std::lock_guard<std::mutex> lk(mu);
  routes.set(list);
  update_steer_keys();
  view.both();
}

void Engine::set_remote_listeners(uint32_t peer_ip, const std::vector<uint64_t>* keys) {
  std::lock_guard<std::mutex> lk(mu);
  if (!keys) {
    if (routes.drop_view(peer_ip)) view.gone();
    return;
  }
  RouteTable::ViewChange c = routes.set_view(peer_ip, *keys);
  if (c.lost) view.gone();
  if (c.added) view.found();
}

}  // namespace sf
