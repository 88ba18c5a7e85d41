/* socket/bind/listen/accept/accept4/connect/getsockname/getpeername/setsockopt/getsockopt. */
#include "sf.h"

#include <fcntl.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#define IS_LOOPBACK(ip) ((ntohl(ip) >> 24) == 127)

static void forget(int fd) {
  struct sf_entry old;
  if (sf_tab_del(fd, &old) == 1) sf_entry_release(&old);
}

/* Copy of fd's entry if it still describes the socket at fd (an fd closed behind our back, e.g.
   by fclose(), leaves a stale entry: drop it). Adopts exec-inherited channels on first use.
   Returns the kind (SF_K_NONE when untracked). */
static int entry_of(int fd, struct sf_entry *e) {
  if (!sf_tab_get(fd, e)) return SF_K_NONE;
  if (e->kind == SF_K_CAND) {
    sf_adopt(fd);
    if (!sf_tab_get(fd, e)) return SF_K_NONE;
  }
  if ((e->kind == SF_K_SOCK || e->kind == SF_K_CONN || e->kind == SF_K_CHAN) && e->ino &&
      sf_fd_ino(fd) != e->ino) {
    SF_DEBUG("fd %d: stale entry dropped", fd);
    forget(fd);
    return SF_K_NONE;
  }
  return e->kind;
}

SF_EXPORT int socket(int domain, int type, int protocol) {
  int fd = REAL(socket)(domain, type, protocol);
  if (fd < 0 || domain != AF_INET || !sf_conf.enabled) return fd;
  if (!sf_table_owner()) return fd; /* a vfork child: our memory is its parent's */
  int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (base != SOCK_STREAM || (protocol != 0 && protocol != IPPROTO_TCP)) return fd;
  int saved = errno;
  struct sf_entry e, old;
  memset(&e, 0, sizeof e);
  e.kind = SF_K_SOCK;
  e.hidden_fd = -1;
  e.flags = (uint8_t)(((type & SOCK_NONBLOCK) ? SF_F_NONBLOCK : 0) |
                      ((type & SOCK_CLOEXEC) ? SF_F_CLOEXEC : 0));
  e.ino = sf_fd_ino(fd);
  if (sf_tab_set(fd, &e, &old) == 1) sf_entry_release(&old);
  errno = saved;
  return fd;
}

static int upd_bound(struct sf_entry *e, int present, void *arg) {
  const struct sockaddr_in *sin = arg;
  if (!present || e->kind != SF_K_SOCK) return SF_UPD_KEEP;
  e->bound_ip = sin->sin_addr.s_addr;
  e->bound_port = sin->sin_port;
  e->flags |= SF_F_BOUND;
  return SF_UPD_STORE;
}

SF_EXPORT int bind(int fd, const struct sockaddr *addr, socklen_t len) {
  int r = REAL(bind)(fd, addr, len);
  if (r == 0 && sf_tab_has(fd) && addr && len >= sizeof(struct sockaddr_in) &&
      addr->sa_family == AF_INET) {
    int saved = errno;
    struct sockaddr_in sin;
    memcpy(&sin, addr, sizeof sin);
    sf_tab_update(fd, upd_bound, &sin);
    errno = saved;
  }
  return r;
}

/* ---- connect ---- */

struct conn_arg {
  const struct sf_msg *rep;
  uint64_t ino;
};
static int upd_connected(struct sf_entry *e, int present, void *arg) {
  struct conn_arg *a = arg;
  e->kind = SF_K_CONN;
  e->hidden_fd = -1;
  e->l_ip = a->rep->vip_a;
  e->l_port = a->rep->port_a;
  e->p_ip = a->rep->vip_b;
  e->p_port = a->rep->port_b;
  e->ino = a->ino;
  e->neps = 0;
  e->nopts = 0;
  (void)present;
  return SF_UPD_STORE;
}

static int plain_connect(int fd, const struct sockaddr *addr, socklen_t len, int saved) {
  forget(fd); /* from now on an ordinary socket */
  errno = saved;
  return REAL(connect)(fd, addr, len);
}

