// Connection pools: host connections to a peer's reserved port, established ahead of demand and
// pushed down a per-process pool channel, so that the application's connect() needs no round trip
// to the broker and no TCP handshake. The broker makes and signs the header (SF_HDR_POOLED: the
// container's source vIP); the process that takes a socket fills in the destination and sends it.
// Each take is reported on the channel (SF_POOL_TOOK) and the pool is stocked back up to its
// target, which doubles whenever the process found it empty. What the pools share (the count per
// peer, the parked pools) and the arithmetic of a pool's stock are PoolStock's (pool_stock.h).
#include <linux/sockios.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

#include "engine.h"
#include "util.h"

namespace sf {

Pool* Engine::pool_for(PreloadConn* pc, const Route& r) {
  for (Pool* p : pc->pools)
    if (p->route.net == r.net && p->route.prefix == r.prefix && p->route.peer_ip == r.peer_ip &&
        p->route.peer_port == r.peer_port)
      return p;
  // Without a pool the process's connects still work, each with a round trip to the broker.
  if (pc->c->n_pools >= lim.pools) {
    at_limit(pc->c, ctr.limit_pools, "pools", lim.pools);
    return nullptr;
  }
  int sp[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp) < 0) return nullptr;
  if (!fd_room(sp[0])) {
    close_fd(sp[0]);
    close_fd(sp[1]);
    return nullptr;
  }
  Pool* p = new (std::nothrow) Pool;
  if (!p) {
    close_fd(sp[0]);
    close_fd(sp[1]);
    return nullptr;
  }
  p->pc = pc;
  p->route = r;
  p->target = cfg.pool_depth;
  p->ev.fd = sp[0];
  grow_sndbuf(sp[0], 1 << 20);  // room for pool_max sockets: a push never meets EAGAIN
  grow_sndbuf(sp[1], 1 << 20);  // and for the process's reports while this thread is busy
  // The app end goes to the preload on its broker connection, ahead of the CONNECT_OK it needs.
  sf_msg m = make_msg(SF_POOL_CHANNEL, 0, 0, r.net, 0, r.peer_ip, r.peer_port, r.prefix);
  bool sent = !pc->dead && send_msg(pc->ev.fd, m, sp[1]) == 0;
  if (!sent || !ep_add(p->ev, EPOLLIN | EPOLLRDHUP)) {
    close_fd(sp[0]);
    close_fd(sp[1]);
    delete p;
    return nullptr;
  }
  p->app_fd = sp[1];
  pc->pools.push_back(p);
  pc->c->n_pools++;
  inc(ctr.pools);
  fill_pool(p);
  return p;
}

// Every change of a pool's stock goes through here, so that the per-peer total stays right.
void Engine::pool_stock(Pool* p, int dq, int dc) {
  p->queued = uint32_t(int64_t(p->queued) + dq);
  p->connecting = uint32_t(int64_t(p->connecting) + dc);
  ctr.pooled.fetch_add(uint64_t(int64_t(dq) + dc), std::memory_order_relaxed);  // wraps back for negatives
  pools.add(p->route.peer_ip, int64_t(dq) + dc);
}

void Engine::pool_failed(Pool* p) {
  pool_stock(p, 0, -1);
  pool_backoff(p);
}

// The peer is not taking connections now (or we are out of resources): no stocking connects for a
// while (PoolStock::next_backoff); a success resets it.
void Engine::pool_backoff(Pool* p) {
  inc(ctr.pool_failures);
  p->backoff_ms = PoolStock::next_backoff(p->backoff_ms);
  p->retry_at = now_ms() + p->backoff_ms;
}

// Pooled sockets ready for the channel: one sendmmsg for all of them (a refill after a report of
// n takes is n sockets, and one wakeup of the process's side instead of n).
struct PoolBatch {
  static constexpr int kMax = 32;
  int n = 0;
  int fds[kMax];
  sf_pooled msgs[kMax];
  FdCmsg cm[kMax];
  iovec iov[kMax];
  mmsghdr mh[kMax];
};

// Sends what b holds down p's channel; every fd in b is closed (ours were duplicates in flight).
// A dead pool's channel is closed: the send fails and the sockets are reset.
void Engine::flush_pool_batch(Pool* p, PoolBatch& b) {
  if (b.n == 0) return;
  for (int i = 0; i < b.n; i++) {
    b.iov[i] = {&b.msgs[i], sizeof(sf_pooled)};
    msghdr& mh = b.mh[i].msg_hdr;
    mh = msghdr{};
    mh.msg_iov = &b.iov[i];
    mh.msg_iovlen = 1;
    attach_fd(mh, b.cm[i], b.fds[i]);
  }
  int sent = 0, err = 0;
  while (sent < b.n) {
    int r = sendmmsg(p->ev.fd, b.mh + sent, unsigned(b.n - sent), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      err = r < 0 ? errno : EAGAIN;
      break;
    }
    sent += r;
  }
  for (int i = 0; i < b.n; i++) {
    if (i < sent)
      close_fd(b.fds[i]);
    else
      reset_close(b.fds[i]);
  }
  pool_stock(p, sent, 0);
  ctr.pool_stocked.fetch_add(uint64_t(sent), std::memory_order_relaxed);
  b.n = 0;
  if (!err) return;
  if (err == EAGAIN || err == EWOULDBLOCK) {
    // The process is not taking them: stock no more than it holds until it reports a take.
    p->target = std::max<uint32_t>(1, p->queued);
  } else {
    kill_pool(p);  // its process closed the channel (exited); the EOF has not been read yet
  }
}

