// The seccomp agent's view of a calling process (seccomp_proc.h).
#include "seccomp_proc.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "util.h"

namespace sf {

int tgid_of(int tid) {
  std::string v = proc_status_field(tid, "Tgid");
  return v.empty() ? -1 : atoi(v.c_str());
}

bool target_cloexec(int pid, int fd) {
  char path[80];
  snprintf(path, sizeof path, "/proc/%d/fdinfo/%d", pid, fd);
  FILE* f = fopen(path, "re");
  if (!f) return false;
  char line[128];
  unsigned long flags = 0;
  bool found = false;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "flags: %lo", &flags) == 1) {
      found = true;
      break;
    }
  }
  fclose(f);
  return found && (flags & O_CLOEXEC);
}

bool has_preload(int pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/maps", pid);
  FILE* f = fopen(path, "re");
  if (!f) return false;
  char line[4096];
  bool found = false;
  while (!found && fgets(line, sizeof line, f)) {
    const char* p = strstr(line, "/libslimfast");
    found = p && strstr(p, ".so");
  }
  fclose(f);
  return found;
}

socklen_t program_sockaddr(bool v6, uint32_t ip, uint16_t port, sockaddr_storage* out) {
  memset(out, 0, sizeof *out);
  if (!v6) {
    auto* s = reinterpret_cast<sockaddr_in*>(out);
    s->sin_family = AF_INET;
    s->sin_addr.s_addr = htonl(ip);
    s->sin_port = htons(port);
    return sizeof(sockaddr_in);
  }
  auto* s = reinterpret_cast<sockaddr_in6*>(out);
  s->sin6_family = AF_INET6;
  s->sin6_port = htons(port);
  if (ip) {
    s->sin6_addr.s6_addr[10] = 0xff;
    s->sin6_addr.s6_addr[11] = 0xff;
    uint32_t n = htonl(ip);
    memcpy(&s->sin6_addr.s6_addr[12], &n, 4);
  }
  return sizeof(sockaddr_in6);
}

bool id_valid(int nfd, uint64_t id) {
  uint64_t v = id;
  return ioctl(nfd, SECCOMP_IOCTL_NOTIF_ID_VALID, &v) == 0;
}

int notif_addfd(int nfd, uint64_t id, uint32_t flags, int src, int newfd, bool cloexec) {
  seccomp_notif_addfd add{};
  add.id = id;
  add.flags = flags;
  add.srcfd = uint32_t(src);
  add.newfd = uint32_t(newfd);
  add.newfd_flags = cloexec ? O_CLOEXEC : 0;
  int rc;
  do {
    rc = ioctl(nfd, SECCOMP_IOCTL_NOTIF_ADDFD, &add);
  } while (rc < 0 && errno == EINTR);
  return rc;
}

}  // namespace sf
