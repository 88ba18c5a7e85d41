// Steered listeners: the kernel, not the broker, hands incoming connections to applications.
//
// The reserved-port listener and one host listening socket per SlimFast listener (bound to the
// same host IP and port, SO_REUSEPORT) form a reuseport group running native/bpf/steer.bpf.c.
// A connection whose TCP Fast Open SYN carries a header signed by the source subnet's host and
// naming a registered listener goes straight into that listener's accept queue; the application's
// preload reads the header after accept(). Everything else reaches slot 0, the broker, as before:
// it still goes down the listener's channel, and a doorbell connection (a signed SF_HDR_DOORBELL
// header, steered like any other) wakes the application to take it from there.
//
// The broker does not keep the steered socket once the preload has it: the application's close()
// closes it, the kernel empties its slot, and the broker notices (channel HUP, periodic sweep).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

#include "engine.h"
#include "steer_shared.h"
#include "util.h"

namespace sf {

void Engine::open_guard() {
  std::vector<int> old = cfg.guard ? keeper_guard() : std::vector<int>{};
  guard.reset(cfg.guard ? new (std::nothrow) Guard : nullptr);
  unconfined_why = !cfg.guard ? "turned off (guard: false)" : guard ? guard->open(std::move(old)) : "out of memory";
  if (!guard)
    for (int fd : old) close_fd(fd);
  if (unconfined_why.empty()) return keeper_hold_guard();
  guard.reset();
  logf(LOG_ERROR,
       "confinement guard: %s. No host socket will be handed to a container: every connection takes the "
       "container's own network (run slimfast doctor)",
       unconfined_why.c_str());
}

void Engine::open_steering() {
  steer.reset();
  if (!cfg.steer || !cfg.fast_open) return;
  // Steered listeners are host sockets in applications' hands: only with the guard.
  if (!confined()) return;
  steer.reset(new (std::nothrow) Steering);
  if (!steer) return;
  // With a cluster key the program checks senders, nonces and replays as the broker does; if it
  // cannot, nothing is steered (the broker checks everything itself).
  std::string why = steer->open(clustered());
  if (why.empty() && clustered()) why = steer->set_auth(uint64_t(cfg.header_window_ms) * 1000000ull, SF_HDR_FUTURE_NS);
  if (why.empty()) why = steer->attach(reserved.fd);
  if (!why.empty()) {
    logf(LOG_WARN, "kernel steering is off, the broker hands every connection over: %s", why.c_str());
    steer.reset();
    return;
  }
  update_steer_keys();
}

void Engine::update_steer_keys() {
  if (!steering()) return;
  steer->set_key(htonl(cfg.local_net), cfg.local_prefix, auth.host_key(), nullptr, htonl(cfg.host_ip));
  routes.each([&](const Route& r) {
    if (r.peer_ip == cfg.host_ip) {
      steer->drop_key(htonl(r.net), r.prefix);
    } else if (clustered()) {  // every member's key is known from the start
      uint8_t key[16];
      auth.member_key(r.peer_ip, key);
      steer->set_key(htonl(r.net), r.prefix, key, nullptr, htonl(r.peer_ip));
    } else if (const PeerKey* k = auth.peer_key(r.peer_ip)) {
      steer->set_key(htonl(r.net), r.prefix, k->cur.data(), k->has_prev ? k->prev.data() : nullptr, htonl(r.peer_ip));
    } else {
      steer->drop_key(htonl(r.net), r.prefix);
    }
  });
}

void Engine::make_steered(Listener* l, int backlog) {
  if (!steering()) return;
  backlog = std::max(16, std::min(backlog, 65535));
  int fd = steer_listen_socket(cfg.host_ip, uint16_t(ctr.port.load()), backlog, false);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0 || !confine(fd)) {
    if (ratelimit(5))
      logf(LOG_WARN, "steered listener for %s:%u: %s", ip_str(l->vip).c_str(), l->port, strerror(errno));
    close_fd(fd);
    return;
  }
  l->steer_fd = fd;
  l->steer_ino = st.st_ino;
}

