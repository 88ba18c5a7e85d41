/* listen/accept/accept4/shutdown as the app calls them. A listener SlimFast serves is a listener
 * channel (accept() takes SF_ACCEPTED messages from it), a steered host socket (connections come
 * with their header first) or, while its broker is away, an orphan; the machinery behind them is
 * listen.c's. */
#include "sf.h"

#include <fcntl.h>
#include <poll.h>
#include <string.h>

SF_EXPORT int listen(int fd, int backlog) {
  if (!sf_tab_has(fd)) return REAL(listen)(fd, backlog);
  if (sf_unpool(fd) != 0) return -1;
  int saved = errno;
  struct sf_entry e;
  int kind = sf_entry_of(fd, &e);
  if (kind == SF_K_STEER) {
    int on = 0;
    socklen_t ol = sizeof on;
    if (REAL(getsockopt)(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &ol) == 0 && on) {
      errno = saved;
      return REAL(listen)(fd, backlog); /* a new backlog for the live listener */
    }
    /* listening again after shutdown(): a fresh socket on the virtual address, then as usual. The
       broker holds the app's first socket there until it has seen the channel shut (moments
       later): wait for the address, boundedly. */
    if (sf_unsteer(fd, &e, SF_K_SOCK, 2000) != 0) return -1;
    kind = SF_K_SOCK;
  }
  if (kind == SF_K_CHAN && sf_channel_is_shut(&e)) {
    /* listening again after shutdown(): the kernel's listener would. Take the real socket back
       and hand it over afresh, keeping the fd's epoll registrations. */
    struct sf_entry was;
    if (sf_channel_fallback(fd, &was) != 0) return -1;
    if (was.kind != SF_K_CHAN) {
      errno = saved;
      return REAL(listen)(fd, backlog);
    }
    e = was;
    e.kind = SF_K_SOCK;
    e.hidden_fd = -1;
    e.flags &= (uint8_t)(SF_F_NONBLOCK | SF_F_CLOEXEC | SF_F_V6 | SF_F_EPLOST);
    e.nopts = 0;
    e.ino = sf_fd_ino(fd);
    if (sf_tab_set(fd, &e, NULL) < 0) {
      errno = saved;
      return REAL(listen)(fd, backlog);
    }
    kind = SF_K_SOCK;
  }
  if (kind == SF_K_CHAN) {
    errno = saved;
    return e.hidden_fd >= 0 ? REAL(listen)(e.hidden_fd, backlog) : 0;
  }
  if (kind != SF_K_SOCK) {
    errno = saved;
    return REAL(listen)(fd, backlog);
  }
  int r = REAL(listen)(fd, backlog);
  if (r != 0) return r;
  r = sf_listen_register(fd, &e, backlog);
  if (r < 0) return -1;
  if (r == 1) sf_forget(fd); /* no broker now: an ordinary listener */
  if (r == 0) sf_watch_ensure();
  errno = saved;
  return 0;
}

/* ---- accept ---- */

struct acc_arg {
  const struct sf_msg *m;
  uint64_t ino;
  uint8_t flags;
};
static int upd_accepted(struct sf_entry *e, int present, void *arg) {
  struct acc_arg *a = arg;
  memset(e, 0, sizeof *e);
  e->kind = SF_K_CONN;
  e->flags = a->flags;
  e->hidden_fd = -1;
  e->l_ip = a->m->vip_a;
  e->l_port = a->m->port_a;
  e->p_ip = a->m->vip_b;
  e->p_port = a->m->port_b;
  e->ino = a->ino;
  (void)present;
  return SF_UPD_STORE;
}

static int upd_shut(struct sf_entry *e, int present, void *arg) {
  int *first = arg;
  if (!present || e->kind != SF_K_CHAN || (e->flags & SF_F_SHUT)) return SF_UPD_KEEP;
  e->flags |= SF_F_SHUT;
  *first = 1;
  return SF_UPD_STORE;
}

/* nfd is an accepted SlimFast connection with m's addresses (an AF_INET6 listener's look AF_INET6). */
static int accepted(int nfd, const struct sf_msg *m, int v6, struct sockaddr *addr, socklen_t *alen) {
  struct acc_arg a = {m, 0, v6 ? SF_F_V6 : 0}; /* no st_ino: a new number replaces a stale entry */
  struct sf_entry old;
  if (sf_tab_get(nfd, &old)) {
    sf_tab_del(nfd, &old);
    sf_entry_release(&old);
  }
  sf_tab_update(nfd, upd_accepted, &a);
  if (addr && alen) sf_fill_addr(addr, alen, v6, m->vip_b, m->port_b);
  return nfd;
}

/* One SF_ACCEPTED from a listener channel: the socket, its entry, the peer's address.
   Returns the new fd; -1 with errno (EAGAIN, EINTR, ... as accept would), *eof set on EOF. */
