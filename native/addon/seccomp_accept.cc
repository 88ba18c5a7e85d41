// accept()/accept4() on a steered listener the agent put in place (seccomp_listen.cc): the
// connection, installed in the caller as the call's result (SECCOMP_ADDFD_FLAG_SEND), with the
// virtual peer written to its sockaddr; a blocking listener with nothing queued holds the call
// (ScAccept) until a connection comes or the caller is interrupted.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>

#include "seccomp_agent.h"
#include "seccomp_proc.h"
#include "util.h"

namespace sf {

namespace {

constexpr int kHeaderWaitMs = 100;  // a steered connection's header not in its SYN: wait this long

// The header a steered connection starts with (in its SYN, unless the Fast Open queue was full;
// then it follows the handshake: a short, bounded wait on the engine thread).
bool read_steered_hdr(int fd, sf_hdr* h) {
  size_t got = 0;
  int64_t deadline = now_ms() + kHeaderWaitMs;
  while (got < sizeof *h) {
    ssize_t n = recv(fd, reinterpret_cast<char*>(h) + got, sizeof *h - got, MSG_DONTWAIT);
    if (n > 0) {
      got += size_t(n);
      continue;
    }
    if (n == 0 || (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)) return false;
    int64_t left = deadline - now_ms();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    poll(&p, 1, int(left));
  }
  return ntohl(h->magic) == SF_HDR_MAGIC && h->version == SF_HDR_VERSION;
}

// One SF_ACCEPTED (and its socket) from a listener channel's app end; -1: none.
int take_accepted(int end, sf_msg* m) {
  for (int i = 0; i < 8; i++) {
    int fds[2], nfds = 0;
    ssize_t n = recv_fds(end, m, sizeof *m, fds, 2, &nfds, nullptr);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    for (int k = 1; k < nfds; k++) close_fd(fds[k]);
    int fd = nfds > 0 ? fds[0] : -1;
    if (n == ssize_t(sizeof *m) && m->type == SF_ACCEPTED && fd >= 0) return fd;
    close_fd(fd);
  }
  return -1;
}

}  // namespace

// accept()/accept4() on a steered listener the agent put in place: a connection the kernel
// steered in (its header names the virtual peer) or, for a doorbell, the plain client waiting on
// the listener's channel. Nothing there: EAGAIN for a non-blocking listener; a blocking one
// waits (held notification). Every other fd: CONTINUE.
void SeccompAgent::sc_accept_call(ScTarget* t, const void* raw) {
  const seccomp_notif* n = static_cast<const seccomp_notif*>(raw);
  const uint64_t id = n->id;
  auto cont = [&] { sc_respond(t, id, 0, true); };
  if (t->steered.empty()) return cont();
  int tfd = int(n->data.args[0]);
  uint64_t addr = n->data.args[1], lenp = n->data.args[2];
  int flags = n->data.nr == __NR_accept4 ? int(n->data.args[3]) : 0;
  int pid = int(n->pid);
  int tg = tgid_of(pid);
  int copy = copy_process_fd(tg, tfd);
  if (copy < 0) return cont();
  if (!id_valid(t->ev.fd, id)) {
    close_fd(copy);
    return;
  }
  struct stat st;
  auto it = fstat(copy, &st) == 0 ? t->steered.find(uint64_t(st.st_ino)) : t->steered.end();
  if (it == t->steered.end()) {
    close_fd(copy);
    return cont();
  }
  Listener* l = host.find_listener(it->second.vip, it->second.port);
  if (!l || l->steer_ino != uint64_t(st.st_ino)) {  // a listener gone since (the socket was closed)
    t->steered.erase(it);
    close_fd(copy);
    return cont();
  }
  if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) {
    close_fd(copy);
    sc_respond(t, id, EINVAL, false);
    return;
  }
  if (sc_take_conn(t, id, pid, tg, copy, uint64_t(st.st_ino), flags, addr, lenp)) {
    close_fd(copy);
    return;
  }
  int fl = fcntl(copy, F_GETFL);
  // A held accept keeps the broker's copy of the listener until a connection comes: at the
  // container's limit (or the broker's budget) the call fails as accept() does when out of
  // descriptors, which servers retry after a pause.
  if (fl >= 0 && !(fl & O_NONBLOCK)) {
    bool room = t->outs.size() + t->accepts.size() < cfg.pending_max;
    if (!room) {
      if (Container* c = sc_container(t)) host.at_pending_limit(c);
    }
    if (!room || !host.fd_room(copy)) {
      close_fd(copy);
      sc_respond(t, id, room ? ENFILE : EMFILE, false);
      return;
    }
  }
  ScAccept* a = fl >= 0 && !(fl & O_NONBLOCK) ? new (std::nothrow) ScAccept : nullptr;
  if (!a) {
    close_fd(copy);
    sc_respond(t, id, EAGAIN, false);
    return;
  }
  a->t = t;
  a->id = id;
  a->ino = uint64_t(st.st_ino);
  a->pid = pid;
  a->tgid = tg;
  a->flags = flags;
  a->addr = addr;
  a->lenp = lenp;
  a->check_at = now_ms() + kAcceptCheckMs;
  a->slot = sc_cur_slot;
  sc_cur_slot = -1;
  a->ev.fd = copy;
  if (!ep_add(a->ev, EPOLLIN)) {
    close_fd(copy);
    delete a;
    sc_respond(t, id, EAGAIN, false);
    return;
  }
  t->accepts.push_back(a);
  inc(ctr.seccomp_accepts_held);
}

