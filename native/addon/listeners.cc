// Listeners and their channels (which listener is at a vIP:port: listener_table.h). SF_LISTEN,
// pushing accepted sockets down channels (round-robin), plain accepts on the app's real socket,
// channel HUP, SF_QUERY_CHANNEL.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

#include "engine.h"
#include "util.h"

namespace sf {

// One SF_ACCEPTED (+ fd) down one of the listener's channels. A channel that is full (EAGAIN) or
// whose app end is gone (EPIPE, HUP not processed yet) is skipped. false: nobody took it.
bool Engine::push_accepted(Listener* l, int fd, const sf_msg& m, Channel* prefer) {
  bool sent = prefer && !prefer->dead && send_msg(prefer->chan.fd, m, fd) == 0;
  size_t n = l->chans.size();
  for (size_t i = 0; i < n && !sent; i++) {
    Channel* ch = l->chans[l->rr++ % n];
    if (ch == prefer) continue;
    sent = send_msg(ch->chan.fd, m, fd) == 0;
  }
  // A steered application waits on its host socket, not on the channel: wake it there.
  if (sent && l->steer_slot > 0) ring_doorbell(l);
  return sent;
}

void Engine::on_listen(PreloadConn* pc, const sf_msg& req, int* fds, int nfds) {
  Container* c = pc->c;
  auto fail = [&](int32_t status) {
    for (int i = 0; i < nfds; i++) close_fd(fds[i]);
    reply(pc, req.seq, SF_LISTEN_OK, status, -1);
  };
  if (nfds != 1) return fail(EINVAL);
  // Without the guard no host socket may reach the application: it keeps its own listener.
  if (!confined()) return fail(SF_STATUS_FALLBACK);
  uint32_t bound = ntohl(req.vip_a);
  if (bound != 0 && bound != c->ip) return fail(SF_STATUS_FALLBACK);  // not the container's vIP
  int rfd = fds[0];
  if (!sockopt_is(rfd, SO_TYPE, SOCK_STREAM) || !sockopt_is(rfd, SO_ACCEPTCONN, 1) ||
      !sockopt_is(rfd, SO_PROTOCOL, IPPROTO_TCP))
    return fail(EINVAL);
  uint16_t port = ntohs(req.port_a);
  if (port == 0) {  // take it from the socket itself
    sockaddr_storage ss{};
    socklen_t sl = sizeof ss;
    if (getsockname(rfd, reinterpret_cast<sockaddr*>(&ss), &sl) == 0) sockaddr_ip(ss, &port);
    if (port == 0) return fail(EINVAL);
  }
  // A listening port the process could not have bound (it may name any): its own socket only.
  if (!port_allowed(pc, port)) {
    inc(ctr.lport_denied);
    if (ratelimit(13))
      logc(LOG_WARN, c->id,
           "a process of %s without CAP_NET_BIND_SERVICE named listening port %u (below %u): not on SlimFast",
           c->id.c_str(), port, c->port_start);
    return fail(SF_STATUS_FALLBACK);
  }
  if (c->channels.size() >= lim.listeners) {
    at_limit(c, ctr.limit_listeners, "listener channels", lim.listeners);
    return fail(-EMFILE);
  }
  int sp[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) return fail(errno);
  if (!fd_room(sp[0])) {
    close_fd(sp[0]);
    close_fd(sp[1]);
    return fail(-ENFILE);
  }
  struct stat st;
  Channel* ch = nullptr;
  int err = 0;
  if (fstat(sp[1], &st) < 0 || !set_nonblock(sp[0], true) || !set_nonblock(rfd, true))
    err = errno;
  else if (!(ch = new (std::nothrow) Channel))
    err = ENOMEM;
  if (!err) {
    grow_sndbuf(sp[0], 4 << 20);  // room for many queued SF_ACCEPTED before EAGAIN
    ch->chan.fd = sp[0];
    ch->real.fd = rfd;
    if (!ep_add(ch->chan, EPOLLRDHUP) || !ep_add(ch->real, EPOLLIN)) {
      err = errno;
      ep_del(ch->chan);
      delete ch;  // never seen by epoll_wait: safe to free now
    }
  }
  if (err) {
    close_fd(sp[0]);
    close_fd(sp[1]);
    return fail(err);
  }
  uint32_t vip = bound ? bound : c->ip;
  Listener* l = find_listener(vip, port);
  // A steered listener whose socket the application closed is stale even if the broker has not
  // seen its channel's HUP or swept it yet: an application that closes its listener and listens
  // again at once (iperf3 after every test) must get a listener of its own, not that one.
  if (l && l->steer_slot > 0 && !keep_steered(l)) {
    remove_listener(l, true);
    l = nullptr;
  }
  bool added = false;
  if (!l) {
    l = new (std::nothrow) Listener;
    if (!l) {
      ep_del(ch->chan);
      ep_del(ch->real);
      close_fd(sp[0]);
      close_fd(sp[1]);
      ch->chan.fd = ch->real.fd = -1;
      bury(ch);
      return fail(ENOMEM);
    }
    l->vip = vip;
    l->port = port;
    l->c = c;
    listeners.insert(vip, port, l);
    view.found();
    inc(ctr.listeners);
    added = true;
  }
  ch->l = l;
  ch->c = c;
  ch->ino = st.st_ino;
  ch->bound_vip = bound;
  ch->port = port;
  l->chans.push_back(ch);
  c->channels.push_back(ch);
  inc(ctr.listen_ok);
  if (added && sink) sink->listener(true, vip, port, c->id);
  // The first listener of an address may be steered by the kernel (later ones, e.g. SO_REUSEPORT
  // siblings, share its connections through their channels).
  if (added) make_steered(l, int(int64_t(req.a)));
  SF_DLOG("listen %s:%u (%s), %zu channel(s)%s", ip_str(vip).c_str(), port, c->id.c_str(), l->chans.size(),
          l->steer_fd >= 0 ? ", steered" : "");
  // If this reply fails, the app end dies with it and the channel's HUP cleans up.
  reply(pc, req.seq, SF_LISTEN_OK, 0, sp[1], bound, port, 0, 0, l->steer_fd >= 0 ? SF_LISTEN_STEERED : 0);
  close_fd(sp[1]);
}

// Ordinary clients that reached the app's real socket (container interface): same channel.
void Engine::on_real_accept(Channel* ch) {
  for (int i = 0; i < 64 && !ch->dead; i++) {
    int fd = accept_fd(ch->real.fd, SOCK_CLOEXEC, nullptr, nullptr);
    if (fd < 0) {
      if (errno == ECONNABORTED || errno == EPROTO) continue;
      if (errno == EINVAL) {  // no longer listening: stop watching it, keep the channel
        ep_del(ch->real);
      } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EMFILE && ratelimit(4)) {
        logf(LOG_WARN, "accept on %s:%u: %s", ip_str(ch->l->vip).c_str(), ch->port, strerror(errno));
      }
      return;
    }
    sockaddr_storage ls{}, ps{};
    socklen_t ll = sizeof ls, pl = sizeof ps;
    uint16_t lport = 0, pport = 0;
    uint32_t lip = 0, pip = 0;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ls), &ll) == 0) lip = sockaddr_ip(ls, &lport);
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&ps), &pl) == 0) pip = sockaddr_ip(ps, &pport);
    sf_msg m = make_msg(SF_ACCEPTED, 0, 0, lip, lport, pip, pport, 0);
    if (push_accepted(ch->l, fd, m, ch)) {
      inc(ctr.plain_accepts);
      close_fd(fd);
    } else {
      inc(ctr.channel_full);
      reset_close(fd);
    }
  }
}