SF_EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len) {
  if (!sf_tab_has(fd) || !addr || len < sizeof(struct sockaddr_in) || addr->sa_family != AF_INET)
    return REAL(connect)(fd, addr, len);
  int saved = errno;
  struct sf_entry e;
  if (entry_of(fd, &e) != SF_K_SOCK) {
    errno = saved;
    return REAL(connect)(fd, addr, len);
  }
  struct sockaddr_in dst;
  memcpy(&dst, addr, sizeof dst);
  uint32_t ip = dst.sin_addr.s_addr;
  if (ip == INADDR_ANY || IS_LOOPBACK(ip) || IN_MULTICAST(ntohl(ip)) || ip == INADDR_BROADCAST)
    return plain_connect(fd, addr, len, saved);
  struct sf_info inf;
  if (sf_broker_info(&inf) != 0 || (ip & inf.mask) != inf.net)
    return plain_connect(fd, addr, len, saved);

  struct sf_msg req, rep;
  memset(&req, 0, sizeof req);
  req.type = SF_CONNECT;
  req.vip_b = ip;
  req.port_b = dst.sin_port;
  if (e.flags & SF_F_BOUND) {
    req.vip_a = e.bound_ip;
    req.port_a = e.bound_port;
  }
  int rfd;
  if (sf_broker_call(&req, -1, &rep, &rfd) != 0) return plain_connect(fd, addr, len, saved);
  if (rep.type != SF_CONNECT_OK || rep.status < 0 || (rep.status == 0 && rfd < 0)) {
    if (rfd >= 0) REAL(close)(rfd);
    SF_DEBUG("connect fd %d: broker says fallback (status %d)", fd, rep.status);
    return plain_connect(fd, addr, len, saved);
  }
  if (rep.status > 0) {
    if (rfd >= 0) REAL(close)(rfd);
    SF_DEBUG("connect fd %d: broker says errno %d", fd, rep.status);
    errno = rep.status;
    return -1;
  }
  if (sf_swap_in(fd, rfd, &e, 1, -1) != 0) return -1;
  struct conn_arg a = {&rep, sf_fd_ino(fd)};
  sf_tab_update(fd, upd_connected, &a);
  SF_DEBUG("connect fd %d: swapped in a SlimFast socket", fd);
  /* Settle the socket's state with the kernel: a socket the broker connected without blocking is
     still "connecting" for the socket layer (the app's next connect() would return 0 instead of
     EISCONN), and one whose handshake is still running must be waited for when the app's socket
     blocks. The kernel ignores the address here. */
  int r = REAL(connect)(fd, addr, len);
  if (r != 0 && errno != EISCONN && errno != EALREADY && errno != EINPROGRESS) return -1;
  int fl = REAL(fcntl)(fd, F_GETFL);
  if (fl >= 0 && (fl & O_NONBLOCK)) {
    errno = EINPROGRESS; /* connected or nearly: EPOLLOUT fires when it is, SO_ERROR tells */
    return -1;
  }
  errno = saved;
  return 0;
}

/* ---- listen ---- */

struct chan_arg {
  int hidden;
  uint32_t ip;
  uint16_t port;
  uint64_t ino;
};
static int upd_channel(struct sf_entry *e, int present, void *arg) {
  struct chan_arg *a = arg;
  e->kind = SF_K_CHAN;
  e->hidden_fd = a->hidden;
  e->l_ip = a->ip;
  e->l_port = a->port;
  e->p_ip = 0;
  e->p_port = 0;
  e->ino = a->ino;
  e->nopts = 0;
  e->flags &= (uint8_t)~SF_F_SWAPPING;
  (void)present;
  return SF_UPD_STORE;
}

