// The connection pools' own bookkeeping: what all pools share (how many pooled connections each
// peer holds, the pools whose reports wait a moment, the kernel memory of one queued SF_POOLED)
// and the arithmetic of one pool's stock (its backoff, its target, what a take report says was
// taken). No engine dependency (tests/pool_stock_test.cc builds it alone): the engine holds one
// PoolStock (Engine::pools), guarded by Engine::mu like the rest of its state, and does the rest
// itself (pool.cc: the channels, the stocking connects, epoll, the counters); each pool's own
// numbers (target, queued, connecting, presumed, backoff) stay in its Pool (engine.h).
#pragma once

#include <algorithm>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace sf {

struct Pool;

// After a refill, the channel's reports are not watched for a moment: the takes made meanwhile
// are read and restocked together, one wakeup and one sendmmsg for many connections instead of
// one each, while the pool's stock covers the pause. An idle pool is never woken.
constexpr int64_t kPoolParkNs = 1000000;  // 1 ms

class PoolStock {
 public:
  // ---- pooled connections per peer ----
  // The peer holds every idle pooled connection of every process here: they are capped per peer.
  // Pooled connections (queued + connecting, all pools together) to peer_ip. One hash lookup.
  uint32_t at_peer(uint32_t peer_ip) const {
    auto it = peer_.find(peer_ip);
    return it == peer_.end() ? 0 : it->second;
  }
  // Adds d (negative: takes away) to peer_ip's count; a peer at 0 (or below) is forgotten.
  void add(uint32_t peer_ip, int64_t d);
  size_t peers() const { return peer_.size(); }

  // ---- parked pools (the engine stops watching their reports, see kPoolParkNs) ----
  bool any_parked() const { return !parked_.empty(); }
  void park(Pool* p, int64_t now_ns) { parked_.push_back({p, now_ns}); }
  void unpark(Pool* p);  // off the list before its time (a pool killed while parked)
  // f(p) for every pool parked kPoolParkNs or more before now_ns, each taken off the list first.
  template <class F>
  void unpark_due(int64_t now_ns, F&& f) {
    for (size_t i = 0; i < parked_.size();) {
      Parked x = parked_[i];
      if (now_ns - x.since_ns < kPoolParkNs) {
        i++;
        continue;
      }
      parked_[i] = parked_.back();
      parked_.pop_back();
      f(x.p);
    }
  }

  // ---- the channel's depth ----
  // How much kernel memory one queued SF_POOLED message holds (SIOCOUTQ units), measured once on
  // a private socketpair: a pool's SIOCOUTQ divided by it is how many the process has not taken
  // yet. 0: unknown (the measurement failed; tried again next time).
  uint32_t msg_size() {
    if (!msg_size_) msg_size_ = measure_msg_size();
    return msg_size_;
  }

  // ---- one pool's sizing (pure) ----
  // The peer is not taking connections now (or we are out of resources). Back off (1 s, doubling
  // up to 30 s) so that reports do not turn into a stream of failing connects; a success resets it.
  static int next_backoff(int backoff_ms) { return backoff_ms ? std::min(30000, backoff_ms * 2) : 1000; }
  // One SF_POOL_TOOK report of `used` sockets used and `gone` discarded as stale or dead. Takes the
  // channel's depth showed already (*presumed) were counted (as used: a discarded one among them
  // is counted as a connection, the one inexact case); *presumed loses them.
  struct Took {
    uint32_t dequeued;     // leave the pool's queued count (at most queued)
    uint64_t connections;  // new connections to count
  };
  static Took report(uint64_t used, uint64_t gone, uint32_t* presumed, uint32_t queued) {
    uint64_t seen = std::min<uint64_t>(used + gone, *presumed);
    *presumed -= uint32_t(seen);
    uint64_t seen_used = std::min(used, seen);
    return {uint32_t(std::min<uint64_t>(used + gone - seen, queued)), used - seen_used};
  }
  // The target after a report: back to depth when the process takes again after a full channel,
  // doubled (up to max) whenever it found the pool empty.
  static uint32_t target_after(uint32_t target, bool took, bool empty, uint32_t depth, uint32_t max) {
    if (took && target < depth) target = depth;
    if (empty && target < max) target = std::min(max, target * 2);
    return target;
  }

 private:
  static uint32_t measure_msg_size();
  struct Parked {
    Pool* p;
    int64_t since_ns;  // mono_ns() when it was parked
  };
  std::unordered_map<uint32_t, uint32_t> peer_;  // peer ip -> pooled connections (queued + connecting)
  std::vector<Parked> parked_;                   // pools whose take reports wait a moment
  uint32_t msg_size_ = 0;
};

}  // namespace sf
