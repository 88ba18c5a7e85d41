#include "util.h"

#include <cstddef>

#include "siphash.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

namespace sf {

int64_t now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

uint64_t realtime_ns() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

void header_tag(sf_hdr& h, const uint8_t key[16]) { sf_siphash(&h, offsetof(sf_hdr, tag), key, h.tag, 16); }

bool header_tag_ok(const sf_hdr& h, const uint8_t key[16]) {
  uint8_t t[16];
  sf_siphash(&h, offsetof(sf_hdr, tag), key, t, 16);
  uint8_t diff = 0;  // constant time: a forger learns nothing from how long the check took
  for (int i = 0; i < 16; i++) diff |= uint8_t(t[i] ^ h.tag[i]);
  return diff == 0;
}

uint64_t mono_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

void close_fd(int fd) {
  if (fd >= 0) close(fd);
}

void reset_close(int fd) {
  if (fd < 0) return;
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close(fd);
}

bool set_nonblock(int fd, bool on) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) return false;
  int nfl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
  return nfl == fl || fcntl(fd, F_SETFL, nfl) == 0;
}

void make_blocking_fresh(int fd) { fcntl(fd, F_SETFL, 0); }

bool set_int_opt(int fd, int level, int opt, int val) { return setsockopt(fd, level, opt, &val, sizeof val) == 0; }

void grow_sndbuf(int fd, int bytes) {
  if (!set_int_opt(fd, SOL_SOCKET, SO_SNDBUFFORCE, bytes)) set_int_opt(fd, SOL_SOCKET, SO_SNDBUF, bytes);
}

void attach_fd(msghdr& mh, FdCmsg& c, int fd) { sf_fdpass_attach(&mh, c.buf, &fd, 1); }

int send_msg(int sock, const sf_msg& m, int fd) { return send_buf(sock, &m, sizeof m, fd); }

std::string proc_status_field(int pid, const char* field) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  char buf[4096];
  buf[0] = '\n';  // so that the first line's field is found like any other
  ssize_t n = read(fd, buf + 1, sizeof buf - 2);
  close(fd);
  if (n <= 0) return "";
  buf[n + 1] = 0;
  std::string key = std::string("\n") + field + ":";
  const char* p = strstr(buf, key.c_str());
  if (!p) return "";
  p += key.size();
  while (*p == ' ' || *p == '\t') p++;
  const char* e = strchr(p, '\n');
  return std::string(p, e ? size_t(e - p) : strlen(p));
}

int copy_process_fd(int tgid, int fd) {
  if (tgid <= 0 || fd < 0) {
    errno = EINVAL;
    return -1;
  }
  int pfd = int(syscall(SYS_pidfd_open, tgid, 0));
  if (pfd < 0) return -1;
  int copy = int(syscall(SYS_pidfd_getfd, pfd, fd, 0));
  int e = errno;
  close(pfd);
  errno = e;
  return copy;
}

int send_buf(int sock, const void* buf, size_t len, int fd) { return send_fds(sock, buf, len, &fd, fd >= 0 ? 1 : 0); }

int send_fds(int sock, const void* buf, size_t len, const int* fds, int nfds) {
  if (nfds < 0 || nfds > kMaxSendFds) return EINVAL;
  iovec iov{const_cast<void*>(buf), len};
  for (;;) {
    ssize_t n = sf_fdpass_send(sock, &iov, 1, fds, nfds, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n == ssize_t(len)) return 0;
    if (n < 0 && errno == EINTR) continue;
    return n < 0 ? errno : EMSGSIZE;
  }
}

uint32_t sockaddr_ip(const sockaddr_storage& ss, uint16_t* port) {
  if (ss.ss_family == AF_INET) {
    auto* s = reinterpret_cast<const sockaddr_in*>(&ss);
    if (port) *port = ntohs(s->sin_port);
    return ntohl(s->sin_addr.s_addr);
  }
  if (ss.ss_family == AF_INET6) {
    auto* s = reinterpret_cast<const sockaddr_in6*>(&ss);
    if (port) *port = ntohs(s->sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&s->sin6_addr)) {
      uint32_t v;
      memcpy(&v, &s->sin6_addr.s6_addr[12], 4);
      return ntohl(v);
    }
    return 0;
  }
  if (port) *port = 0;
  return 0;
}

std::string ip_str(uint32_t ip) {
  char buf[16];
  snprintf(buf, sizeof buf, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255);
  return buf;
}

bool parse_ip(const std::string& s, uint32_t* out) {
  in_addr a;
  if (inet_pton(AF_INET, s.c_str(), &a) != 1) return false;
  *out = ntohl(a.s_addr);
  return true;
}

bool parse_cidr(const std::string& s, uint32_t* net, uint8_t* prefix) {
  size_t slash = s.find('/');
  if (slash == std::string::npos || slash + 1 >= s.size() || s.size() - slash > 3) return false;
  uint32_t ip;
  if (!parse_ip(s.substr(0, slash), &ip)) return false;
  int p = 0;
  for (size_t i = slash + 1; i < s.size(); i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    p = p * 10 + (s[i] - '0');
  }
  if (p > 32) return false;
  *prefix = uint8_t(p);
  *net = ip & prefix_mask(uint8_t(p));
  return true;
}

bool sockopt_is(int fd, int opt, int want) {
  int v = 0;
  socklen_t len = sizeof v;
  return getsockopt(fd, SOL_SOCKET, opt, &v, &len) == 0 && v == want;
}

ssize_t recv_fds(int sock, void* buf, size_t len, int* fds, int max, int* nfds, int* msg_flags) {
  return sf_fdpass_recv(sock, buf, len, MSG_DONTWAIT | MSG_CMSG_CLOEXEC, fds, max, nfds, msg_flags, close);
}

}  // namespace sf
