// The receiving side's cluster-key checks of host headers (docs/protocol.md "Cluster key") in the
// engine: the HeaderAuthority's member / tag / freshness / replay checks (header_authority.cc), the
// steering program's replay cache, and the refusal counters.
#include <arpa/inet.h>

#include <cerrno>
#include <cstring>

#include "engine.h"
#include "util.h"

namespace sf {

AuthResult Engine::auth_header(uint32_t peer_ip, const sf_hdr& h) {
  AuthResult a = auth.check(peer_ip, h);
  if (a != AUTH_OK) return a;  // accepted: peer_ip is the header's owner
  // The kernel's cache holds the headers it steered, which this broker never saw; recording ours
  // there too keeps one steered path's header from being replayed through the other.
  if (steering()) {
    int e = steer->remember(htonl(peer_ip), h.nonce);
    if (e == EEXIST) return AUTH_REPLAYED;
    if (e != 0 && ratelimit(7)) logf(LOG_WARN, "replay cache of the steering program: %s", strerror(e));
    auth.kernel_recorded();
  }
  return AUTH_OK;
}

// Counts a refused header under its reason.
void Engine::count_refusal(AuthResult r, uint32_t peer_ip) {
  static const char* why[] = {"", "forged", "stale", "replayed", "not from a member"};
  switch (r) {
    case AUTH_FORGED:
      inc(ctr.header_forged);
      break;
    case AUTH_STALE:
      inc(ctr.header_stale);
      break;
    case AUTH_REPLAYED:
      inc(ctr.header_replayed);
      break;
    case AUTH_NOT_MEMBER:
      inc(ctr.header_not_member);
      break;
    case AUTH_OK:
      return;
  }
  SF_DLOG("header from %s refused: %s", ip_str(peer_ip).c_str(), why[r]);
}

}  // namespace sf
