// The receiving side's cluster-key checks of host headers (docs/protocol.md "Cluster key") and the
// sending side's nonces.
#include <arpa/inet.h>
#include <endian.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "engine.h"
#include "header_auth.h"
#include "util.h"

namespace sf {

uint64_t Engine::next_nonce() {
  last_nonce = std::max(realtime_ns(), last_nonce + 1);
  return last_nonce;
}

// The member host whose key must have signed h, or 0: the SYNC stream's sender must be a peer
// itself; a container header must come from the host owning the source vIP's subnet.
uint32_t Engine::header_owner(uint32_t peer_ip, const sf_hdr& h) const {
  if (h.type == SF_HDR_SYNC) return routes.has_peer(peer_ip) ? peer_ip : 0;
  uint32_t src = ntohl(h.src_vip);
  if (in_prefix(src, cfg.local_net, cfg.local_prefix)) return cfg.host_ip;
  const Route* r = routes.lpm(src);
  return r ? r->peer_ip : 0;
}

AuthResult Engine::auth_header(uint32_t peer_ip, const sf_hdr& h) {
  uint32_t owner = header_owner(peer_ip, h);
  if (owner == 0 || owner != peer_ip) return AUTH_NOT_MEMBER;
  uint8_t key[16];
  derive_host_key(cluster_key_root, owner, key);
  sf_hdr signed_part = h;
  if (h.type == SF_HDR_POOLED) pooled_blank(signed_part);
  if (ntohl(h.key_id) != SF_KEY_HOST || !header_tag_ok(signed_part, key)) return AUTH_FORGED;
  uint64_t now = realtime_ns(), nonce = be64toh(h.nonce);
  uint64_t window = uint64_t(cfg.header_window_ms) * 1000000ull;
  if (nonce + window < now || nonce > now + SF_HDR_FUTURE_NS) return AUTH_STALE;
  switch (seen.insert(owner, nonce, now - window)) {
    case ReplayCache::TOO_OLD: return AUTH_STALE;
    case ReplayCache::SEEN: return AUTH_REPLAYED;
    case ReplayCache::NEW: break;
  }
  // The kernel's cache holds the headers it steered, which this broker never saw; recording ours
  // there too keeps one steered path's header from being replayed through the other.
  if (steering()) {
    int e = steer->remember(htonl(owner), h.nonce);
    if (e == EEXIST) return AUTH_REPLAYED;
    if (e != 0 && ratelimit(7)) logf(LOG_WARN, "replay cache of the steering program: %s", strerror(e));
    seen_inserts++;
  }
  return AUTH_OK;
}

// Counts a refused header under its reason.
void Engine::count_refusal(AuthResult r, uint32_t peer_ip) {
  static const char* why[] = {"", "forged", "stale", "replayed", "not from a member"};
  switch (r) {
    case AUTH_FORGED: inc(ctr.header_forged); break;
    case AUTH_STALE: inc(ctr.header_stale); break;
    case AUTH_REPLAYED: inc(ctr.header_replayed); break;
    case AUTH_NOT_MEMBER: inc(ctr.header_not_member); break;
    case AUTH_OK: return;
  }
  SF_DLOG("header from %s refused: %s", ip_str(peer_ip).c_str(), why[r]);
}

}  // namespace sf