static int chan_take(int chan, const struct sf_entry *e, struct sockaddr *addr, socklen_t *alen, int flags, int rflags,
                     int *eof) {
  *eof = 0;
  for (;;) {
    struct sf_msg m;
    int nfd, trunc;
    ssize_t n = sf_recv_fd(chan, &m, sizeof m, rflags | ((flags & SOCK_CLOEXEC) ? MSG_CMSG_CLOEXEC : 0), &nfd, &trunc);
    if (n < 0) return -1;
    if (n == 0) {
      *eof = 1;
      return -1;
    }
    if (nfd < 0 && (trunc & MSG_CTRUNC)) {
      errno = EMFILE; /* the kernel could not install the fd: out of descriptors */
      return -1;
    }
    if (n != (ssize_t)sizeof m || m.type != SF_ACCEPTED || nfd < 0) {
      if (nfd >= 0) REAL(close)(nfd);
      SF_DEBUG("listener channel %d: ignoring unexpected message", chan);
      continue;
    }
    /* The description came from the broker: set O_NONBLOCK exactly as asked. */
    sf_fd_nonblock(nfd, (flags & SOCK_NONBLOCK) != 0);
    return accepted(nfd, &m, (e->flags & SF_F_V6) != 0, addr, alen);
  }
}

/* The header that starts a steered connection. It came in the SYN, so it is there at accept time
   unless the kernel's Fast Open queue was full; then it follows the handshake. */
static int read_hdr(int nfd, struct sf_hdr *h) {
  size_t got = 0;
  int64_t deadline = 0;
  while (got < sizeof *h) {
    ssize_t n = recv(nfd, (char *)h + got, sizeof *h - got, MSG_DONTWAIT);
    if (n > 0) {
      got += (size_t)n;
      continue;
    }
    if (n == 0 || (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)) return -1;
    int64_t now = sf_now_ns();
    if (!deadline) deadline = now + 1000000000LL;
    if (now >= deadline) return -1;
    struct pollfd p = {nfd, POLLIN, 0};
    poll(&p, 1, (int)((deadline - now) / 1000000) + 1);
  }
  return ntohl(h->magic) == SF_HDR_MAGIC && h->version == SF_HDR_VERSION ? 0 : -1;
}

/* accept() on a steered listener. The kernel's BPF program verified every header that reached
   this socket, so its addresses are the connection's virtual ones. A doorbell stands for a
   connection waiting on the channel. */
static int steer_accept(int fd, const struct sf_entry *e, struct sockaddr *addr, socklen_t *alen, int flags) {
  int v6 = (e->flags & SF_F_V6) != 0;
  for (;;) {
    int nfd = REAL(accept4)(fd, NULL, NULL, flags);
    if (nfd < 0) return -1;
    struct sf_hdr h;
    if (read_hdr(nfd, &h) != 0) {
      SF_DEBUG("steered listener fd %d: connection without a header dropped", fd);
      REAL(close)(nfd);
      continue;
    }
    if (h.type == SF_HDR_DOORBELL) {
      REAL(close)(nfd);
      int eof;
      int r = e->hidden_fd >= 0 ? chan_take(e->hidden_fd, e, addr, alen, flags, MSG_DONTWAIT, &eof) : -1;
      if (r >= 0 || errno == EMFILE) return r;
      continue; /* another process or thread took it */
    }
    struct sf_msg m;
    memset(&m, 0, sizeof m);
    m.vip_a = h.dst_vip;
    m.port_a = h.dst_port;
    m.vip_b = h.src_vip;
    m.port_b = h.src_port;
    return accepted(nfd, &m, v6, addr, alen);
  }
}

/* accept() on a blocking listener whose broker went away: wait in poll(), not in the kernel's
   accept(), so that the call notices when the watcher gives the fd to a new broker. 0 = a
   connection is there (accept it), 1 = the fd is something else now, -1 = poll failed (EINTR). */
static int orphan_wait(int fd, const struct sf_entry *e) {
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    int n = poll(&p, 1, 250);
    if (n < 0) return -1;
    struct sf_entry now;
    if (!sf_tab_get(fd, &now) || now.kind != SF_K_ORPHAN || now.ino != e->ino) return 1;
    if (n == 1) return 0;
  }
}

