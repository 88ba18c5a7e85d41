// The reserved port: batch accept, read exactly the host header, hand the socket to a listener
// channel (CONNECT) or to JS (SYNC). Headers that are not complete at accept time wait in epoll
// (their deadlines and counts are ReservedPort's, reserved_port.h).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

#include "engine.h"
#include "util.h"

namespace sf {

void ReservedPort::wait(HeaderConn* h, int64_t deadline) {
  timers_.push(h, deadline);
  by_peer_[h->peer_ip]++;
}

void ReservedPort::done(HeaderConn* h) {
  timers_.remove(h);
  auto it = by_peer_.find(h->peer_ip);
  if (it != by_peer_.end() && --it->second == 0) by_peer_.erase(it);
}

HeaderConn* ReservedPort::reuse() {
  if (free_.empty()) return nullptr;
  HeaderConn* h = free_.back();
  free_.pop_back();
  return h;
}

bool ReservedPort::keep(HeaderConn* h) {
  if (free_.size() >= 1024) return false;
  free_.push_back(h);
  return true;
}

void ReservedPort::clear() {
  by_peer_.clear();
  for (HeaderConn* h : free_) delete h;
  free_.clear();
}

void HeaderConn::recycle(Engine& e) {
  if (!e.rport.keep(this)) delete this;
}

// SO_REUSEPORT (for steering) would let a second broker bind the port too: make sure nobody
// listens there first, with a probe that does not share.
static Error port_taken(uint32_t ip, uint16_t port) {
  if (port == 0) return Error{};
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error{errno, std::string("socket: ") + strerror(errno)};
  set_int_opt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(ip);
  int r = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), e = errno;
  close_fd(fd);
  if (r == 0) return Error{};
  return Error{e, "cannot bind the reserved port " + ip_str(ip) + ":" + std::to_string(port) + ": " + strerror(e)};
}

// Someone accepts connections on ip:port within timeout_ms. A broker that died leaves its
// applications' steered sockets bound there, in a group whose program drops what it cannot
// steer: nobody answers then, and a new broker may join the group and take it over.
static bool port_answers(uint32_t ip, uint16_t port, int timeout_ms) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(ip);
  bool up = false;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    up = true;
  } else if (errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    int err = 0;
    socklen_t el = sizeof err;
    up = poll(&p, 1, timeout_ms) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0;
  }
  close_fd(fd);
  return up;
}

Error Engine::open_reserved() {
  if (cfg.steer && cfg.fast_open) {
    Error taken = port_taken(cfg.host_ip, cfg.port);
    if (taken && taken.code == EADDRINUSE && !port_answers(cfg.host_ip, cfg.port, 300)) {
      logf(LOG_INFO, "%s:%u is held by steered listeners of a broker that is gone: taking them over",
           ip_str(cfg.host_ip).c_str(), cfg.port);
    } else if (taken) {
      if (taken.code == EADDRINUSE) taken.msg += " (something answers there: another broker?)";
      return taken;
    }
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error{errno, std::string("socket: ") + strerror(errno)};
  set_int_opt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
  // The reuseport group of steered listeners (steered.cc); the BPF program picks every socket
  // explicitly, so nobody else who binds the port with SO_REUSEPORT gets a connection.
  if (cfg.steer && cfg.fast_open) set_int_opt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(cfg.port);
  a.sin_addr.s_addr = htonl(cfg.host_ip);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
    int e = errno;
    close_fd(fd);
    return Error{e, "cannot bind the reserved port " + ip_str(cfg.host_ip) + ":" + std::to_string(cfg.port) + ": " +
                        strerror(e)};
  }
  // Wake up only once the client's first bytes (the header) are there. Pooled connections send
  // nothing until a process takes one, so the kernel holds them that long (then hands them over
  // empty: the header timeout closes them).
  set_int_opt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, std::max(SF_POOL_HOLD_S, cfg.header_timeout_ms / 1000));
  // TCP Fast Open without cookies: a pooled socket's header comes in its SYN, so the connection is
  // ready to accept at once (the handshake is not on the application's critical path).
  if (cfg.fast_open) {
    std::string why = enable_server_tfo();
    if (why.empty() && set_int_opt(fd, IPPROTO_TCP, TCP_FASTOPEN, 4096))
      set_int_opt(fd, IPPROTO_TCP, TCP_FASTOPEN_NO_COOKIE, 1);
    else
      logf(LOG_WARN, "TCP Fast Open is off on the reserved port: %s", why.empty() ? strerror(errno) : why.c_str());
  }
  socklen_t al = sizeof a;
  if (listen(fd, 4096) < 0 || getsockname(fd, reinterpret_cast<sockaddr*>(&a), &al) < 0) {
    int e = errno;
    close_fd(fd);
    return Error{e, std::string("cannot listen on the reserved port: ") + strerror(e)};
  }
  reserved.fd = fd;
  if (!ep_add(reserved, EPOLLIN)) {
    int e = errno;
    close_fd(fd);
    reserved.fd = -1;
    return Error{e, std::string("epoll_ctl: ") + strerror(e)};
  }
  ctr.port.store(ntohs(a.sin_port));
  return Error{};
}

