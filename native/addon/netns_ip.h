#pragma once
#include <string>

namespace sf {

struct NetnsIp {
  std::string ip;     // empty: none found (or error set)
  std::string error;  // set when the namespace could not be read
};

// The first global IPv4 address in the network namespace at path (e.g. /proc/PID/ns/net).
NetnsIp netns_ipv4(const std::string& path);

}  // namespace sf
