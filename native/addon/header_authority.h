// Who signs host headers and whose headers are believed (docs/protocol.md §2, "Cluster key"):
// HeaderAuthority owns this broker's host key, the cluster key's root, the nonces it signs, the
// peers' host keys (without a cluster key) and the replay cache of the headers it accepted.
// No engine dependency (tests/header_authority_test.cc builds it alone). The engine holds one
// (Engine::auth), guarded by Engine::mu like the rest of its state; it counts and logs refusals
// itself, records accepted headers in the steering program's replay cache too (cluster_checks.cc)
// and gives the peers' keys to the steering program (Engine::update_steer_keys).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <unordered_map>
#include <utility>
#include <vector>

#include "header_auth.h"
#include "routing.h"
#include "slimfast_wire.h"

namespace sf {

// Without a cluster key: a peer's host key (from its SYNC header) and the one before it: a
// restarted broker's processes may still send pooled headers signed with the old key for a while
// (pooled sockets live 20 s).
struct PeerKey {
  std::array<uint8_t, 16> cur{}, prev{};
  bool has_prev = false;
  bool ok(const sf_hdr& h) const;
};

class HeaderAuthority {
 public:
  // routes: the engine's route table (who owns which subnet), read for every check.
  explicit HeaderAuthority(const RouteTable& routes) : routes_(routes) {}

  // At every start: this host's address and subnet, the cluster key (empty: none) and how old a
  // header's nonce may be. Forgets the peers' keys and the replay cache, and makes the host key:
  // derived from the cluster key, else random. false (errno set): getrandom failed.
  bool start(uint32_t host_ip, uint32_t local_net, uint8_t local_prefix, const std::vector<uint8_t>& cluster_key,
             int window_ms);
  bool clustered() const { return clustered_; }
  // This broker's MAC key for the headers it sends (16 bytes; random, or derived).
  const uint8_t* host_key() const { return host_key_; }
  // With a cluster key: the key the member at ip signs with (every member computes every member's).
  void member_key(uint32_t ip, uint8_t out[16]) const { derive_host_key(cluster_key_root_, ip, out); }
  // Without a cluster key: what peer_ip's SYNC header said its key is, or null.
  const PeerKey* peer_key(uint32_t peer_ip) const {
    auto it = peer_keys_.find(peer_ip);
    return it == peer_keys_.end() ? nullptr : &it->second;
  }

  // ---- sending ----
  uint64_t next_nonce();  // max(CLOCK_REALTIME, last + 1)
  // A container header from this host, signed with the host key: source vIP src, destination
  // dst:dport (all zero for SF_HDR_POOLED, whose taker fills them in), source port sport. Host order.
  sf_hdr signed_header(uint8_t type, uint32_t src, uint32_t dst, uint16_t dport, uint16_t sport);
  // The SYNC header to subscribe to a peer with: with a cluster key signed, else carrying the host key.
  sf_hdr sync_header();

  // ---- receiving ----
  uint32_t header_owner(uint32_t peer_ip, const sf_hdr& h) const;  // 0: no member
  // With a cluster key: the member / tag / freshness / replay checks of a header from peer_ip; an
  // accepted one is in the replay cache from now on.
  AuthResult check(uint32_t peer_ip, const sf_hdr& h);
  // Without a cluster key: a SYNC header from a configured peer carries that peer's key. false:
  // it is not one (nothing learned); true: the peer's keys are up to date (maybe unchanged).
  bool learn_peer_key(uint32_t peer_ip, const sf_hdr& h);

  // ---- the steering program's replay cache (with a cluster key) ----
  void kernel_recorded() { seen_inserts_++; }  // an accepted header recorded there too
  // Once a second: headers the kernel's cache took in the last window (the steered ones, given as
  // the program's count so far, and those kernel_recorded()).
  uint64_t kernel_seen_in_window(int64_t now_ms, uint64_t steered);

 private:
  const RouteTable& routes_;
  uint32_t host_ip_ = 0, local_net_ = 0;
  uint8_t local_prefix_ = 32;
  bool clustered_ = false;
  int window_ms_ = SF_HDR_WINDOW_MS;
  uint8_t host_key_[16] = {};
  uint8_t cluster_key_root_[16] = {};                   // with a cluster key: its root (cluster_root)
  uint64_t last_nonce_ = 0;                             // the last nonce signed: each new one is larger
  ReplayCache seen_;                                    // with a cluster key: headers accepted on the reserved port
  uint64_t seen_inserts_ = 0;                           // of those, recorded in the steering program's cache too
  std::deque<std::pair<int64_t, uint64_t>> seen_rate_;  // (ms, kernel cache inserts so far), per second
  std::unordered_map<uint32_t, PeerKey> peer_keys_;     // peer ip -> keys
};

}  // namespace sf