void Engine::on_reserved() {
  for (int i = 0; i < 256; i++) {
    sockaddr_in pa;
    socklen_t pl = sizeof pa;
    // Blocking socket (no SOCK_NONBLOCK): it goes to the application as accept() would give it.
    int fd = accept_fd(reserved.fd, SOCK_CLOEXEC, reinterpret_cast<sockaddr*>(&pa), &pl);
    if (fd < 0) {
      if (errno == ECONNABORTED || errno == EPROTO) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EMFILE && ratelimit(0))
        logf(LOG_WARN, "reserved port accept: %s", strerror(errno));
      return;
    }
    uint32_t peer = pa.sin_family == AF_INET ? ntohl(pa.sin_addr.s_addr) : 0;
    uint64_t t0 = mono_ns();
    HdrState st;
    switch (read_header(fd, st)) {
      case HDR_DONE:
        process_header(fd, peer, st, t0);
        break;
      case HDR_AGAIN:
        park_header(fd, peer, st, t0);
        break;
      case HDR_UNUSED:  // a pooled connection closed unused (its process exited): not an error
        inc(ctr.pool_expired);
        close_fd(fd);
        break;
      default:
        inc(ctr.header_errors);
        SF_DLOG("bad header from %s", ip_str(peer).c_str());
        close_fd(fd);
    }
  }
}

void Engine::process_header(int fd, uint32_t peer_ip, const HdrState& st, uint64_t accepted_ns) {
  sf_hdr h;
  memcpy(&h, st.buf, sizeof h);
  if (clustered()) {
    // Every header, SYNC included, is signed by a member for itself, fresh and new.
    AuthResult a = auth_header(peer_ip, h);
    if (a != AUTH_OK) {
      count_refusal(a, peer_ip);
      reset_close(fd);
      return;
    }
  }
  if (h.type == SF_HDR_SYNC) {
    inc(ctr.sync_streams);
    // Without a cluster key its tag is the peer's host key (header_authority.h).
    if (!clustered() && auth.learn_peer_key(peer_ip, h)) update_steer_keys();
    SF_DLOG("sync stream from %s", ip_str(peer_ip).c_str());
    if (!sink || !sink->sync(fd, peer_ip)) close_fd(fd);  // otherwise JS owns the fd now
    return;
  }
  // A host speaks only for the containers of its own subnet (with a cluster key auth_header()
  // checked that already): a header whose source vIP lies elsewhere is refused, whoever signed it.
  if (!clustered() && auth.header_owner(peer_ip, h) != peer_ip) {
    count_refusal(AUTH_NOT_MEMBER, peer_ip);
    reset_close(fd);
    return;
  }
  uint32_t dst = ntohl(h.dst_vip);
  uint16_t dport = ntohs(h.dst_port);
  uint16_t sport = ntohs(h.src_port);
  // A peer that announced its host key signs every container header: a pooled socket in a
  // container's hands cannot turn into an unsigned CONNECT with another source vIP. A pooled header
  // is signed without the destination fields, which its process fills in.
  const PeerKey* k = auth.peer_key(peer_ip);
  if (!clustered() && (st.pooled || k)) {
    sf_hdr signed_part = h;
    if (st.pooled) pooled_blank(signed_part);
    if (ntohl(h.key_id) != SF_KEY_HOST || !k || !k->ok(signed_part)) {
      inc(ctr.header_errors);
      SF_DLOG("header from %s: bad or unknown MAC", ip_str(peer_ip).c_str());
      reset_close(fd);
      return;
    }
  }
  // Whoever holds a pooled socket writes its source port: never a privileged one (a process that
  // bound one connects through its broker, which signs the port it may use).
  if (st.pooled && sport < SF_POOLED_SPORT_MIN) {
    inc(ctr.header_low_sport);
    SF_DLOG("pooled header from %s with source port %u: refused", ip_str(peer_ip).c_str(), sport);
    reset_close(fd);
    return;
  }
  Listener* l = find_listener(dst, dport);
  if (!l) {
    inc(ctr.refused);
    SF_DLOG("refused %s:%u from %s", ip_str(dst).c_str(), dport, ip_str(peer_ip).c_str());
    reset_close(fd);
    return;
  }
  sf_msg m = make_msg(SF_ACCEPTED, 0, 0, dst, dport, ntohl(h.src_vip), sport, 0);
  if (!confine(fd)) {
    inc(ctr.channel_full);
    reset_close(fd);
    return;
  }
  if (push_accepted(l, fd, m, nullptr)) {
    inc(ctr.handed_in);
    lat.in.observe(mono_ns() - accepted_ns);
    close_fd(fd);
  } else {
    inc(ctr.channel_full);
    reset_close(fd);
  }
}

