// SF_CONNECT: decide between same-host pair, cross-host handoff and fallback; run cross-host
// connects asynchronously on the epoll thread (the preload waits for the reply).
#include <arpa/inet.h>
#include <endian.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <new>

#include "engine.h"
#include "guard_shared.h"
#include "util.h"

namespace sf {

void OutConn::recycle(Engine& e) {
  if (e.free_out.size() < 1024)
    e.free_out.push_back(this);
  else
    delete this;
}

uint16_t Engine::next_src_port() {
  uint16_t p = next_port;
  next_port = p >= 60999 ? 32768 : uint16_t(p + 1);
  return p;
}

DestKind Engine::classify_connect(Container* c, uint32_t dst, uint16_t dport, Route* r, Listener** l) {
  // The policy governs every overlay destination, those that would fall back to the container's
  // interface included (else a denied listener would still be reached that way).
  if (in_prefix(dst, cfg.overlay_net, cfg.overlay_prefix) && policy_denies(c, dst, dport)) return DEST_DENY;
  if (dport == 0 || !confined()) return DEST_FALLBACK;
  if (by_ip.count(dst)) {  // a container on this host
    Listener* x = find_listener(dst, dport);
    if (!x) return DEST_FALLBACK;
    // A steered listener takes its connections from the kernel: connect to our own reserved
    // port as to a peer's (the header in the SYN), and the kernel puts it in its accept queue.
    if (x->steer_slot > 0 && steering() && cfg.fast_open) {
      *r = Route{cfg.local_net, cfg.local_prefix, cfg.host_ip, uint16_t(ctr.port.load())};
      return DEST_STEERED_LOCAL;
    }
    *l = x;
    return DEST_PAIR;
  }
  if (in_prefix(dst, cfg.overlay_net, cfg.overlay_prefix) && !in_prefix(dst, cfg.local_net, cfg.local_prefix)) {
    const Route* p = routes.lpm(dst);
    if (p && routes.view_has(p->peer_ip, dst, dport)) {
      *r = *p;
      return DEST_PEER;
    }
  }
  return DEST_FALLBACK;
}

void Engine::on_connect(PreloadConn* pc, const sf_msg& req) {
  uint32_t dst = ntohl(req.vip_b);
  uint16_t dport = ntohs(req.port_b);
  auto sport = [&] { return req.port_a ? ntohs(req.port_a) : next_src_port(); };
  Route r{};
  Listener* l = nullptr;
  DestKind k = classify_connect(pc->c, dst, dport, &r, &l);
  // The source port the app bound goes into the header this broker signs (or to the listener):
  // below the container's ip_unprivileged_port_start only for a process that could bind it.
  if (k != DEST_DENY && k != DEST_FALLBACK && !port_allowed(pc, ntohs(req.port_a))) {
    inc(ctr.sport_denied);
    if (ratelimit(13))
      logc(LOG_WARN, pc->c->id, "a process of %s without CAP_NET_BIND_SERVICE named source port %u (below %u): EACCES",
           pc->c->id.c_str(), ntohs(req.port_a), pc->c->port_start);
    reply(pc, req.seq, SF_CONNECT_OK, EACCES, -1);
    return;
  }
  // A connect in progress holds a host socket until it completes (up to connectTimeoutMs).
  if ((k == DEST_PEER || k == DEST_STEERED_LOCAL) && pc->c->n_pending >= lim.pending) {
    at_limit(pc->c, ctr.limit_pending, "connects in progress", lim.pending);
    inc(ctr.fallbacks);
    reply(pc, req.seq, SF_CONNECT_OK, -EMFILE, -1);
    return;
  }
  switch (k) {
    case DEST_DENY:
      reply(pc, req.seq, SF_CONNECT_OK, EACCES, -1);
      return;
    case DEST_STEERED_LOCAL:
      // With a pool, like a peer's: the kernel steers pooled connections too, so the broker does
      // nothing for them on either side.
      if (may_pool(pc)) pool_for(pc, r);
      return start_out(pc, req, r, sport(), true);
    case DEST_PAIR:
      // No pool for same-host pairs: without steering the broker would hand every pooled
      // connection in again, which on a shared CPU costs more than the pair it makes (samehost-1
      // went from 0.68x to 0.53x the host's rate that way, before steering).
      return same_host(pc, req, l, sport());
    case DEST_PEER:
      // Stock a pool for this peer first: its channel reaches the preload before the reply.
      if (may_pool(pc)) pool_for(pc, r);
      return start_out(pc, req, r, sport());
    case DEST_FALLBACK:
      break;
  }
  inc(ctr.fallbacks);
  // dport 0 and an unconfined broker are not the destination's doing: not to be remembered.
  bool not_ours = dport != 0 && confined() && view.fd() >= 0;
  reply(pc, req.seq, SF_CONNECT_OK, SF_STATUS_FALLBACK, -1, 0, 0, 0, 0, not_ours ? SF_CONNECT_NOT_OURS : 0);
}

int Engine::open_peer_socket(const Route& r, bool* pending, bool fast_open, bool* deferred) {
  if (deferred) *deferred = false;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  // Source address hostIp; the port is picked at connect() time (4-tuple sharing). The value arms
  // the socket for the confinement guard: its connect below confines it (guard_shared.h). Where
  // the guard's program cannot mark it, the call fails, and the socket is not used.
  if (!set_int_opt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, int(SF_GUARD_ARM))) {
    int e = errno;
    close_fd(fd);
    errno = e;
    return -1;
  }
  // Without a cookie: the peer's reserved port takes SYN data from anyone (TCP_FASTOPEN_NO_COOKIE
  // there too); a peer that does not simply completes the handshake and reads the data after it.
  if (fast_open && !(set_int_opt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1) &&
                     set_int_opt(fd, IPPROTO_TCP, TCP_FASTOPEN_NO_COOKIE, 1)))
    fast_open = false;
  sockaddr_in la{};
  la.sin_family = AF_INET;
  la.sin_addr.s_addr = htonl(cfg.host_ip);
  sockaddr_in pa{};
  pa.sin_family = AF_INET;
  pa.sin_port = htons(r.peer_port);
  pa.sin_addr.s_addr = htonl(r.peer_ip);
  if (bind(fd, reinterpret_cast<sockaddr*>(&la), sizeof la) == 0) {
    int rc = connect(fd, reinterpret_cast<sockaddr*>(&pa), sizeof pa);
    if (fast_open && rc == 0) {  // deferred: the SYN leaves with the first send
      *pending = false;
      if (deferred) *deferred = true;
      return fd;
    }
    if (rc == 0 || errno == EINPROGRESS || errno == EINTR) {
      // A nearby peer often answers within the connect() call (the handshake runs in softirq on
      // this CPU); then there is no need to register with epoll and wait for a wakeup.
      // (POLLOUT without POLLERR/POLLHUP on a connecting socket: established.)
      pollfd p{fd, POLLOUT, 0};
      if (rc != 0 && poll(&p, 1, 0) == 1 && p.revents == POLLOUT) rc = 0;
      *pending = rc != 0;
      return fd;
    }
  }
  int e = errno;
  close_fd(fd);
  errno = e;
  return -1;
}

