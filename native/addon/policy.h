// Network policy at connect time: an ordered allow/deny list by (source vIP, destination vIP,
// destination port), checked by the client's broker on SF_CONNECT (docs/protocol.md "Policy").
// No engine dependency: binding.cc builds one, Engine::set_policy installs it.
#pragma once
#include <cstdint>
#include <vector>

namespace sf {

struct PolicyRule {
  bool allow;
  uint32_t src_net, src_mask;  // host order; mask 0 = any
  uint32_t dst_net, dst_mask;
  uint16_t port_lo, port_hi;  // inclusive
};

struct Policy {
  bool active = false;  // false: no policy, everything allowed
  bool default_allow = true;
  std::vector<PolicyRule> rules;

  // The first rule that matches decides; none: the default.
  bool allows(uint32_t src, uint32_t dst, uint16_t port) const;
  // Could any connect from src be denied? Conservative (true unless every destination is surely
  // allowed): such a source gets no pooled connections, which would not ask the broker.
  bool restricts(uint32_t src) const;
};

}  // namespace sf
