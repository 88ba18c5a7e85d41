// Same-host connects: the broker makes both ends of a loopback TCP connection in the host
// network namespace, pushes the server end down the listener's channel and returns the client end.
// No header, no reserved port.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "engine.h"
#include "util.h"

namespace sf {

Error Engine::open_loopback() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error{errno, std::string("socket: ") + strerror(errno)};
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || listen(fd, 4096) < 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &al) < 0) {
    int e = errno;
    close_fd(fd);
    return Error{e, std::string("cannot open the loopback listener on 127.0.0.1: ") + strerror(e)};
  }
  // Its accepted children (the same-host server ends) are marked by the kernel.
  if (confined() && !confine(fd)) {
    int e = errno;
    close_fd(fd);
    return Error{e, std::string("cannot mark the loopback listener: ") + strerror(e)};
  }
  loop_port = a.sin_port;
  loopback.fd = fd;
  if (!ep_add(loopback, EPOLLIN)) {  // only strays ever wake us here
    int e = errno;
    close_fd(fd);
    loopback.fd = -1;
    return Error{e, std::string("epoll_ctl: ") + strerror(e)};
  }
  return Error{};
}

// Our own pairs are accepted synchronously in loopback_pair(); anything left is a stray.
void Engine::on_loopback() {
  for (int i = 0; i < 64; i++) {
    int s = accept4(loopback.fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (s < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;
    }
    close_fd(s);
  }
}

// connect() picks the client port (so TIME_WAIT reuse on loopback works, unlike bind(0));
// getsockname() then tells us which accepted connection is ours.
bool Engine::loopback_pair(int* client, int* server, uint16_t* client_port) {
  int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c < 0) return false;
  sockaddr_in la{};
  la.sin_family = AF_INET;
  la.sin_port = uint16_t(loop_port);
  la.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if ((connect(c, reinterpret_cast<sockaddr*>(&la), sizeof la) < 0 && errno != EINPROGRESS && errno != EINTR) ||
      !confine(c)) {
    close_fd(c);
    return false;
  }
  sockaddr_in ca{};
  socklen_t cl = sizeof ca;
  if (getsockname(c, reinterpret_cast<sockaddr*>(&ca), &cl) < 0) {
    close_fd(c);
    return false;
  }
  int s = -1;
  for (int waits = 0, strays = 0; s < 0;) {
    sockaddr_in pa{};
    socklen_t pl = sizeof pa;
    int x = accept4(loopback.fd, reinterpret_cast<sockaddr*>(&pa), &pl, SOCK_CLOEXEC);
    if (x >= 0) {
      if (pa.sin_port == ca.sin_port && pa.sin_addr.s_addr == ca.sin_addr.s_addr) {
        s = x;
      } else {
        close_fd(x);  // a stray: someone else connected to our loopback listener
        if (++strays > 1024) break;
      }
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if ((errno != EAGAIN && errno != EWOULDBLOCK) || ++waits > 100) break;
    // The handshake normally completes inside connect() on loopback; if not, wait (bounded).
    pollfd p{loopback.fd, POLLIN, 0};
    poll(&p, 1, 2);
  }
  if (s < 0) {
    close_fd(c);
    return false;
  }
  make_blocking_fresh(c);
  *client = c;
  *server = s;
  *client_port = ntohs(ca.sin_port);
  return true;
}

void Engine::same_host(PreloadConn* pc, const sf_msg& req, Listener* l, uint16_t sport) {
  uint32_t src = pc->c->ip, dst = l->vip;
  uint16_t dport = l->port;
  int cfd, sfd;
  uint16_t lport;
  if (!loopback_pair(&cfd, &sfd, &lport)) {
    if (ratelimit(2)) logf(LOG_WARN, "cannot make a loopback pair: %s", strerror(errno));
    inc(ctr.fallbacks);
    reply(pc, req.seq, SF_CONNECT_OK, SF_STATUS_FALLBACK, -1);
    return;
  }
  sf_msg m = make_msg(SF_ACCEPTED, 0, 0, dst, dport, src, sport, 0);
  if (!push_accepted(l, sfd, m, nullptr)) {
    close_fd(sfd);
    close_fd(cfd);
    inc(ctr.channel_full);
    inc(ctr.fallbacks);
    reply(pc, req.seq, SF_CONNECT_OK, SF_STATUS_FALLBACK, -1);
    return;
  }
  close_fd(sfd);
  inc(ctr.same_host);
  SF_DLOG("same-host %s:%u -> %s:%u (loopback port %u)", ip_str(src).c_str(), sport, ip_str(dst).c_str(), dport, lport);
  reply(pc, req.seq, SF_CONNECT_OK, 0, cfd, src, sport, dst, dport);
  close_fd(cfd);
}

}  // namespace sf