// The message that goes with a pooled socket: the signed header (source vIP, no destination yet),
// the virtual source port, when it was made, and flags for the taker.
sf_pooled Engine::pooled_msg(Pool* p, bool deferred) {
  // The MAC (made with the destination fields zero) keeps the source vIP ours.
  sf_pooled msg;
  msg.h = auth.signed_header(SF_HDR_POOLED, p->pc->c->ip, 0, 0, 0);
  msg.m = make_msg(SF_POOLED, 0, (deferred ? SF_POOLED_DEFERRED : 0) | (p->blocking ? 0 : SF_POOLED_NONBLOCK), 0,
                   next_src_port(), 0, 0, uint64_t(mono_ns()));
  msg.m.seq = std::max<uint32_t>(1, p->target / 4);  // takes the process may report together
  return msg;
}

// Starts connects until queued + connecting reaches the target. TCP Fast Open sockets are ready at
// once (nothing is sent before the take) and go down the channel in batches.
void Engine::fill_pool(Pool* p) {
  if (p->retry_at && now_ms() < p->retry_at) return;
  // Bounded: each round either adds one to queued/connecting or ends (failure, dead pool), but a
  // bound keeps one call short whatever happens.
  // The peer holds every idle pooled connection of every process here: cap them all, per peer.
  PoolBatch b;  // (its sockets count against the cap before they are sent)
  auto room = [&] { return pools.at_peer(p->route.peer_ip) + uint32_t(b.n) < cfg.pool_peer_max; };
  for (uint32_t rounds = 0;
       rounds < cfg.pool_max && !p->dead && p->queued + p->connecting + uint32_t(b.n) < p->target && room(); rounds++) {
    bool pending = false, deferred = false;
    int fd = open_peer_socket(p->route, &pending, cfg.fast_open, &deferred);
    if (fd >= 0 && !pending) {
      p->backoff_ms = 0;
      p->retry_at = 0;
      if (p->blocking) make_blocking_fresh(fd);  // else left as made: what most applications ask for
      b.fds[b.n] = fd;
      b.msgs[b.n] = pooled_msg(p, deferred);
      if (++b.n == PoolBatch::kMax) flush_pool_batch(p, b);
      continue;
    }
    OutConn* o = fd >= 0 ? new_out(p->pc, fd, p) : nullptr;
    if (!o) {
      close_fd(fd);
      flush_pool_batch(p, b);
      return pool_backoff(p);
    }
    pool_stock(p, 0, 1);
    if (!(o->in_epoll = ep_add(o->ev, EPOLLOUT))) {
      fail_out(o);
      break;
    }
    out_timers.push(o, now_ms() + cfg.connect_timeout_ms);
  }
  flush_pool_batch(p, b);
}

// A stocking connect that had to wait completed (o is unlinked already; fd is ours). Nothing goes
// on the wire now: the peer's kernel holds the connection (TCP_DEFER_ACCEPT) until the process
// that takes it fills in the destination and sends the header.
void Engine::pool_connected(OutConn* o, int fd) {
  Pool* p = o->pool;
  pool_stock(p, 0, -1);
  p->backoff_ms = 0;
  p->retry_at = 0;
  if (p->blocking) make_blocking_fresh(fd);
  PoolBatch b;  // a batch of one: the same send, counting and failure handling
  b.fds[0] = fd;
  b.msgs[0] = pooled_msg(p, false);
  b.n = 1;
  flush_pool_batch(p, b);
}

// Reads and counts up to max queued reports; true once the channel is closed (EOF or error).
bool Engine::read_reports(Pool* p, int max, bool* refill) {
  for (int i = 0; i < max; i++) {
    sf_msg m;
    ssize_t n = recv(p->ev.fd, &m, sizeof m, MSG_DONTWAIT);
    // ECONNRESET: the process exited with pooled sockets it never read. The kernel says so once,
    // ahead of the reports still queued here: read on.
    if (n < 0 && (errno == EINTR || errno == ECONNRESET)) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
    if (n <= 0) return true;  // EOF or error: the process closed it (exited)
    *refill |= take_report(p, m, n);
  }
  return false;
}

void Engine::on_pool(Pool* p) {
  bool refill = false;
  if (read_reports(p, 64, &refill)) return kill_pool(p);
  uint32_t queued = p->queued;
  sync_pool(p);
  refill |= p->queued < queued;
  if (!refill) return;
  fill_pool(p);
  if (!p->dead) park_pool(p);
}

// After a refill the pool's reports wait a moment (kPoolParkNs, pool_stock.h).
void Engine::park_pool(Pool* p) {
  if (p->parked || !ep_mod(p->ev, EPOLLRDHUP)) return;  // still told when the process closes it
  p->parked = true;
  pools.park(p, int64_t(mono_ns()));
}

