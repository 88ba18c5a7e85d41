// The reserved port's own state: the connections accepted there whose header is not complete yet
// (HeaderConn, engine.h), with their deadlines and how many wait per source address, and a free
// list of them for reuse. The engine holds one (Engine::rport), guarded by Engine::mu like the
// rest of its state; the listener and its epoll registration, the accepts, the header checks, the
// counters and the hand-off are the engine's (reserved_port.cc, which implements both).
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "timer_list.h"

namespace sf {

struct HeaderConn;

class ReservedPort {
 public:
  // Connections from peer_ip (host order) waiting for their header. One hash lookup.
  uint32_t waiting(uint32_t peer_ip) const {
    auto it = by_peer_.find(peer_ip);
    return it == by_peer_.end() ? 0 : it->second;
  }
  void wait(HeaderConn* h, int64_t deadline);         // h (its peer_ip set) waits until deadline
  void done(HeaderConn* h);                           // h waits no more
  HeaderConn* first() const { return timers_.head; }  // the waiting one with the earliest deadline

  HeaderConn* reuse();       // one from the free list (still marked dead), or null
  bool keep(HeaderConn* h);  // h onto the free list; false: it is full (the caller deletes h)
  void clear();              // forgets the counts, deletes the free list (teardown)

 private:
  TimerList<HeaderConn> timers_;                    // every waiting one, by deadline
  std::unordered_map<uint32_t, uint32_t> by_peer_;  // source address -> waiting connections
  std::vector<HeaderConn*> free_;                   // for reuse (at most 1024)
};

}  // namespace sf