static int do_accept(int fd, struct sockaddr *addr, socklen_t *alen, int flags, int is4) {
#define PLAIN_ACCEPT() (is4 ? REAL(accept4)(fd, addr, alen, flags) : REAL(accept)(fd, addr, alen))
  if (!sf_tab_has(fd)) return PLAIN_ACCEPT();
  int saved = errno;
  struct sf_entry e;
again:;
  /* A listener's entry is taken as it is (no fstat per accept): the number of a listener closed
     where we cannot see it (a raw syscall; fclose and close_range are ours) is handed out again only
     by calls we see too, and they replace the entry. */
  int kind = sf_tab_get(fd, &e) ? e.kind : SF_K_NONE;
  if (kind != SF_K_STEER && kind != SF_K_CHAN) kind = sf_entry_of(fd, &e);
  if (kind == SF_K_CHAN || kind == SF_K_STEER || kind == SF_K_ORPHAN) sf_watch_ensure();
  if (kind == SF_K_ORPHAN) {
    int fl = REAL(fcntl)(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK)) {
      int w = orphan_wait(fd, &e);
      if (w < 0) return -1;
      if (w == 1) goto again;
    }
    errno = saved;
    return PLAIN_ACCEPT();
  }
  if (kind == SF_K_STEER) {
    if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) {
      errno = EINVAL;
      return -1;
    }
    int r = steer_accept(fd, &e, addr, alen, flags);
    if (r >= 0) errno = saved;
    return r;
  }
  if (kind != SF_K_CHAN) {
    errno = saved;
    return PLAIN_ACCEPT();
  }
  if ((flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) || (e.flags & SF_F_SHUT)) {
    errno = EINVAL; /* bad flags, or a listener that was shut down */
    return -1;
  }
  int eof;
  int r = chan_take(fd, &e, addr, alen, flags, 0, &eof);
  if (r >= 0) {
    errno = saved;
    return r;
  }
  if (!eof) return -1;
  /* EOF: shutdown() (here or by another thread, a dup, another process), else the broker is gone */
  struct sf_entry now;
  if (sf_tab_get(fd, &now) && now.kind == SF_K_CHAN && now.ino == e.ino && sf_channel_is_shut(&now)) {
    int first = 0;
    sf_tab_update(fd, upd_shut, &first);
    errno = EINVAL;
    return -1;
  }
  if (sf_channel_fallback(fd, NULL) != 0) return -1;
  goto again;
#undef PLAIN_ACCEPT
}

SF_EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *alen) { return do_accept(fd, addr, alen, 0, 0); }
SF_EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *alen, int flags) {
  return do_accept(fd, addr, alen, flags, 1);
}

/* ---- shutdown ---- */

/* On a listener channel shutdown(SHUT_RD|SHUT_RDWR) does what it does to a kernel listener: the
   listener stops (the real socket stops listening, the broker drops the channel), every accept()
   blocked on it and every later one fails with EINVAL, connections not accepted yet are closed.
   SHUT_WR does nothing; a second shutdown says ENOTCONN. Other sockets: libc's. */
SF_EXPORT int shutdown(int fd, int how) {
  if (!sf_tab_has(fd)) return REAL(shutdown)(fd, how);
  int saved = errno;
  struct sf_entry e;
  int k = sf_tab_get(fd, &e) ? e.kind : SF_K_NONE;
  if (k == SF_K_CHAN || k == SF_K_CAND || k == SF_K_STEER) k = sf_entry_of(fd, &e); /* connections: no fstat */
  errno = saved;
  if (k == SF_K_POOLED) { /* not connected yet */
    errno = (how == SHUT_RD || how == SHUT_WR || how == SHUT_RDWR) ? ENOTCONN : EINVAL;
    return -1;
  }
  if (k == SF_K_STEER) {
    /* A real listener: the kernel stops it (and the BPF program no longer finds it); the channel
       is shut too, so that the broker drops the listener. */
    int r = REAL(shutdown)(fd, how);
    if (r == 0 && how != SHUT_WR && e.hidden_fd >= 0) {
      REAL(shutdown)(e.hidden_fd, SHUT_RDWR);
      for (;;) { /* what the channel held is dropped too, as the kernel drops its queue */
        struct sf_msg m;
        int x;
        if (sf_recv_fd(e.hidden_fd, &m, sizeof m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC, &x, NULL) <= 0) break;
        if (x >= 0) REAL(close)(x);
      }
    }
    return r;
  }
  if (k != SF_K_CHAN) return REAL(shutdown)(fd, how);
  if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR) {
    errno = EINVAL;
    return -1;
  }
  if (sf_channel_is_shut(&e)) {
    errno = ENOTCONN;
    return -1;
  }
  if (how == SHUT_WR) return 0;
  int first = 0;
  sf_tab_update(fd, upd_shut, &first); /* before the wake-up: woken accepts must see it */
  if (!first) {
    errno = ENOTCONN;
    return -1;
  }
  if (e.hidden_fd >= 0) REAL(shutdown)(e.hidden_fd, SHUT_RD); /* stop listening for plain clients */
  REAL(shutdown)(fd, SHUT_RDWR); /* wakes accept()s blocked on the channel; the broker drops it */
  for (;;) {                     /* connections queued but never accepted: closed, as the kernel resets them */
    struct sf_msg m;
    int x;
    if (sf_recv_fd(fd, &m, sizeof m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC, &x, NULL) <= 0) break;
    if (x >= 0) REAL(close)(x);
  }
  SF_DEBUG("listener fd %d: shut down", fd);
  errno = saved;
  return 0;
}
