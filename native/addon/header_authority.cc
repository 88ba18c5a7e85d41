// Signing host headers and checking them (header_authority.h): this host's key and nonces, the
// peers' keys, the cluster key's member / tag / freshness / replay checks. No engine dependency.
#include "header_authority.h"

#include <arpa/inet.h>
#include <endian.h>
#include <sys/random.h>

#include <algorithm>
#include <cstring>

#include "util.h"

namespace sf {

bool PeerKey::ok(const sf_hdr& h) const {
  return header_tag_ok(h, cur.data()) || (has_prev && header_tag_ok(h, prev.data()));
}

bool HeaderAuthority::start(uint32_t host_ip, uint32_t local_net, uint8_t local_prefix,
                            const std::vector<uint8_t>& cluster_key, int window_ms) {
  host_ip_ = host_ip;
  local_net_ = local_net;
  local_prefix_ = local_prefix;
  clustered_ = !cluster_key.empty();
  window_ms_ = window_ms;
  peer_keys_.clear();
  seen_.clear();
  seen_rate_.clear();
  if (clustered_) {
    // Every member computes every member's key; pooled connections survive a restart.
    cluster_root(cluster_key.data(), cluster_key.size(), cluster_key_root_);
    derive_host_key(cluster_key_root_, host_ip, host_key_);
  } else {
    // A fresh host key per start: pooled connections made before a restart die with their headers.
    if (getrandom(host_key_, sizeof host_key_, 0) != ssize_t(sizeof host_key_)) return false;
    // Our own pooled connections (same-host) come to our reserved port from our own address.
    memcpy(peer_keys_[host_ip].cur.data(), host_key_, sizeof host_key_);
  }
  return true;
}

uint64_t HeaderAuthority::next_nonce() {
  last_nonce_ = std::max(realtime_ns(), last_nonce_ + 1);
  return last_nonce_;
}

sf_hdr HeaderAuthority::signed_header(uint8_t type, uint32_t src, uint32_t dst, uint16_t dport, uint16_t sport) {
  sf_hdr h;
  memset(&h, 0, sizeof h);
  h.magic = htonl(SF_HDR_MAGIC);
  h.version = SF_HDR_VERSION;
  h.type = type;
  h.hdr_len = htons(SF_HDR_LEN);
  h.dst_vip = htonl(dst);
  h.dst_port = htons(dport);
  h.src_port = htons(sport);
  h.src_vip = htonl(src);
  h.key_id = htonl(SF_KEY_HOST);
  h.nonce = htobe64(next_nonce());
  header_tag(h, host_key_);
  return h;
}

sf_hdr HeaderAuthority::sync_header() {
  if (clustered_) return signed_header(SF_HDR_SYNC, 0, 0, 0, 0);
  // As the brokers without a cluster key always sent it: the tag is the key itself, the nonce
  // the time in whole milliseconds.
  sf_hdr h = signed_header(SF_HDR_SYNC, 0, 0, 0, 0);
  h.nonce = htobe64(realtime_ns() / 1000000 * 1000000);
  memcpy(h.tag, host_key_, sizeof h.tag);
  return h;
}

// The member host whose key must have signed h, or 0: the SYNC stream's sender must be a peer
// itself; a container header must come from the host owning the source vIP's subnet.
uint32_t HeaderAuthority::header_owner(uint32_t peer_ip, const sf_hdr& h) const {
  if (h.type == SF_HDR_SYNC) return routes_.has_peer(peer_ip) ? peer_ip : 0;
  uint32_t src = ntohl(h.src_vip);
  if (in_prefix(src, local_net_, local_prefix_)) return host_ip_;
  const Route* r = routes_.lpm(src);
  return r ? r->peer_ip : 0;
}

AuthResult HeaderAuthority::check(uint32_t peer_ip, const sf_hdr& h) {
  uint32_t owner = header_owner(peer_ip, h);
  if (owner == 0 || owner != peer_ip) return AUTH_NOT_MEMBER;
  uint8_t key[16];
  member_key(owner, key);
  sf_hdr signed_part = h;
  if (h.type == SF_HDR_POOLED) pooled_blank(signed_part);
  if (ntohl(h.key_id) != SF_KEY_HOST || !header_tag_ok(signed_part, key)) return AUTH_FORGED;
  uint64_t now = realtime_ns(), nonce = be64toh(h.nonce);
  uint64_t window = uint64_t(window_ms_) * 1000000ull;
  if (nonce + window < now || nonce > now + SF_HDR_FUTURE_NS) return AUTH_STALE;
  switch (seen_.insert(owner, nonce, now - window)) {
    case ReplayCache::TOO_OLD:
      return AUTH_STALE;
    case ReplayCache::SEEN:
      return AUTH_REPLAYED;
    case ReplayCache::NEW:
      break;
  }
  return AUTH_OK;
}

// Without a cluster key, the tag of a SYNC header from a configured peer host is that host's key
// for the headers its containers send.
bool HeaderAuthority::learn_peer_key(uint32_t peer_ip, const sf_hdr& h) {
  if (!routes_.has_peer(peer_ip) || ntohl(h.key_id) != SF_KEY_HOST) return false;
  std::array<uint8_t, 16> k;
  memcpy(k.data(), h.tag, 16);
  auto it = peer_keys_.find(peer_ip);
  if (it == peer_keys_.end()) {
    peer_keys_[peer_ip].cur = k;
  } else if (it->second.cur != k) {  // the peer's broker restarted
    it->second.prev = it->second.cur;
    it->second.has_prev = true;
    it->second.cur = k;
  }
  return true;
}

uint64_t HeaderAuthority::kernel_seen_in_window(int64_t now, uint64_t steered) {
  uint64_t total = steered + seen_inserts_;
  seen_rate_.emplace_back(now, total);
  while (seen_rate_.size() > 1 && seen_rate_.front().first < now - window_ms_ - 1000) seen_rate_.pop_front();
  return total - seen_rate_.front().second;
}

}  // namespace sf
