// connect() of a program without the preload: the destination read from the caller's memory, the
// same decision as for the preload (the host's classify_connect()), a host connection made by the
// broker (header first, as for the preload) and, once it is connected, put on the caller's fd
// number (SECCOMP_ADDFD_FLAG_SETFD) with the caller's flags and options. Held meanwhile (ScOut).
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>

#include "seccomp_agent.h"
#include "seccomp_proc.h"
#include "util.h"

namespace sf {

// connect(): a destination SlimFast serves (classify_connect(), as for the preload's SF_CONNECT)
// gets a host connection made by the broker; the caller's fd number gets it once it is connected.
void SeccompAgent::sc_connect_call(ScTarget* t, const void* raw) {
  const seccomp_notif* n = static_cast<const seccomp_notif*>(raw);
  const uint64_t id = n->id;
  auto cont = [&] { sc_respond(t, id, 0, true); };
  int tfd = int(n->data.args[0]);
  uint64_t addr = n->data.args[1];
  uint64_t alen = n->data.args[2];
  Container* c = sc_container(t);
  if (!c || tfd < 0 || alen < sizeof(sockaddr_in) || alen > 128 || !addr) return cont();
  int pid = int(n->pid);

  // The destination, from the target's memory: /proc/PID/mem opened, then ID_VALID (the pid still
  // names the caller), then read.
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/mem", pid);
  int mfd = open(path, O_RDONLY | O_CLOEXEC);
  if (mfd < 0) return cont();
  sockaddr_in sa{};
  bool valid = id_valid(t->ev.fd, id);
  ssize_t got = valid ? pread(mfd, &sa, sizeof sa, off_t(addr)) : -1;
  close_fd(mfd);
  if (!valid) return;  // the caller is gone: nothing to answer
  if (got != ssize_t(sizeof sa) || sa.sin_family != AF_INET) return cont();
  uint32_t dst = ntohl(sa.sin_addr.s_addr);
  uint16_t dport = ntohs(sa.sin_port);

  Route r{};
  Listener* l = nullptr;
  DestKind k = host.classify_connect(c, dst, dport, &r, &l);
  if (k == DEST_DENY) {
    sc_respond(t, id, EACCES, false);
    return;
  }
  if (k != DEST_PEER && k != DEST_STEERED_LOCAL) return cont();  // same-host pairs: the container's interface

  // The target's socket itself (a copy of its file): IPv4 TCP, not connected, its flags.
  int tg = tgid_of(pid);
  int copy = copy_process_fd(tg, tfd);
  if (copy < 0) return cont();
  if (!id_valid(t->ev.fd, id)) {  // pid reuse between the checks: the caller is gone
    close_fd(copy);
    return;
  }
  int dom = 0, type = 0, proto = 0;
  socklen_t ol = sizeof dom;
  bool tcp4 = getsockopt(copy, SOL_SOCKET, SO_DOMAIN, &dom, &ol) == 0 && dom == AF_INET;
  ol = sizeof type;
  tcp4 = tcp4 && getsockopt(copy, SOL_SOCKET, SO_TYPE, &type, &ol) == 0 && type == SOCK_STREAM;
  ol = sizeof proto;
  tcp4 = tcp4 && getsockopt(copy, SOL_SOCKET, SO_PROTOCOL, &proto, &ol) == 0 && proto == IPPROTO_TCP;
  sockaddr_in peer{};
  socklen_t pl = sizeof peer;
  bool connected = getpeername(copy, reinterpret_cast<sockaddr*>(&peer), &pl) == 0;
  sockaddr_in self{};
  socklen_t sl = sizeof self;
  uint16_t bound_port = getsockname(copy, reinterpret_cast<sockaddr*>(&self), &sl) == 0 ? ntohs(self.sin_port) : 0;
  if (!tcp4 || connected) {
    close_fd(copy);
    return cont();
  }
  // Held notifications keep descriptors here (the caller's socket, the host socket): at the
  // container's limit its connects take the kernel's path (the policy allowed them above).
  if (t->outs.size() + t->accepts.size() >= cfg.pending_max) {
    host.at_pending_limit(c);
    close_fd(copy);
    return cont();
  }

  ScOut* o = new (std::nothrow) ScOut;
  if (!o) {
    close_fd(copy);
    return cont();
  }
  o->t = t;
  o->id = id;
  o->target_fd = tfd;
  o->copy_fd = copy;
  o->cloexec = target_cloexec(pid, tfd);
  o->tgid = tg;
  o->dst = dst;
  o->dport = dport;
  o->sport = bound_port ? bound_port : host.next_src_port();
  o->local = k == DEST_STEERED_LOCAL;
  o->slot = sc_cur_slot;  // answered later: its in-flight slot goes with it
  sc_cur_slot = -1;
  t->outs.push_back(o);
  inc(ctr.seccomp_pending);

  bool pending = false;
  int fd = host.open_connect(c, r, dst, dport, o->sport, &pending, &o->hdr_sent);
  if (fd < 0) return sc_fail(o);
  o->ev.fd = fd;
  if (!pending) return sc_finish(o);
  if (!(o->in_epoll = ep_add(o->ev, EPOLLOUT))) return sc_fail(o);
  o->deadline = now_ms() + cfg.connect_timeout_ms;
}

void SeccompAgent::on_sc_out(ScOut* o) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(o->ev.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
  if (err == 0) return sc_finish(o);
  SF_DLOG("seccomp: connect to %s:%u failed: %s", ip_str(o->dst).c_str(), o->dport, strerror(err));
  inc(ctr.connect_failures);
  sc_fail(o);
}

// Unlinks o from its target and frees it after this batch; closes its descriptors.
void SeccompAgent::sc_drop_out(ScOut* o) {
  if (o->dead) return;
  if (o->in_epoll) ep_del(o->ev);
  o->in_epoll = false;
  close_fd(o->ev.fd);
  o->ev.fd = -1;
  close_fd(o->copy_fd);
  o->copy_fd = -1;
  erase_one(o->t->outs, o);
  sc_release_slot(o->slot);
  o->slot = -1;
  dec(ctr.seccomp_pending);
  bury(o);
}

void SeccompAgent::sc_fail(ScOut* o) {
  ScTarget* t = o->t;
  uint64_t id = o->id;
  sc_drop_out(o);
  sc_respond(t, id, 0, true);
}

void SeccompAgent::sc_finish(ScOut* o) {
  ScTarget* t = o->t;
  Container* c = sc_container(t);
  if (!c) return sc_fail(o);                      // unregistered meanwhile
  if (host.policy_denies(c, o->dst, o->dport)) {  // a policy set while it connected
    uint64_t id = o->id;
    sc_drop_out(o);
    sc_respond(t, id, EACCES, false);
    return;
  }
  int fd = o->ev.fd;
  if (o->in_epoll) ep_del(o->ev);
  o->in_epoll = false;
  if (!o->hdr_sent && !host.write_connect_header(fd, c, o->dst, o->dport, o->sport)) {
    inc(ctr.connect_failures);
    return sc_fail(o);
  }
  // The application's flags and the options that matter before a connect.
  int fl = fcntl(o->copy_fd, F_GETFL);
  make_blocking_fresh(fd);
  if (fl >= 0 && (fl & O_NONBLOCK)) set_nonblock(fd, true);
  static const int kOpts[][2] = {{IPPROTO_TCP, TCP_NODELAY}, {SOL_SOCKET, SO_KEEPALIVE}};
  for (const auto& lo : kOpts) {
    int level = lo[0], opt = lo[1];
    int v = 0;
    socklen_t vl = sizeof v;
    if (getsockopt(o->copy_fd, level, opt, &v, &vl) == 0 && v) set_int_opt(fd, level, opt, v);
  }
  if (notif_addfd(t->ev.fd, o->id, SECCOMP_ADDFD_FLAG_SETFD, fd, o->target_fd, o->cloexec) < 0) {
    if (errno == ENOENT) return sc_drop_out(o);  // the caller is gone
    if (ratelimit(11)) logf(LOG_WARN, "seccomp: installing the socket in %s: %s", t->id.c_str(), strerror(errno));
    return sc_fail(o);
  }
  uint64_t id = o->id;
  bool local = o->local, hdr_sent = o->hdr_sent;
  struct stat st;
  ScTarget::Swapped sw{fstat(fd, &st) == 0 ? uint64_t(st.st_ino) : 0, c->ip, o->dst, o->sport, o->dport};
  uint64_t key = (uint64_t(uint32_t(o->tgid)) << 32) | uint32_t(o->target_fd);
  sc_drop_out(o);  // closes our copy; the target holds the socket now
  if (!sc_respond(t, id, 0, false)) return;
  if (sw.ino) {
    if (t->swapped.size() >= 8192) {  // forget sockets the processes closed (or processes gone)
      for (auto it = t->swapped.begin(); it != t->swapped.end();) {
        char p[64];
        snprintf(p, sizeof p, "/proc/%u/fd/%u", unsigned(it->first >> 32), unsigned(it->first & 0xffffffffu));
        struct stat x;
        if (stat(p, &x) != 0 || uint64_t(x.st_ino) != it->second.ino)
          it = t->swapped.erase(it);
        else
          ++it;
      }
    }
    t->swapped[key] = sw;
  }
  inc(ctr.seccomp_handed);
  if (local) {
    inc(ctr.same_host);
    if (hdr_sent) inc(ctr.same_host_steered);
  } else {
    inc(ctr.handed_out);
  }
}

}  // namespace sf