void Engine::park_header(int fd, uint32_t peer_ip, const HdrState& st, uint64_t accepted_ns) {
  uint32_t mine = rport.waiting(peer_ip);
  if (mine >= cfg.header_peer_max || ctr.pending_headers.load() >= cfg.header_pending_max) {
    inc(ctr.header_overload);
    if (ratelimit(11))
      logf(LOG_WARN, "reserved port: %s has %u connections waiting for their header (%u in all); closing more",
           ip_str(peer_ip).c_str(), mine, unsigned(ctr.pending_headers.load()));
    reset_close(fd);
    return;
  }
  HeaderConn* h = rport.reuse();
  if (h) {
    h->dead = false;
  } else if (!(h = new (std::nothrow) HeaderConn)) {
    inc(ctr.header_errors);
    close_fd(fd);
    return;
  }
  h->ev.fd = fd;
  h->peer_ip = peer_ip;
  h->st = st;
  h->accepted_ns = accepted_ns;
  if (!ep_add(h->ev, EPOLLIN | EPOLLRDHUP)) {
    inc(ctr.header_errors);
    close_fd(fd);
    h->ev.fd = -1;
    bury(h);
    return;
  }
  rport.wait(h, now_ms() + cfg.header_timeout_ms);
  inc(ctr.pending_headers);
}

void Engine::on_header(HeaderConn* h) {
  int r = read_header(h->ev.fd, h->st);
  if (r == HDR_AGAIN) return;
  if (r == HDR_BAD || r == HDR_UNUSED) {
    if (r == HDR_UNUSED) inc(ctr.pool_expired);
    drop_header(h, r == HDR_BAD);
    return;
  }
  int fd = h->ev.fd;
  ep_del(h->ev);
  h->ev.fd = -1;  // ownership moves on: drop_header must not close it
  HdrState st = h->st;
  uint32_t peer = h->peer_ip;
  uint64_t t0 = h->accepted_ns;
  drop_header(h, false);
  process_header(fd, peer, st, t0);
}

void Engine::drop_header(HeaderConn* h, bool count_error) {
  if (h->ev.fd >= 0) {
    ep_del(h->ev);
    close_fd(h->ev.fd);
    h->ev.fd = -1;
  }
  rport.done(h);
  dec(ctr.pending_headers);
  if (count_error) inc(ctr.header_errors);
  bury(h);
}

void Engine::expire_headers(int64_t now) {
  for (HeaderConn* h; (h = rport.first()) && h->deadline <= now;) {
    SF_DLOG("header timeout from %s", ip_str(h->peer_ip).c_str());
    // Nothing at all: a pooled connection nobody took, handed over by the kernel when its hold
    // (TCP_DEFER_ACCEPT) ran out. Not an error; counted apart.
    if (h->st.got == 0) inc(ctr.pool_expired);
    drop_header(h, h->st.got > 0);
  }
}

}  // namespace sf