int SeccompAgent::sc_take_conn(ScTarget* t, uint64_t id, int pid, int tgid, int lfd, uint64_t ino, int flags,
                               uint64_t addr, uint64_t lenp) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/mem", pid);
  int mfd = open(path, O_RDWR | O_CLOEXEC);
  if (mfd < 0 || !id_valid(t->ev.fd, id)) {  // the caller is gone
    close_fd(mfd);
    return 1;
  }
  auto answer = [&](int err) {
    close_fd(mfd);
    sc_respond(t, id, err, false);
    return 1;
  };
  socklen_t len = 0;
  if (addr) {
    if (!lenp || pread(mfd, &len, sizeof len, off_t(lenp)) != ssize_t(sizeof len)) return answer(EFAULT);
    if (int(len) < 0) return answer(EINVAL);
  }
  Channel* ch = nullptr;
  bool v6 = false;
  if (auto it = t->steered.find(ino); it != t->steered.end()) {
    v6 = it->second.v6;
    if (Listener* l = host.find_listener(it->second.vip, it->second.port); l && l->steer_ino == ino)
      for (Channel* x : l->chans)
        if (x->held_end >= 0) ch = x;
  }
  for (int i = 0; i < 64; i++) {
    // The listener's file is the application's (blocking or not): accept only what is there.
    pollfd p{lfd, POLLIN, 0};
    if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN)) break;
    int nfd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (nfd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
      return answer(errno);
    }
    sf_hdr h{};
    if (!read_steered_hdr(nfd, &h)) {
      SF_DLOG("seccomp: steered connection without a header dropped");
      close_fd(nfd);
      continue;
    }
    int conn = nfd;
    uint32_t lip, rip;
    uint16_t lport, rport;
    bool steered = h.type != SF_HDR_DOORBELL;
    if (steered) {
      lip = ntohl(h.dst_vip);
      lport = ntohs(h.dst_port);
      rip = ntohl(h.src_vip);
      rport = ntohs(h.src_port);
    } else {  // a plain client waits on the channel
      close_fd(nfd);
      sf_msg m{};
      conn = ch ? take_accepted(ch->held_end, &m) : -1;
      if (conn < 0) continue;  // taken by another accept meanwhile
      lip = ntohl(m.vip_a);
      lport = ntohs(m.port_a);
      rip = ntohl(m.vip_b);
      rport = ntohs(m.port_b);
    }
    set_nonblock(conn, (flags & SOCK_NONBLOCK) != 0);
    if (addr) {
      sockaddr_storage sa;
      socklen_t full = program_sockaddr(v6, rip, rport, &sa);
      size_t k = std::min<size_t>(len, full);
      if ((k && pwrite(mfd, &sa, k, off_t(addr)) != ssize_t(k)) ||
          pwrite(mfd, &full, sizeof full, off_t(lenp)) != ssize_t(sizeof full)) {
        reset_close(conn);
        return answer(EFAULT);
      }
    }
    close_fd(mfd);
    mfd = -1;
    // The new fd number is the call's return value.
    int rc = notif_addfd(t->ev.fd, id, SECCOMP_ADDFD_FLAG_SEND, conn, 0, (flags & SOCK_CLOEXEC) != 0);
    if (rc < 0) {
      int e = errno;
      reset_close(conn);
      if (e != ENOENT) sc_respond(t, id, e, false);  // ENOENT: the caller is gone
      return 1;
    }
    struct stat st;
    if (steered && fstat(conn, &st) == 0) {
      ScTarget::Swapped sw{uint64_t(st.st_ino), lip, rip, lport, rport, false, v6};
      t->swapped[(uint64_t(uint32_t(tgid)) << 32) | uint32_t(rc)] = sw;
    }
    close_fd(conn);
    inc(ctr.seccomp_accepted);
    return 1;
  }
  close_fd(mfd);
  return 0;
}

void SeccompAgent::on_sc_accept(ScAccept* a) {
  if (!id_valid(a->t->ev.fd, a->id)) {  // interrupted: the restarted call is a new notification
    inc(ctr.seccomp_accepts_ended);
    return sc_drop_accept(a);
  }
  if (sc_take_conn(a->t, a->id, a->pid, a->tgid, a->ev.fd, a->ino, a->flags, a->addr, a->lenp)) sc_drop_accept(a);
}

void SeccompAgent::sc_drop_accept(ScAccept* a) {
  if (a->dead) return;
  ep_del(a->ev);
  close_fd(a->ev.fd);
  a->ev.fd = -1;
  erase_one(a->t->accepts, a);
  sc_release_slot(a->slot);
  a->slot = -1;
  dec(ctr.seccomp_accepts_held);
  bury(a);
}

}  // namespace sf