// Sends the whole header at once (a fresh socket's send buffer is empty); false if it could not.
bool Engine::write_header(int fd, const sf_hdr& h) {
  // TCP_NODELAY only for the header, so it leaves at once; the app gets the default back.
  set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1);
  ssize_t n;
  do {
    n = send(fd, &h, sizeof h, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, 0);
  return n == ssize_t(sizeof h);
}

// An OutConn for fd (from the free list when it has one), on pc's pending list. nullptr: no memory.
OutConn* Engine::new_out(PreloadConn* pc, int fd, Pool* pool) {
  OutConn* o;
  if (!free_out.empty()) {
    o = free_out.back();
    free_out.pop_back();
    o->dead = false;
  } else if (!(o = new (std::nothrow) OutConn)) {
    return nullptr;
  }
  o->ev.fd = fd;
  o->pc = pc;
  o->pool = pool;
  o->in_epoll = false;
  o->seq = 0;
  o->dst = 0;
  o->dport = o->sport = 0;
  o->hdr_sent = false;
  o->local = false;
  o->pprev = nullptr;
  o->pnext = pc->outs;
  if (pc->outs) pc->outs->pprev = o;
  pc->outs = o;
  return o;
}

// A TCP Fast Open connect whose SYN carries the header (so that the peer's kernel can steer it to
// the listener). *pending: the handshake is still running. -1: no Fast Open here (errno).
int Engine::open_fast_connect(const Route& r, const sf_hdr& h, bool* pending) {
  int fd = open_peer_socket(r, pending, true);
  if (fd < 0) return -1;
  int on = 0;
  socklen_t ol = sizeof on;
  if (getsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &on, &ol) != 0 || !on || *pending) {
    close_fd(fd);  // not deferred: an ordinary connect is under way
    errno = EOPNOTSUPP;
    return -1;
  }
  if (send(fd, &h, sizeof h, MSG_DONTWAIT | MSG_NOSIGNAL) != ssize_t(sizeof h)) {
    int e = errno;
    close_fd(fd);
    errno = e;
    return -1;
  }
  pollfd p{fd, POLLOUT, 0};
  *pending = !(poll(&p, 1, 0) == 1 && p.revents == POLLOUT);
  return fd;
}