SF_EXPORT int listen(int fd, int backlog) {
  if (!sf_tab_has(fd)) return REAL(listen)(fd, backlog);
  int saved = errno;
  struct sf_entry e;
  int kind = entry_of(fd, &e);
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
  struct sockaddr_in sin;
  socklen_t sl = sizeof sin;
  struct sf_info inf;
  if (REAL(getsockname)(fd, (struct sockaddr *)&sin, &sl) != 0 || sin.sin_family != AF_INET ||
      (sin.sin_addr.s_addr != INADDR_ANY && IS_LOOPBACK(sin.sin_addr.s_addr)) ||
      sf_broker_info(&inf) != 0 ||
      (sin.sin_addr.s_addr != INADDR_ANY && sin.sin_addr.s_addr != inf.vip)) {
    forget(fd);
    errno = saved;
    return 0;
  }
  /* read before the broker gets the socket: it may change the shared file status flags */
  int app_fl = REAL(fcntl)(fd, F_GETFL);
  struct sf_msg req, rep;
  memset(&req, 0, sizeof req);
  req.type = SF_LISTEN;
  req.vip_a = sin.sin_addr.s_addr;
  req.port_a = sin.sin_port;
  req.a = (uint64_t)(int64_t)backlog;
  int rfd;
  /* The broker makes the real listening socket non-blocking for its own accepts, and that file
     description is the app's: take the app's O_NONBLOCK from before the call. */
  int fl0 = REAL(fcntl)(fd, F_GETFL);
  if (sf_broker_call(&req, fd, &rep, &rfd) != 0 || rep.type != SF_LISTEN_OK ||
      rep.status < 0 || (rep.status == 0 && rfd < 0)) {
    if (rfd >= 0) REAL(close)(rfd);
    if (fl0 >= 0) REAL(fcntl)(fd, F_SETFL, fl0);
    SF_DEBUG("listen fd %d: ordinary listening socket", fd);
    forget(fd);
    errno = saved;
    return 0;
  }
  if (rep.status > 0) {
    if (rfd >= 0) REAL(close)(rfd);
    forget(fd);
    errno = rep.status;
    return -1;
  }
  int hidden = sf_hidden_dup(fd, fd);
  if (sf_swap_in(fd, rfd, &e, 0, app_fl) != 0) {
    int err = errno;
    sf_hidden_close(hidden);
    errno = err;
    return -1;
  }
  if (fl0 >= 0) sf_fd_nonblock(fd, (fl0 & O_NONBLOCK) != 0);
  struct chan_arg a = {hidden, rep.vip_a, rep.port_a ? rep.port_a : sin.sin_port, sf_fd_ino(fd)};
  if (!rep.vip_a && !rep.port_a) a.ip = sin.sin_addr.s_addr;
  sf_tab_update(fd, upd_channel, &a);
  SF_DEBUG("listen fd %d: now a SlimFast listener channel (hidden %d)", fd, hidden);
  errno = saved;
  return 0;
}

/* ---- accept ---- */

struct claim_arg {
  struct sf_entry e;
  int result; /* 1 claimed, 0 not a channel any more, -1 busy */
};
static int upd_claim(struct sf_entry *e, int present, void *arg) {
  struct claim_arg *a = arg;
  if (!present || e->kind != SF_K_CHAN) {
    a->result = 0;
    return SF_UPD_KEEP;
  }
  if (e->flags & SF_F_SWAPPING) {
    a->result = -1;
    return SF_UPD_KEEP;
  }
  e->flags |= SF_F_SWAPPING;
  a->e = *e;
  a->result = 1;
  return SF_UPD_STORE;
}
static int upd_unclaim(struct sf_entry *e, int present, void *arg) {
  (void)arg;
  if (!present) return SF_UPD_KEEP;
  e->flags &= (uint8_t)~SF_F_SWAPPING;
  return SF_UPD_STORE;
}