void Engine::unpark_pools(int64_t now_ns) {
  pools.unpark_due(now_ns, [this](Pool* p) {
    p->parked = false;
    ep_mod(p->ev, EPOLLIN | EPOLLRDHUP);  // level-triggered: reports that came meanwhile fire at once
  });
}

// The channel's depth says how many the process took since we last looked, reported or not.
void Engine::sync_pool(Pool* p) {
  if (p->dead || p->ev.fd < 0) return;
  uint32_t msg_size = pools.msg_size();
  int q = 0;
  if (!msg_size || ioctl(p->ev.fd, SIOCOUTQ, &q) != 0 || q < 0) return;
  uint32_t left = uint32_t(q) / msg_size;
  if (left >= p->queued) return;
  uint32_t took = p->queued - left;
  pool_stock(p, -int(took), 0);
  p->presumed += took;
  count_taken(p, took);
}

// used pooled sockets became connections (counted where every handoff is).
void Engine::count_taken(Pool* p, uint64_t used) {
  ctr.pool_taken.fetch_add(used, std::memory_order_relaxed);
  if (p->route.peer_ip == cfg.host_ip) {  // a pool to our own reserved port: same-host connections
    ctr.same_host.fetch_add(used, std::memory_order_relaxed);
    ctr.same_host_steered.fetch_add(used, std::memory_order_relaxed);
  } else {
    ctr.handed_out.fetch_add(used, std::memory_order_relaxed);
  }
}

// One SF_POOL_TOOK report: counts the takes and sizes the pool; false for a malformed message.
bool Engine::take_report(Pool* p, const sf_msg& m, ssize_t n) {
  if (n != ssize_t(sizeof m) || m.version != SF_MSG_VERSION || m.type != SF_POOL_TOOK) {
    inc(ctr.bad_msgs);
    return false;
  }
  // a: sockets used (low 32 bits) and discarded as stale or dead (high 32 bits); takes the
  // channel's depth showed already were counted (PoolStock::report).
  PoolStock::Took t = PoolStock::report(m.a & 0xffffffffu, m.a >> 32, &p->presumed, p->queued);
  pool_stock(p, -int(t.dequeued), 0);
  count_taken(p, t.connections);
  p->target =
      PoolStock::target_after(p->target, t.dequeued > 0, (m.status & SF_TOOK_EMPTY) != 0, cfg.pool_depth, cfg.pool_max);
  p->blocking = (m.status & SF_TOOK_BLOCKING) != 0;
  return true;
}

void Engine::read_pool_reports() {
  std::lock_guard<std::mutex> lk(mu);
  std::vector<Pool*> all;
  for (auto& kv : by_id)
    for (PreloadConn* pc : kv.second->conns)
      for (Pool* p : pc->pools) all.push_back(p);
  for (Pool* p : all) {
    on_pool(p);    // may kill p (EOF): the loop holds its own copy
    sync_pool(p);  // takes not reported yet (the process reports in batches)
  }
}

// What is still queued for the process is taken out and reset, then our copy of its end closed:
// the process finds the channel empty and closed (a take the process made a moment before is its
// own, as it would be had the pool been dropped a moment later).
uint32_t Engine::drain_app_end(Pool* p) {
  uint32_t left = 0;
  if (p->app_fd < 0) return 0;
  for (int i = 0; i < int(cfg.pool_max) + 64; i++) {
    sf_pooled m;
    int fds[1];
    int nfds = 0;
    ssize_t n = recv_fds(p->app_fd, &m, sizeof m, fds, 1, &nfds, nullptr);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (int k = 0; k < nfds; k++) reset_close(fds[k]);
    if (nfds > 0) left++;
  }
  close_fd(p->app_fd);
  p->app_fd = -1;
  return left;
}

void Engine::kill_pool(Pool* p) {
  if (p->dead) return;
  // A process that exited may have left take reports unread (a refill push can see EPIPE first):
  // count them, or handed_out would miss its last connections.
  bool refill = false;
  read_reports(p, 1024, &refill);
  // Reports come in batches: what left the channel and was never reported was taken (a process
  // that exits flushes its reports; one killed cannot).
  uint32_t left = drain_app_end(p);
  if (p->queued > left) count_taken(p, p->queued - left);
  p->presumed = 0;
  PreloadConn* pc = p->pc;
  for (OutConn *o = pc->outs, *next; o; o = next) {
    next = o->pnext;
    if (o->pool == p) kill_out(o);
  }
  pool_stock(p, -int(p->queued), 0);  // its connecting ones went with kill_out above
  if (p->parked) {
    pools.unpark(p);
    p->parked = false;
  }
  ep_del(p->ev);
  close_fd(p->ev.fd);
  p->ev.fd = -1;
  auto it = std::find(pc->pools.begin(), pc->pools.end(), p);
  if (it != pc->pools.end()) pc->pools.erase(it);
  pc->c->n_pools--;
  dec(ctr.pools);
  bury(p);
}

}  // namespace sf
