// The first global IPv4 address in a network namespace, for registration: read by a short-lived
// thread that enters the namespace (setns affects only the calling thread), instead of two process
// spawns (nsenter + ip). "Global" as `ip addr` means it: not loopback (127/8, scope host) and not
// link-local (169.254/16, scope link).
#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <thread>

#include "netns_ip.h"

namespace sf {

NetnsIp netns_ipv4(const std::string& path) {
  NetnsIp out;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    out.error = std::string("cannot open ") + path + ": " + strerror(errno);
    return out;
  }
  std::thread t([&] {
    if (setns(fd, CLONE_NEWNET) != 0) {
      out.error = std::string("cannot enter network namespace ") + path + ": " + strerror(errno);
      return;
    }
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) {
      out.error = std::string("cannot list the addresses in ") + path + ": " + strerror(errno);
      return;
    }
    for (ifaddrs* a = list; a; a = a->ifa_next) {
      if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET || (a->ifa_flags & IFF_LOOPBACK)) continue;
      uint32_t ip = ntohl(reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr.s_addr);
      if ((ip >> 24) == 127 || (ip >> 16) == 0xa9fe) continue;
      char text[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, text, sizeof text);
      out.ip = text;
      break;
    }
    freeifaddrs(list);
  });
  t.join();
  close(fd);
  return out;
}

}  // namespace sf