/* After exec there is no hidden real socket: listen afresh on the channel's address. */
static int relisten(const struct sf_entry *e) {
  int s = REAL(socket)(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  int one = 1;
  REAL(setsockopt)(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = e->l_ip;
  sin.sin_port = e->l_port;
  if (REAL(bind)(s, (struct sockaddr *)&sin, sizeof sin) != 0 || REAL(listen)(s, 511) != 0) {
    REAL(close)(s);
    return -1;
  }
  return s;
}

/* The channel reads EOF (broker gone): put the real listening socket back on the app's fd.
   0 = fd is an ordinary listening socket now; -1 = could not (errno set). */
static int channel_fallback(int fd) {
  struct claim_arg a;
  for (int spins = 0;; spins++) {
    a.result = 0;
    sf_tab_update(fd, upd_claim, &a);
    if (a.result >= 0) break;
    if (spins > 100000) {
      errno = ECONNABORTED;
      return -1;
    }
    sched_yield();
  }
  if (a.result == 0) return 0; /* another thread did it */
  int real = a.e.hidden_fd;
  if (real >= 0)
    sf_tab_drop(real);
  else
    real = relisten(&a.e);
  if (real < 0) {
    sf_tab_update(fd, upd_unclaim, NULL);
    SF_DEBUG("listener fd %d: broker gone and no real socket to fall back to", fd);
    errno = ECONNABORTED;
    return -1;
  }
  int r = sf_swap_in(fd, real, &a.e, 0, -1);
  int err = errno;
  sf_tab_drop(fd);
  SF_DEBUG("listener fd %d: broker gone, back to the ordinary listening socket", fd);
  errno = err;
  return r;
}

struct acc_arg {
  const struct sf_msg *m;
  uint64_t ino;
};
static int upd_accepted(struct sf_entry *e, int present, void *arg) {
  struct acc_arg *a = arg;
  memset(e, 0, sizeof *e);
  e->kind = SF_K_CONN;
  e->hidden_fd = -1;
  e->l_ip = a->m->vip_a;
  e->l_port = a->m->port_a;
  e->p_ip = a->m->vip_b;
  e->p_port = a->m->port_b;
  e->ino = a->ino;
  (void)present;
  return SF_UPD_STORE;
}

static int do_accept(int fd, struct sockaddr *addr, socklen_t *alen, int flags, int is4) {
#define PLAIN_ACCEPT() (is4 ? REAL(accept4)(fd, addr, alen, flags) : REAL(accept)(fd, addr, alen))
  if (!sf_tab_has(fd)) return PLAIN_ACCEPT();
  int saved = errno;
  struct sf_entry e;
  if (entry_of(fd, &e) != SF_K_CHAN) {
    errno = saved;
    return PLAIN_ACCEPT();
  }
  if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) {
    errno = EINVAL;
    return -1;
  }
  for (;;) {
    struct sf_msg m;
    struct iovec iov = {&m, sizeof m};
    union {
      char buf[CMSG_SPACE(4 * sizeof(int))];
      struct cmsghdr align;
    } u;
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = u.buf;
    mh.msg_controllen = sizeof u.buf;
    ssize_t n = recvmsg(fd, &mh, (flags & SOCK_CLOEXEC) ? MSG_CMSG_CLOEXEC : 0);
    if (n < 0) return -1; /* EAGAIN, EINTR, ... as accept would */
    if (n == 0) {
      if (channel_fallback(fd) != 0) return -1;
      errno = saved;
      return PLAIN_ACCEPT();
    }
    int nfd = -1;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
      if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
      int cnt = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
      for (int i = 0; i < cnt; i++) {
        int x;
        memcpy(&x, CMSG_DATA(cm) + i * sizeof(int), sizeof x);
        if (nfd < 0)
          nfd = x;
        else
          REAL(close)(x);
      }
    }
    if (nfd < 0 && (mh.msg_flags & MSG_CTRUNC)) {
      errno = EMFILE; /* the kernel could not install the fd: out of descriptors */
      return -1;
    }
    if (n != (ssize_t)sizeof m || m.type != SF_ACCEPTED || nfd < 0) {
      if (nfd >= 0) REAL(close)(nfd);
      SF_DEBUG("listener fd %d: ignoring unexpected message", fd);
      continue;
    }
    /* The description came from the broker: set O_NONBLOCK exactly as asked. */
    sf_fd_nonblock(nfd, (flags & SOCK_NONBLOCK) != 0);
    struct acc_arg a = {&m, sf_fd_ino(nfd)};
    struct sf_entry old;
    if (sf_tab_get(nfd, &old)) {
      sf_tab_del(nfd, &old);
      sf_entry_release(&old);
    }
    sf_tab_update(nfd, upd_accepted, &a);
    if (addr && alen) sf_fill_addr(addr, alen, m.vip_b, m.port_b);
    errno = saved;
    return nfd;
  }
#undef PLAIN_ACCEPT
}

SF_EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *alen) {
  return do_accept(fd, addr, alen, 0, 0);
}
SF_EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *alen, int flags) {
  return do_accept(fd, addr, alen, flags, 1);
}

/* ---- addresses ---- */

SF_EXPORT int getsockname(int fd, struct sockaddr *addr, socklen_t *alen) {
  if (!sf_tab_has(fd) || !addr || !alen) return REAL(getsockname)(fd, addr, alen);
  int saved = errno;
  struct sf_entry e;
  int k = entry_of(fd, &e);
  errno = saved;
  if (k != SF_K_CONN && k != SF_K_CHAN) return REAL(getsockname)(fd, addr, alen);
  sf_fill_addr(addr, alen, e.l_ip, e.l_port);
  return 0;
}

SF_EXPORT int getpeername(int fd, struct sockaddr *addr, socklen_t *alen) {
  if (!sf_tab_has(fd) || !addr || !alen) return REAL(getpeername)(fd, addr, alen);
  int saved = errno;
  struct sf_entry e;
  int k = entry_of(fd, &e);
  errno = saved;
  if (k == SF_K_CHAN) {
    errno = ENOTCONN;
    return -1;
  }
  if (k != SF_K_CONN) return REAL(getpeername)(fd, addr, alen);
  sf_fill_addr(addr, alen, e.p_ip, e.p_port);
  return 0;
}

/* ---- socket options ---- */