// The preload takes the steered socket of the listener whose channel it was given.
void Engine::on_steer_socket(PreloadConn* pc, const sf_msg& req) {
  for (Channel* ch : pc->c->channels) {
    if (ch->ino != req.a) continue;
    Listener* l = ch->l;
    if (l->steer_fd < 0) break;
    int slot = steer->add(htonl(l->vip), htons(l->port), l->steer_fd);
    if (slot < 0) {
      int e = errno;
      if (ratelimit(5)) logf(LOG_WARN, "cannot steer %s:%u: %s", ip_str(l->vip).c_str(), l->port, strerror(e));
      unsteer(l);
      reply(pc, req.seq, SF_STEER_OK, e ? e : EIO, -1);
      return;
    }
    l->steer_slot = slot;
    // If this reply is lost the socket closes with it, and the sweep drops the empty slot.
    reply(pc, req.seq, SF_STEER_OK, 0, l->steer_fd);
    close_fd(l->steer_fd);
    l->steer_fd = -1;
    inc(ctr.steered_listeners);
    return;
  }
  reply(pc, req.seq, SF_STEER_OK, ENOENT, -1);
}

// A new channel for l (and container c): the broker end registered in epoll, and real_fd (or -1),
// a listening socket for plain clients, with it. Returns the channel and the app end in *app_end,
// or null (real_fd is then the caller's still).
Channel* Engine::open_channel(Listener* l, Container* c, int real_fd, int* app_end) {
  if (c->channels.size() >= lim.listeners) {
    at_limit(c, ctr.limit_listeners, "listener channels", lim.listeners);
    errno = EMFILE;
    return nullptr;
  }
  int sp[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) return nullptr;
  if (!fd_room(sp[0])) {
    close_fd(sp[0]);
    close_fd(sp[1]);
    errno = ENFILE;
    return nullptr;
  }
  struct stat st;
  Channel* ch = fstat(sp[1], &st) == 0 && set_nonblock(sp[0], true) && (real_fd < 0 || set_nonblock(real_fd, true))
                    ? new (std::nothrow) Channel
                    : nullptr;
  if (ch) {
    ch->chan.fd = sp[0];
    ch->real.fd = real_fd;
    if (!ep_add(ch->chan, EPOLLRDHUP) || (real_fd >= 0 && !ep_add(ch->real, EPOLLIN))) {
      ep_del(ch->chan);
      delete ch;  // never seen by epoll_wait
      ch = nullptr;
    }
  }
  if (!ch) {
    close_fd(sp[0]);
    close_fd(sp[1]);
    return nullptr;
  }
  grow_sndbuf(sp[0], 4 << 20);
  ch->l = l;
  ch->c = c;
  ch->ino = st.st_ino;
  ch->bound_vip = 0;
  ch->port = l->port;
  l->chans.push_back(ch);
  c->channels.push_back(ch);
  *app_end = sp[1];
  return ch;
}

// After exec: an inherited steered socket. The new image gets a fresh channel for it.
bool Engine::adopt_steered(PreloadConn* pc, const sf_msg& req) {
  Listener* l = nullptr;
  listeners.each([&](Listener* x) {
    if (x->c == pc->c && x->steer_slot > 0 && x->steer_ino == req.a) l = x;
  });
  if (!l || !steer->slot_open(l->steer_slot)) return false;
  int app_end;
  if (!open_channel(l, pc->c, -1, &app_end)) return false;
  reply(pc, req.seq, SF_CHANNEL_INFO, 0, app_end, l->vip, l->port, 0, 0, SF_LISTEN_STEERED);
  close_fd(app_end);
  return true;
}

