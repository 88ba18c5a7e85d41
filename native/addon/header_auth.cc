// Cluster-key authentication of host headers: key derivation and the replay cache. No engine
// dependency (tests/header_auth_test.cc builds it alone); the engine's checks are in cluster_checks.cc.
#include "header_auth.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "siphash.h"
#include "slimfast_wire.h"

namespace sf {

void cluster_root(const uint8_t* key, size_t len, uint8_t out[16]) {
  uint8_t k[16];
  memcpy(k, key, 16);
  for (size_t off = 16; off < len; off += 16) sf_siphash(key + off, std::min<size_t>(16, len - off), k, k, 16);
  memcpy(out, k, 16);
}

void derive_host_key(const uint8_t root[16], uint32_t ip_host, uint8_t out[16]) {
  uint8_t msg[SF_HOST_KEY_LABEL_LEN + 4];
  static_assert(sizeof(SF_HOST_KEY_LABEL) == SF_HOST_KEY_LABEL_LEN + 1, "label length");
  memcpy(msg, SF_HOST_KEY_LABEL, SF_HOST_KEY_LABEL_LEN);
  uint32_t be = htonl(ip_host);
  memcpy(msg + SF_HOST_KEY_LABEL_LEN, &be, 4);
  sf_siphash(msg, sizeof msg, root, out, 16);
}

ReplayCache::Result ReplayCache::insert(uint32_t sender, uint64_t nonce, uint64_t oldest) {
  while (!s_.empty() && s_.begin()->first < oldest) s_.erase(s_.begin());
  // What was forgotten for being older than oldest must stay refused even if the clock (and so
  // oldest) steps back later.
  if (oldest > 0) floor_ = std::max(floor_, oldest - 1);
  if (nonce <= floor_) return TOO_OLD;
  if (!s_.emplace(nonce, sender).second) return SEEN;
  if (s_.size() > max_) {
    floor_ = std::max(floor_, s_.begin()->first);
    s_.erase(s_.begin());
    if (nonce <= floor_) return TOO_OLD;  // it was the smallest itself: it is gone again
  }
  return NEW;
}

}  // namespace sf