void Engine::start_out(PreloadConn* pc, const sf_msg& req, const Route& r, uint16_t sport, bool local) {
  uint64_t asked_ns = mono_ns();
  bool pending = false;
  uint32_t dst = ntohl(req.vip_b);
  uint16_t dport = ntohs(req.port_b);
  int fd = cfg.fast_open
               ? open_fast_connect(r, auth.signed_header(SF_HDR_CONNECT, pc->c->ip, dst, dport, sport), &pending)
               : -1;
  bool hdr_sent = fd >= 0;
  if (fd < 0) fd = open_peer_socket(r, &pending);
  if (fd >= 0 && !fd_room(fd)) {  // the broker's descriptors are the control plane's now
    close_fd(fd);
    inc(ctr.fallbacks);
    reply(pc, req.seq, SF_CONNECT_OK, -ENFILE, -1);
    return;
  }
  OutConn* o = fd >= 0 ? new_out(pc, fd, nullptr) : nullptr;
  if (!o) {
    if (ratelimit(3))
      logf(LOG_WARN, "connect to peer %s:%u: %s", ip_str(r.peer_ip).c_str(), r.peer_port, strerror(errno));
    close_fd(fd);
    inc(ctr.connect_failures);
    inc(ctr.fallbacks);
    reply(pc, req.seq, SF_CONNECT_OK, SF_STATUS_FALLBACK, -1);
    return;
  }
  o->seq = req.seq;
  o->dst = dst;
  o->dport = dport;
  o->sport = sport;
  o->hdr_sent = hdr_sent;
  o->local = local;
  o->asked_ns = asked_ns;
  inc(ctr.pending_connects);
  pc->c->n_pending++;
  if (!pending) return finish_out(o);  // connected at once
  if (!(o->in_epoll = ep_add(o->ev, EPOLLOUT))) return fail_out(o);
  out_timers.push(o, now_ms() + cfg.connect_timeout_ms);
}

void Engine::unlink_out(OutConn* o) {
  if (o->in_epoll) ep_del(o->ev);
  o->in_epoll = false;
  out_timers.remove(o);
  if (o->pprev)
    o->pprev->pnext = o->pnext;
  else
    o->pc->outs = o->pnext;
  if (o->pnext) o->pnext->pprev = o->pprev;
  o->pprev = o->pnext = nullptr;
  if (!o->pool) {
    dec(ctr.pending_connects);
    o->pc->c->n_pending--;
  }
  bury(o);
}

void Engine::on_out(OutConn* o) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(o->ev.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
  if (err == 0) return finish_out(o);
  SF_DLOG("connect to %s:%u failed: %s", ip_str(o->dst).c_str(), o->dport, strerror(err));
  fail_out(o);
}

void Engine::finish_out(OutConn* o) {
  unlink_out(o);
  int fd = o->ev.fd;
  o->ev.fd = -1;
  if (o->pool) return pool_connected(o, fd);
  PreloadConn* pc = o->pc;
  if (policy_denies(pc->c, o->dst, o->dport)) {  // a policy set while it connected
    close_fd(fd);
    reply(pc, o->seq, SF_CONNECT_OK, EACCES, -1);
    return;
  }
  if (!o->hdr_sent && !write_header(fd, auth.signed_header(SF_HDR_CONNECT, pc->c->ip, o->dst, o->dport, o->sport))) {
    close_fd(fd);
    inc(ctr.connect_failures);
    inc(ctr.fallbacks);
    reply(pc, o->seq, SF_CONNECT_OK, SF_STATUS_FALLBACK, -1);
    return;
  }
  make_blocking_fresh(fd);
  if (o->local) {
    inc(ctr.same_host);
    if (o->hdr_sent) inc(ctr.same_host_steered);
  } else {
    inc(ctr.handed_out);
    lat.out.observe(mono_ns() - o->asked_ns);  // counted before the reply, like handed_out
  }
  reply(pc, o->seq, SF_CONNECT_OK, 0, fd, pc->c->ip, o->sport, o->dst, o->dport,
        may_pool(pc) && (!o->local || o->hdr_sent) ? SF_CONNECT_POOLABLE : 0);
  close_fd(fd);
}

void Engine::fail_out(OutConn* o) {
  unlink_out(o);
  close_fd(o->ev.fd);
  o->ev.fd = -1;
  if (o->pool) return pool_failed(o->pool);  // stocking: nobody waits
  inc(ctr.connect_failures);
  inc(ctr.fallbacks);
  reply(o->pc, o->seq, SF_CONNECT_OK, SF_STATUS_FALLBACK, -1);
}

// The preload connection went away: drop the request without a reply.
void Engine::kill_out(OutConn* o) {
  unlink_out(o);
  close_fd(o->ev.fd);
  o->ev.fd = -1;
  if (o->pool) pool_stock(o->pool, 0, -1);
}

void Engine::expire_outs(int64_t now) {
  while (out_timers.head && out_timers.head->deadline <= now) {
    SF_DLOG("connect to %s:%u timed out", ip_str(out_timers.head->dst).c_str(), out_timers.head->dport);
    fail_out(out_timers.head);
  }
}

}  // namespace sf