static bool is_steered_socket(int fd, uint32_t host_ip, uint16_t port) {
  if (!sockopt_is(fd, SO_ACCEPTCONN, 1) || !sockopt_is(fd, SO_TYPE, SOCK_STREAM) ||
      !sockopt_is(fd, SO_PROTOCOL, IPPROTO_TCP) || !sockopt_is(fd, SO_REUSEPORT, 1))
    return false;
  sockaddr_storage ss{};
  socklen_t sl = sizeof ss;
  uint16_t p = 0;
  return getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl) == 0 && ss.ss_family == AF_INET &&
         sockaddr_ip(ss, &p) == host_ip && p == port;
}

// A steered listener a process kept while no broker ran (this one took the state over from one
// that died): the socket is still in the reserved port's reuseport group, which now runs this
// broker's program. It gets a slot again and a new channel (with `real`, when given, as the plain
// clients' socket; it is the listener's then). nullptr and *err on failure; steered_fd is the
// caller's either way (the application holds its own copy).
Listener* Engine::take_over_steered(Container* c, uint32_t vip, uint16_t port, int steered_fd, int real, int* app_end,
                                    int* err) {
  *app_end = -1;
  auto fail = [&](int e) -> Listener* {
    close_fd(real);
    *err = e;
    return nullptr;
  };
  if (!steering()) return fail(EOPNOTSUPP);
  // Only a socket this host's brokers made: bound to the reserved port, in its group.
  if (!is_steered_socket(steered_fd, cfg.host_ip, uint16_t(ctr.port.load()))) return fail(EINVAL);
  if (Listener* old = find_listener(vip, port)) {
    if (old->steer_slot > 0 && !keep_steered(old))
      remove_listener(old, true);
    else
      return fail(EADDRINUSE);
  }
  struct stat st;
  errno = 0;
  if (fstat(steered_fd, &st) < 0 || !confine(steered_fd)) return fail(errno ? errno : EPERM);
  int slot = steer->add(htonl(vip), htons(port), steered_fd);
  if (slot < 0) return fail(errno ? errno : ENOSPC);
  Listener* l = new (std::nothrow) Listener;
  if (!l) {
    steer->remove(htonl(vip), htons(port), slot);
    return fail(ENOMEM);
  }
  l->vip = vip;
  l->port = port;
  l->c = c;
  l->steer_slot = slot;
  l->steer_ino = st.st_ino;
  Channel* ch = open_channel(l, c, real, app_end);
  if (!ch && real >= 0) {  // without the plain clients' socket, then
    close_fd(real);
    real = -1;
    ch = open_channel(l, c, -1, app_end);
  }
  if (!ch) {
    steer->remove(htonl(vip), htons(port), slot);
    delete l;
    *err = ENOMEM;
    return nullptr;
  }
  listeners.insert(vip, port, l);
  view.found();
  inc(ctr.listeners);
  inc(ctr.listen_ok);
  inc(ctr.steered_listeners);
  inc(ctr.steered_again);
  if (sink) sink->listener(true, vip, port, c->id);
  SF_DLOG("steered listener %s:%u (%s) taken over%s", ip_str(vip).c_str(), port, c->id.c_str(),
          real >= 0 ? ", with a socket for plain clients" : "");
  return l;
}

// SF_STEER_AGAIN: the preload's steered listener after a broker restart.
void Engine::steer_again(PreloadConn* pc, const sf_msg& req, int* fds, int nfds) {
  Container* c = pc->c;
  auto fail = [&](int32_t status) {
    for (int i = 0; i < nfds; i++) close_fd(fds[i]);
    reply(pc, req.seq, SF_LISTEN_OK, status, -1);
  };
  if (nfds < 1 || nfds > 2) return fail(EINVAL);
  uint32_t vip = ntohl(req.vip_a);
  uint16_t port = ntohs(req.port_a);
  if (vip == 0) vip = c->ip;
  if (vip != c->ip || port == 0) return fail(EINVAL);
  if (!port_allowed(pc, port)) {  // as for SF_LISTEN: the process then listens afresh, on its own
    inc(ctr.lport_denied);
    return fail(EACCES);
  }
  int app_end = -1, err = 0;
  Listener* l = take_over_steered(c, vip, port, fds[0], nfds == 2 ? fds[1] : -1, &app_end, &err);
  close_fd(fds[0]);  // the application holds it; the group and the slot keep referring to it
  if (!l) {
    reply(pc, req.seq, SF_LISTEN_OK, err, -1);
    return;
  }
  reply(pc, req.seq, SF_LISTEN_OK, 0, app_end, vip, port, 0, 0, SF_LISTEN_STEERED);
  close_fd(app_end);
}

