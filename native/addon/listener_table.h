// The listener table: which listener (listeners.cc) is at a vIP:port of this host's containers.
// The engine holds one (Engine::listeners), guarded by Engine::mu like the rest of its state; it
// makes and frees the listeners and their channels (their lifetime is the epoll loop's), counts
// them and tells the view page and JS; the table only knows which one is where.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "util.h"

namespace sf {

struct Listener;

class ListenerTable {
 public:
  // The listener at vip:port (host order), or null. One hash lookup (every host header, every connect).
  Listener* find(uint32_t vip, uint16_t port) const {
    auto it = map_.find(addr_key(vip, port));
    return it == map_.end() ? nullptr : it->second;
  }
  // l goes at vip:port, where there is none yet.
  void insert(uint32_t vip, uint16_t port, Listener* l) { map_.emplace(addr_key(vip, port), l); }
  void erase(uint32_t vip, uint16_t port) { map_.erase(addr_key(vip, port)); }
  size_t size() const { return map_.size(); }
  // f(Listener*) for every listener; f must not insert or erase.
  template <class F>
  void each(F&& f) const {
    for (auto& kv : map_) f(kv.second);
  }
  // The listeners for which pred(Listener*) holds, to go through while removing them.
  template <class P>
  std::vector<Listener*> select(P&& pred) const {
    std::vector<Listener*> v;
    for (auto& kv : map_)
      if (pred(kv.second)) v.push_back(kv.second);
    return v;
  }

 private:
  std::unordered_map<uint64_t, Listener*> map_;  // addr_key(vip, port) -> listener
};

}  // namespace sf
