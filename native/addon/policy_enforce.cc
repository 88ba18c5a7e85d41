// The policy in the engine: installing one (containers it restricts lose their pools, since a
// pooled connect does not ask the broker) and refusing denied connects.
#include <cerrno>

#include "engine.h"
#include "util.h"

namespace sf {

void Engine::set_policy(Policy p) {
  std::lock_guard<std::mutex> lk(mu);
  policy = std::move(p);
  view.both();  // what was allowed may be denied, and the other way round
  for (auto& kv : by_id) {
    Container* c = kv.second;
    c->restricted = policy.restricts(c->ip);
    if (!c->restricted) continue;
    // The broker's end closes: the preload sees the hangup before its next take and asks instead.
    for (PreloadConn* pc : c->conns)
      while (!pc->pools.empty()) kill_pool(pc->pools.back());
  }
  if (running_)
    nudge();
  else
    collect_garbage();  // frees the killed pools
}

// The source is the container whose broker socket the request came in on, never the app's word.
bool Engine::policy_denies(Container* c, uint32_t dst, uint16_t dport) {
  if (!policy.active || policy.allows(c->ip, dst, dport)) return false;
  inc(ctr.policy_denied);
  if (ratelimit(10))
    logc(LOG_INFO, c->id, "policy: denied %s -> %s:%u (container %s)", ip_str(c->ip).c_str(), ip_str(dst).c_str(),
         dport, c->id.c_str());
  return true;
}

}  // namespace sf