// Every copy of the channel's app end is closed (or the container goes away).
void Engine::kill_channel(Channel* ch, bool emit) {
  if (ch->dead) return;
  ep_del(ch->chan);
  ep_del(ch->real);
  close_fd(ch->chan.fd);
  close_fd(ch->real.fd);
  close_fd(ch->held_end);
  ch->chan.fd = ch->real.fd = ch->held_end = -1;
  Listener* l = ch->l;
  erase_one(l->chans, ch);
  erase_one(ch->c->channels, ch);
  bury(ch);
  // A steered socket can outlive every channel (exec closed them): the listener stays while the
  // application still has it.
  if (l->chans.empty() && !keep_steered(l)) drop_listener(l, emit);
}

// Every channel of l is gone (or goes now), and so is its steered socket.
void Engine::remove_listener(Listener* l, bool emit) {
  unsteer(l);
  if (l->chans.empty()) drop_listener(l, emit);
  while (!l->dead && !l->chans.empty()) kill_channel(l->chans.back(), emit);
}

void Engine::drop_listener(Listener* l, bool emit) {
  unsteer(l);
  keeper_unsteered(l);
  listeners.erase(l->vip, l->port);
  view.gone();
  dec(ctr.listeners);
  SF_DLOG("listener %s:%u removed", ip_str(l->vip).c_str(), l->port);
  if (emit && sink) sink->listener(false, l->vip, l->port, l->c->id);
  bury(l);
}

void Engine::query_channel(PreloadConn* pc, const sf_msg& req) {
  for (Channel* ch : pc->c->channels) {
    if (ch->ino == req.a) {
      reply(pc, req.seq, SF_CHANNEL_INFO, 0, -1, ch->bound_vip, ch->port, 0, 0, 0);
      return;
    }
  }
  if (steering() && adopt_steered(pc, req)) return;
  reply(pc, req.seq, SF_CHANNEL_INFO, ENOENT, -1, 0, 0, 0, 0, req.a);
}

// The process closed a listener. Its channel's HUP may still wait in the epoll queue behind this
// message: if no process holds the channel any more, act on it now, so that the app's real
// listening socket (the broker holds the last copy) is closed before the app binds again.
void Engine::listen_closed(PreloadConn* pc, const sf_msg& req) {
  for (Channel* ch : pc->c->channels) {
    if (ch->ino != req.a) continue;
    pollfd p{ch->chan.fd, POLLIN, 0};
    if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR))) kill_channel(ch, true);
    break;
  }
  reply(pc, req.seq, SF_LISTEN_CLOSED_OK, 0, -1);
}

std::vector<ListenerRow> Engine::listener_rows() {
  std::lock_guard<std::mutex> lk(mu);
  std::vector<ListenerRow> rows;
  rows.reserve(listeners.size());
  listeners.each([&](Listener* l) {
    rows.push_back(ListenerRow{l->vip, l->port, l->c->id, uint32_t(l->chans.size())});
  });
  std::sort(rows.begin(), rows.end(),
            [](const ListenerRow& a, const ListenerRow& b) { return a.ip != b.ip ? a.ip < b.ip : a.port < b.port; });
  return rows;
}

}  // namespace sf
