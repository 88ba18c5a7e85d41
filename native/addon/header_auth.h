// Cluster-key authentication of host headers (docs/protocol.md "Cluster key"): host keys derived
// from the cluster key and the host's address, and the replay cache of accepted nonces.
#pragma once
#include <cstddef>
#include <cstdint>
#include <set>
#include <utility>

namespace sf {

// The 16-byte root of a cluster key of 16..64 bytes (slimfast_wire.h has the definition).
void cluster_root(const uint8_t* key, size_t len, uint8_t out[16]);
// The header key of the host at ip_host: SipHash-2-4-128(root, SF_HOST_KEY_LABEL || ip).
void derive_host_key(const uint8_t root[16], uint32_t ip_host, uint8_t out[16]);

// (sender, nonce) of the headers accepted within the window, ordered by nonce. Bounded: when it is
// full the smallest nonce goes, and every nonce up to it counts as too old from then on, so an
// evicted header can never be accepted again (a flood costs freshness, never replay protection).
class ReplayCache {
 public:
  enum Result { NEW, SEEN, TOO_OLD };
  explicit ReplayCache(size_t max_entries = size_t(1) << 19) : max_(max_entries) {}
  // Forgets the entries with a nonce below oldest (they are stale anyway), then records this one.
  Result insert(uint32_t sender, uint64_t nonce, uint64_t oldest);
  void clear() {
    s_.clear();
    floor_ = 0;
  }
  size_t size() const { return s_.size(); }

 private:
  std::set<std::pair<uint64_t, uint32_t>> s_;
  size_t max_;
  uint64_t floor_ = 0;  // nonces at or below it are refused (evicted while still fresh)
};

// What a header check found (Engine::auth_header, cluster_checks.cc).
enum AuthResult { AUTH_OK, AUTH_FORGED, AUTH_STALE, AUTH_REPLAYED, AUTH_NOT_MEMBER };

}  // namespace sf
