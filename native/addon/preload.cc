// Preload connections: accept on a container's broker socket, read sf_msg requests (batch per
// wakeup), dispatch, reply. The container a connection belongs to is the socket it came in on.
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

#include "engine.h"
#include "util.h"

namespace sf {

void Engine::on_container_accept(Container* c) {
  for (int i = 0; i < 64; i++) {
    int fd = accept_fd(c->ev.fd, SOCK_NONBLOCK | SOCK_CLOEXEC, nullptr, nullptr);
    if (fd < 0) {
      if (errno == ECONNABORTED || errno == EPROTO) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EMFILE && ratelimit(5))
        logc(LOG_WARN, c->id, "accept on the broker socket of %s: %s", c->id.c_str(), strerror(errno));
      return;
    }
    // Only the container's own processes: see peer_outside (limits.cc).
    if (const char* why = peer_outside(c, fd)) {
      inc(ctr.peer_outside);
      if (ratelimit(15)) {
        ucred cr{};
        socklen_t cl = sizeof cr;
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl);
        logc(LOG_WARN, c->id, "refused a broker connection to container %s from pid %d (uid %u): %s", c->id.c_str(),
             int(cr.pid), unsigned(cr.uid), why);
      }
      refuse_preload(fd, EACCES);
      continue;
    }
    // One container may not hold the broker's descriptors: past its limit (or the broker's
    // budget) the process is told so and falls back to the container's own network.
    if (c->conns.size() >= lim.conns) {
      at_limit(c, ctr.limit_conns, "broker connections", lim.conns);
      refuse_preload(fd, EMFILE);
      continue;
    }
    if (!fd_room(fd)) {
      refuse_preload(fd, ENFILE);
      continue;
    }
    PreloadConn* pc = new (std::nothrow) PreloadConn;
    if (!pc) {
      close_fd(fd);
      return;
    }
    pc->c = c;
    pc->ev.fd = fd;
    pc->low_ports = peer_low_ports(c, fd);
    grow_sndbuf(fd, 1 << 20);  // replies must never hit EAGAIN while the preload is just slow
    if (!ep_add(pc->ev, EPOLLIN | EPOLLRDHUP)) {
      close_fd(fd);
      delete pc;
      continue;
    }
    c->conns.push_back(pc);
    inc(ctr.preload_conns);
  }
}

void Engine::on_preload(PreloadConn* pc) {
  constexpr int kMaxFds = 8;
  for (int i = 0; i < 64 && !pc->dead; i++) {
    sf_msg m;
    int fds[kMaxFds];
    int nfds = 0, mflags = 0;
    ssize_t n = recv_fds(pc->ev.fd, &m, sizeof m, fds, kMaxFds, &nfds, &mflags);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) kill_preload(pc);
      return;
    }
    if (n == 0 && nfds == 0) {  // EOF
      kill_preload(pc);
      return;
    }
    if (n != ssize_t(sizeof m) || (mflags & (MSG_TRUNC | MSG_CTRUNC)) || m.version != SF_MSG_VERSION) {
      for (int k = 0; k < nfds; k++) close_fd(fds[k]);
      inc(ctr.bad_msgs);
      if (ratelimit(6))
        logf(LOG_WARN, "malformed message from a preload of %s (%zd bytes, version %u): closing it", pc->c->id.c_str(),
             n, n >= 4 ? unsigned(m.version) : 0u);
      kill_preload(pc);
      return;
    }
    handle_msg(pc, m, fds, nfds);
  }
}

void Engine::handle_msg(PreloadConn* pc, const sf_msg& m, int* fds, int nfds) {
  if (m.type != SF_LISTEN && m.type != SF_STEER_AGAIN) {  // only these carry descriptors
    for (int k = 0; k < nfds; k++) close_fd(fds[k]);
  }
  Container* c = pc->c;
  switch (m.type) {
    case SF_HELLO:
      reply(pc, m.seq, SF_HELLO_OK, 0, view.fd(), c->ip, 0, cfg.overlay_net,
            SF_FEAT_LISTEN_CLOSED | (steering() ? SF_FEAT_STEER_AGAIN : 0) | (view.fd() >= 0 ? SF_FEAT_VIEW : 0),
            cfg.overlay_prefix);
      break;
    case SF_CONNECT:
      on_connect(pc, m);
      break;
    case SF_LISTEN:
      on_listen(pc, m, fds, nfds);
      break;
    case SF_STEER_AGAIN:
      steer_again(pc, m, fds, nfds);
      break;
    case SF_QUERY_CHANNEL:
      query_channel(pc, m);
      break;
    case SF_LISTEN_CLOSED:
      listen_closed(pc, m);
      break;
    case SF_STEER_SOCKET:
      if (steering())
        on_steer_socket(pc, m);
      else
        reply(pc, m.seq, SF_STEER_OK, ENOENT, -1);
      break;
    default:  // unknown request: ignore it (a newer preload may try optional things)
      inc(ctr.bad_msgs);
      break;
  }
}

bool Engine::reply(PreloadConn* pc, uint32_t seq, uint16_t type, int32_t status, int fd, uint32_t vip_a,
                   uint16_t port_a, uint32_t vip_b, uint16_t port_b, uint64_t a) {
  if (pc->dead) return false;
  sf_msg m = make_msg(type, seq, status, vip_a, port_a, vip_b, port_b, a);
  int e = send_msg(pc->ev.fd, m, fd);
  if (e == 0) return true;
  // A preload that does not read its replies (EAGAIN) is broken; EPIPE: it is gone.
  if (e != EPIPE && e != ECONNRESET && ratelimit(7))
    logc(LOG_WARN, pc->c->id, "reply to a preload of %s failed (%s): closing it", pc->c->id.c_str(), strerror(e));
  kill_preload(pc);
  return false;
}

void Engine::kill_preload(PreloadConn* pc) {
  if (pc->dead) return;
  while (pc->outs) kill_out(pc->outs);
  while (!pc->pools.empty()) kill_pool(pc->pools.back());
  ep_del(pc->ev);
  close_fd(pc->ev.fd);
  pc->ev.fd = -1;
  erase_one(pc->c->conns, pc);
  dec(ctr.preload_conns);
  bury(pc);
}

}  // namespace sf