static int recordable(int level, int name, const void *val, socklen_t len) {
  if (!val || len == 0 || len > SF_OPT_MAXLEN) return 0;
  if (level == SOL_SOCKET) {
    switch (name) {
      case SO_BINDTODEVICE: /* names a device of the container, not of the host */
#ifdef SO_BINDTOIFINDEX
      case SO_BINDTOIFINDEX:
#endif
      case SO_ATTACH_FILTER:
      case SO_DETACH_FILTER:
      case SO_LOCK_FILTER:
        return 0;
      default:
        return 1;
    }
  }
  if (level == IPPROTO_TCP) {
    switch (name) {
      case TCP_REPAIR:
      case TCP_REPAIR_QUEUE:
      case TCP_QUEUE_SEQ:
      case TCP_REPAIR_OPTIONS:
      case TCP_FASTOPEN_CONNECT:
      case TCP_ULP:
        return 0;
      default:
        return 1;
    }
  }
  return level == IPPROTO_IP && name == IP_TOS;
}

struct opt_arg {
  struct sf_opt o;
};
static int upd_opt(struct sf_entry *e, int present, void *arg) {
  struct opt_arg *a = arg;
  if (!present || e->kind != SF_K_SOCK) return SF_UPD_KEEP;
  int i;
  for (i = 0; i < e->nopts; i++)
    if (e->opts[i].level == a->o.level && e->opts[i].name == a->o.name) break;
  if (i == e->nopts) {
    if (e->nopts == SF_MAX_OPTS) {
      e->flags |= SF_F_OPTLOST;
      return SF_UPD_STORE;
    }
    e->nopts++;
  }
  e->opts[i] = a->o;
  return SF_UPD_STORE;
}

SF_EXPORT int setsockopt(int fd, int level, int name, const void *val, socklen_t len) {
  if (!sf_tab_has(fd)) return REAL(setsockopt)(fd, level, name, val, len);
  int saved = errno;
  struct sf_entry e;
  int k = sf_tab_get(fd, &e) ? e.kind : SF_K_NONE;
  /* a stale SOCK entry only gains an option it never replays (connect checks st_ino); a channel
     must be the right one before options are redirected to its hidden socket */
  if (k == SF_K_CHAN || k == SF_K_CAND) k = entry_of(fd, &e);
  errno = saved;
  if (k == SF_K_CHAN) {
    /* a listener's options belong to the real listening socket; a receive timeout also to the
       channel, where accept() waits */
    if (level == SOL_SOCKET && name == SO_RCVTIMEO) REAL(setsockopt)(fd, level, name, val, len);
    errno = saved;
    if (e.hidden_fd >= 0) return REAL(setsockopt)(e.hidden_fd, level, name, val, len);
    return 0;
  }
  int r = REAL(setsockopt)(fd, level, name, val, len);
  if (r == 0 && k == SF_K_SOCK && recordable(level, name, val, len)) {
    struct opt_arg a;
    memset(&a, 0, sizeof a);
    a.o.level = level;
    a.o.name = name;
    a.o.len = len;
    memcpy(a.o.val, val, len);
    sf_tab_update(fd, upd_opt, &a);
    errno = saved;
  }
  return r;
}

static int put_int(void *val, socklen_t *len, int v) {
  if (!val || !len) {
    errno = EFAULT;
    return -1;
  }
  socklen_t n = *len < (socklen_t)sizeof v ? *len : (socklen_t)sizeof v;
  memcpy(val, &v, n);
  *len = n;
  return 0;
}

SF_EXPORT int getsockopt(int fd, int level, int name, void *val, socklen_t *len) {
  if (!sf_tab_has(fd)) return REAL(getsockopt)(fd, level, name, val, len);
  int saved = errno;
  struct sf_entry e;
  int k = entry_of(fd, &e);
  errno = saved;
  if (k != SF_K_CHAN) return REAL(getsockopt)(fd, level, name, val, len);
  if (level == SOL_SOCKET) {
    switch (name) {
      case SO_TYPE:
        return put_int(val, len, SOCK_STREAM);
      case SO_DOMAIN:
        return put_int(val, len, AF_INET);
      case SO_PROTOCOL:
        return put_int(val, len, IPPROTO_TCP);
      case SO_ACCEPTCONN:
        return put_int(val, len, 1);
      case SO_ERROR:
        return put_int(val, len, 0);
      case SO_RCVTIMEO:
        return REAL(getsockopt)(fd, level, name, val, len);
      default:
        break;
    }
  }
  return REAL(getsockopt)(e.hidden_fd >= 0 ? e.hidden_fd : fd, level, name, val, len);
}
