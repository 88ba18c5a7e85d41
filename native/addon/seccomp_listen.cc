// listen() of a program without the preload while kernel steering is on: what the preload's
// SF_LISTEN + SF_STEER_SOCKET do, done by the broker. The host makes the listener (its channel's
// real socket is the program's, for plain clients); the agent puts the steered host socket on the
// caller's fd number and records it, for accept() (seccomp_accept.cc), getsockname() and the keeper.
#include <fcntl.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "seccomp_agent.h"
#include "seccomp_proc.h"
#include "util.h"

namespace sf {

// listen() of an IPv4 TCP socket bound to the container's vIP (or any address) while kernel
// steering is on: what the preload's SF_LISTEN + SF_STEER_SOCKET do, done by the broker. The
// application's socket listens (the broker's copy of it serves plain clients over the container
// interface, through the listener's channel, whose app end the broker holds), and a steered host
// socket takes its fd number. Everything else: CONTINUE.
void SeccompAgent::sc_listen_call(ScTarget* t, const void* raw) {
  const seccomp_notif* n = static_cast<const seccomp_notif*>(raw);
  const uint64_t id = n->id;
  auto cont = [&] { sc_respond(t, id, 0, true); };
  Container* c = sc_container(t);
  int tfd = int(n->data.args[0]);
  int backlog = int(n->data.args[1]);
  if (!host.steering() || !c || tfd < 0) return cont();
  int pid = int(n->pid);
  int tg = tgid_of(pid);
  // A dynamically linked program with the preload: its own listen() path (the preload's real
  // listen() lands here too).
  if (tg <= 0 || has_preload(tg)) return cont();
  int copy = copy_process_fd(tg, tfd);
  if (copy < 0) return cont();
  if (!id_valid(t->ev.fd, id)) {
    close_fd(copy);
    return;
  }
  auto opt = [&](int level, int name) {
    int v = -1;
    socklen_t ol = sizeof v;
    return getsockopt(copy, level, name, &v, &ol) == 0 ? v : -1;
  };
  // IPv4, or IPv6 dual-stack (IPV6_V6ONLY off) bound to :: or ::ffff:a.b.c.d, as Go's
  // net.Listen("tcp", ":port") makes it.
  sockaddr_storage self{}, peer{};
  socklen_t sl = sizeof self, pl = sizeof peer;
  int dom = opt(SOL_SOCKET, SO_DOMAIN);
  bool v6 = dom == AF_INET6;
  bool ok = (dom == AF_INET || (v6 && opt(IPPROTO_IPV6, IPV6_V6ONLY) == 0)) &&
            opt(SOL_SOCKET, SO_TYPE) == SOCK_STREAM && opt(SOL_SOCKET, SO_PROTOCOL) == IPPROTO_TCP &&
            opt(SOL_SOCKET, SO_ACCEPTCONN) == 0 && getpeername(copy, reinterpret_cast<sockaddr*>(&peer), &pl) != 0 &&
            getsockname(copy, reinterpret_cast<sockaddr*>(&self), &sl) == 0 && self.ss_family == dom;
  if (ok && v6) {
    const in6_addr& a6 = reinterpret_cast<const sockaddr_in6*>(&self)->sin6_addr;
    ok = IN6_IS_ADDR_UNSPECIFIED(&a6) || IN6_IS_ADDR_V4MAPPED(&a6);  // a real IPv6 address: not ours
  }
  uint16_t port = 0;
  uint32_t bound = sockaddr_ip(self, &port);
  // Loopback, another address, or not bound yet (listen() picks a port): the kernel's listen.
  if (!ok || port == 0 || (bound != 0 && bound != c->ip)) {
    close_fd(copy);
    return cont();
  }
  Listener* l = host.find_listener(c->ip, port);
  if (l && l->steer_slot > 0 && !host.keep_steered(l)) {
    host.remove_listener(l, true);
    l = nullptr;
  }
  if (l) {  // another process serves that address on SlimFast already
    close_fd(copy);
    return cont();
  }
  int app_fl = fcntl(copy, F_GETFL);
  bool cloexec = target_cloexec(pid, tfd);
  if (listen(copy, backlog) < 0) {
    int e = errno;
    close_fd(copy);
    sc_respond(t, id, e, false);
    return;
  }
  // From here on the listener owns copy (as its channel's real socket); the kernel's listen has
  // run on it already, so CONTINUE on failure only repeats it.
  Channel* ch = host.add_steered_listener(c, port, copy, bound, backlog);
  if (!ch) return cont();
  l = ch->l;
  auto fail = [&] {
    host.remove_listener(l, false);
    cont();
  };
  if (app_fl >= 0 && (app_fl & O_NONBLOCK)) set_nonblock(l->steer_fd, true);
  if (notif_addfd(t->ev.fd, id, SECCOMP_ADDFD_FLAG_SETFD, l->steer_fd, tfd, cloexec) < 0) {
    if (errno == ENOENT) {  // the caller is gone
      host.remove_listener(l, false);
      return;
    }
    if (ratelimit(11))
      logf(LOG_WARN, "seccomp: installing the steered listener in %s: %s", t->id.c_str(), strerror(errno));
    return fail();
  }
  uint64_t ino = l->steer_ino;
  // The target holds the steered socket now; its close empties the slot and the sweep removes
  // the listener (with its channel, the broker's copy of the app's socket and the held app end).
  inc(ctr.seccomp_listeners);
  host.steered_listener_placed(l);
  SF_DLOG("seccomp: listen %s:%u (%s): steered", ip_str(l->vip).c_str(), l->port, c->id.c_str());
  if (!sc_respond(t, id, 0, false)) return;
  if (t->kidx) keeper_steered(t, l, tg, tfd, ch->real.fd, v6);
  t->steered[ino] = ScTarget::SteeredFd{l->vip, l->port, v6};
  ScTarget::Swapped sw{ino, bound, 0, port, 0, true, v6};
  t->swapped[(uint64_t(uint32_t(tg)) << 32) | uint32_t(tfd)] = sw;
}

}  // namespace sf
