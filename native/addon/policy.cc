// Policy evaluation (policy.h).
#include "policy.h"

namespace sf {

static bool from(const PolicyRule& r, uint32_t src) { return (src & r.src_mask) == r.src_net; }

bool Policy::allows(uint32_t src, uint32_t dst, uint16_t port) const {
  if (!active) return true;
  for (const PolicyRule& r : rules)
    if (from(r, src) && (dst & r.dst_mask) == r.dst_net && port >= r.port_lo && port <= r.port_hi) return r.allow;
  return default_allow;
}

bool Policy::restricts(uint32_t src) const {
  if (!active) return false;
  for (const PolicyRule& r : rules) {
    if (!from(r, src)) continue;
    if (!r.allow) return true;
    // An allow for every destination and port: nothing after it can match this source.
    if (r.dst_mask == 0 && r.port_lo == 0 && r.port_hi == 65535) return false;
  }
  return !default_allow;
}

}  // namespace sf