void Engine::unsteer(Listener* l) {
  if (l->steer_slot > 0) view.gone();  // same-host pooled connections to it went by the kernel
  if (l->steer_slot > 0 && steering()) steer->remove(htonl(l->vip), htons(l->port), l->steer_slot);
  l->steer_slot = -1;
  close_fd(l->steer_fd);
  l->steer_fd = -1;
}

bool Engine::keep_steered(Listener* l) { return l->steer_slot > 0 && steering() && steer->slot_open(l->steer_slot); }

// A connection waits on l's channel: a Fast Open connection to our own reserved port whose header
// names l wakes the application's accept() (the kernel steers it like any other).
void Engine::ring_doorbell(Listener* l) {
  Route self{cfg.local_net, cfg.local_prefix, cfg.host_ip, uint16_t(ctr.port.load())};
  bool pending = false;
  int fd = open_peer_socket(self, &pending, true);
  if (fd < 0) {
    if (ratelimit(6)) logf(LOG_WARN, "doorbell for %s:%u: %s", ip_str(l->vip).c_str(), l->port, strerror(errno));
    return;
  }
  sf_hdr h = auth.signed_header(SF_HDR_DOORBELL, l->vip, l->vip, l->port, 0);
  if (send(fd, &h, sizeof h, MSG_DONTWAIT | MSG_NOSIGNAL) != ssize_t(sizeof h)) {
    close_fd(fd);
    return;
  }
  inc(ctr.doorbells);
  // Closing before the handshake is done would reset it: keep it until then (usually at once).
  pollfd p{fd, POLLOUT, 0};
  if (poll(&p, 1, 0) == 1) {
    close_fd(fd);
    return;
  }
  bells.push_back(Bell{fd, now_ms() + 3000});
}

void Engine::tend_steering(int64_t now) {
  for (size_t i = 0; i < bells.size();) {
    pollfd p{bells[i].fd, POLLOUT, 0};
    if (poll(&p, 1, 0) == 1 || now >= bells[i].deadline) {
      close_fd(bells[i].fd);
      bells[i] = bells.back();
      bells.pop_back();
    } else {
      i++;
    }
  }
  if (now < next_sweep || !steering()) return;
  next_sweep = now + 1000;
  if (clustered()) {
    if (!steer->refresh_clock() && ratelimit(8)) logf(LOG_WARN, "steering clock offset: %s", strerror(errno));
    watch_seen_rate(now);
  }
  // A steered socket closed behind the broker's back (its process died, it was shut down, or the
  // channel-less listener left after exec was closed): its connections go to slot 0 now.
  std::vector<Listener*> gone =
      listeners.select([this](Listener* l) { return l->steer_slot > 0 && !steer->slot_open(l->steer_slot); });
  for (Listener* l : gone) remove_listener(l, true);
}

// The kernel's replay cache evicts its least recently inserted entries when full: a header evicted
// while still inside the window could be replayed once on the steered path. Say so when the last
// window's inserts exceed its size.
void Engine::watch_seen_rate(int64_t now) {
  uint64_t in_window = auth.kernel_seen_in_window(now, steer->stats().steered);
  if (in_window > SF_STEER_MAX_SEEN && ratelimit(9))
    logf(LOG_WARN,
         "%llu headers in the last %d ms exceed the kernel's replay cache (%d): the oldest may be "
         "replayable on the steered path until they leave the window",
         (unsigned long long)in_window, cfg.header_window_ms, SF_STEER_MAX_SEEN);
}

}  // namespace sf
