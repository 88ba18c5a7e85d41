/* socket/bind/listen/accept/accept4/connect/getsockname/getpeername/setsockopt/getsockopt/shutdown.
 * AF_INET6 sockets take part when what they do is IPv4 underneath (inet6.c): a dual-stack listener
 * on :: or ::ffff:<vIP>, a connect to ::ffff:<overlay address>. */
#include "sf.h"

#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <string.h>

#define IS_LOOPBACK(ip) ((ntohl(ip) >> 24) == 127)

/* The kernel's family of fd is AF_INET (a host socket under an app's AF_INET6 socket). */
static int is_inet4(int fd) {
  int d = 0;
  socklen_t l = sizeof d;
  return REAL(getsockopt)(fd, SOL_SOCKET, SO_DOMAIN, &d, &l) == 0 && d == AF_INET;
}

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
  if ((e->kind == SF_K_SOCK || e->kind == SF_K_CONN || e->kind == SF_K_CHAN || e->kind == SF_K_STEER ||
       e->kind == SF_K_ORPHAN) && e->ino &&
      sf_fd_ino(fd) != e->ino) {
    SF_DEBUG("fd %d: stale entry dropped", fd);
    forget(fd);
    return SF_K_NONE;
  }
  return e->kind;
}

static int pooled_socket(int type);

SF_EXPORT int socket(int domain, int type, int protocol) {
  int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
  int tcp = (domain == AF_INET || domain == AF_INET6) && base == SOCK_STREAM &&
            (protocol == 0 || protocol == IPPROTO_TCP) && sf_conf.enabled && sf_table_owner();
  if (tcp && domain == AF_INET && sf_conf.pool_at_socket) {
    int saved = errno;
    int pfd = pooled_socket(type);
    errno = saved;
    if (pfd >= 0) return pfd;
  }
  int fd = REAL(socket)(domain, type, protocol);
  if (fd < 0 || !tcp) return fd;
  int saved = errno;
  struct sf_entry e, old;
  memset(&e, 0, sizeof e);
  e.kind = SF_K_SOCK;
  e.hidden_fd = -1;
  e.flags = (uint8_t)(((type & SOCK_NONBLOCK) ? SF_F_NONBLOCK : 0) |
                      ((type & SOCK_CLOEXEC) ? SF_F_CLOEXEC : 0) |
                      (domain == AF_INET6 ? SF_F_V6 : 0));
  e.ino = sf_fd_ino(fd);
  if (sf_tab_set(fd, &e, &old) == 1) sf_entry_release(&old);
  errno = saved;
  return fd;
}

/* socket() as a pooled host socket (pool.c): what the app would get from socket(), already
   connected to the peer host this process's connects go to; -1 when there is none to hand. */
static int pooled_socket(int type) {
  struct sf_entry e, old;
  int fd;
  memset(&e, 0, sizeof e);
  if (sf_pool_hand((type & SOCK_CLOEXEC) != 0, (type & SOCK_NONBLOCK) != 0, &fd, &e.tk) != 0) return -1;
  /* as the broker made it: non-blocking unless the reports said this process wants blocking ones */
  if (!(type & SOCK_NONBLOCK) != !e.tk.nonblock && REAL(fcntl)(fd, F_SETFL, (type & SOCK_NONBLOCK) ? O_NONBLOCK : 0) != 0) {
    sf_pool_settle(&e.tk, SF_TK_GONE);
    REAL(close)(fd);
    return -1;
  }
  e.kind = SF_K_POOLED;
  e.hidden_fd = -1;
  e.flags = (uint8_t)(((type & SOCK_NONBLOCK) ? SF_F_NONBLOCK : 0) | ((type & SOCK_CLOEXEC) ? SF_F_CLOEXEC : 0));
  int r = sf_tab_set(fd, &e, &old);
  if (r < 0) { /* cannot track it: it must not stay a host socket */
    sf_pool_settle(&e.tk, SF_TK_GONE);
    REAL(close)(fd);
    return -1;
  }
  if (r == 1) sf_entry_release(&old);
  return fd;
}

/* A POOLED fd (claimed by the caller, entry *e) gets an ordinary socket in its place (options and
   epoll registrations carried over) and becomes SF_K_SOCK: the app is about to bind, listen, dup
   or connect somewhere its pool does not go. how: SF_TK_GONE or SF_TK_MISSED. 0, or -1 (errno). */
static int unpool(int fd, struct sf_entry *e, int how) {
  int s = REAL(socket)(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0 || sf_swap_in(fd, s, e, 1, -1) != 0) { /* sf_swap_in closed s */
    int err = errno;
    sf_unclaim(fd, SF_K_POOLED);
    errno = err;
    return -1;
  }
  sf_pool_settle(&e->tk, how);
  e->kind = SF_K_SOCK;
  e->flags &= (uint8_t)~SF_F_SWAPPING;
  e->ino = sf_fd_ino(fd);
  sf_tab_set(fd, e, NULL);
  SF_DEBUG("fd %d: pooled socket replaced by an ordinary one", fd);
  return 0;
}

/* fd, if it is a POOLED socket, becomes an ordinary one (see unpool). 0 when it is not POOLED (or
   no longer: another thread got there first) or was replaced; -1 when that failed (errno). */
static int unpool_if_pooled(int fd, int how) {
  struct sf_entry e;
  if (!sf_tab_has(fd) || !sf_tab_get(fd, &e) || e.kind != SF_K_POOLED) return 0;
  if (sf_claim(fd, SF_K_POOLED, NULL, &e) != 1) return 0;
  return unpool(fd, &e, how);
}

int sf_unpool(int fd) {
  int saved = errno;
  int r = unpool_if_pooled(fd, SF_TK_GONE);
  if (r == 0) errno = saved;
  return r;
}

struct bind_arg {
  int v6, ok; /* ok: an address SlimFast can serve (AF_INET6: :: or ::ffff:a.b.c.d) */
  uint32_t ip;
  uint16_t port;
};
static int upd_bound(struct sf_entry *e, int present, void *arg) {
  const struct bind_arg *a = arg;
  if (!present || e->kind != SF_K_SOCK || !(e->flags & SF_F_V6) != !a->v6) return SF_UPD_KEEP;
  if (!a->ok) return SF_UPD_DELETE; /* ::1, link-local, a real IPv6 address: not ours */
  e->bound_ip = a->ip;
  e->bound_port = a->port;
  e->flags |= SF_F_BOUND;
  return SF_UPD_STORE;
}

SF_EXPORT int bind(int fd, const struct sockaddr *addr, socklen_t len) {
  if (sf_tab_has(fd) && sf_unpool(fd) != 0) return -1;
  int r = REAL(bind)(fd, addr, len);
  if (r != 0 || !sf_tab_has(fd) || !addr) return r;
  int saved = errno;
  struct bind_arg a = {0, 0, 0, 0};
  if (addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
    struct sockaddr_in sin;
    memcpy(&sin, addr, sizeof sin);
    a.ok = 1;
    a.ip = sin.sin_addr.s_addr;
    a.port = sin.sin_port;
  } else if (addr->sa_family == AF_INET6) {
    a.v6 = 1;
    a.ok = sf_v6_to_v4(addr, len, &a.ip, &a.port);
  } else {
    return r;
  }
  sf_tab_update(fd, upd_bound, &a);
  errno = saved;
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

static int upd_pooled_connected(struct sf_entry *e, int present, void *arg) {
  const struct sf_entry *from = arg;
  if (!present || e->kind != SF_K_POOLED) return SF_UPD_KEEP;
  e->kind = SF_K_CONN;
  e->flags &= (uint8_t)~SF_F_SWAPPING;
  e->l_ip = from->tk.h.src_vip;
  e->l_port = from->tk.sport;
  e->p_ip = from->p_ip;
  e->p_port = from->p_port;
  e->ino = 0; /* no fstat per connection: the entry is replaced when the number is handed out again */
  e->nopts = 0;
  e->tk.pool = 0;
  e->tk.said_connected = !(e->flags & SF_F_NONBLOCK);
  return SF_UPD_STORE;
}

/* connect() of a POOLED socket (*e). To a destination its pool covers: the header is sent and that
   is the connect (a blocking socket is connected, a non-blocking one "in progress" as the kernel
   would say; the handshake, if the SYN is still to go, completes before any data moves). Else the
   socket is replaced by an ordinary one and connect() goes on as for any socket (returns 2). */
static int pooled_connect(int fd, struct sf_entry *e, int v6, uint32_t ip, uint16_t port) {
  int saved = errno;
  if (sf_claim(fd, SF_K_POOLED, NULL, e) != 1) return 2; /* another thread is at it */
  if (!v6 && sf_pool_connect(fd, &e->tk, ip, port, 0) == 0) {
    e->p_ip = ip;
    e->p_port = port;
    sf_tab_update(fd, upd_pooled_connected, e);
    SF_DEBUG("connect fd %d: pooled socket", fd);
    if (e->flags & SF_F_NONBLOCK) { /* kept by socket(), fcntl() and ioctl(FIONBIO) */
      errno = EINPROGRESS;
      return -1;
    }
    errno = saved;
    return 0;
  }
  if (unpool(fd, e, SF_TK_MISSED) != 0) return -1;
  errno = saved;
  return 2;
}

static int plain_connect(int fd, const struct sockaddr *addr, socklen_t len, int saved) {
  forget(fd); /* from now on an ordinary socket */
  errno = saved;
  return REAL(connect)(fd, addr, len);
}

SF_EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len) {
  if (!sf_tab_has(fd) || !addr) return REAL(connect)(fd, addr, len);
  struct sf_entry e; /* one read of the entry serves the checks below (a claim reads it again) */
  int kind = sf_tab_get(fd, &e) ? e.kind : SF_K_NONE;
  if (kind == SF_K_CONN && e.tk.said_connected) {
    errno = EISCONN;
    return -1;
  }
  int v6;
  uint32_t ip;
  uint16_t port;
  if (addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
    struct sockaddr_in sin;
    memcpy(&sin, addr, sizeof sin);
    v6 = 0;
    ip = sin.sin_addr.s_addr;
    port = sin.sin_port;
  } else if (addr->sa_family == AF_INET6 && sf_v6_to_v4(addr, len, &ip, &port)) {
    v6 = 1; /* :: (loopback for connect) or ::ffff:a.b.c.d */
  } else {
    if (sf_unpool(fd) != 0) return -1; /* AF_UNSPEC, AF_INET6 on an AF_INET socket: the kernel's say */
    if (addr->sa_family == AF_INET6) { /* a real IPv6 destination: never SlimFast's */
      int saved = errno;
      if (sf_tab_get(fd, &e) && e.kind == SF_K_SOCK) forget(fd);
      errno = saved;
    }
    return REAL(connect)(fd, addr, len);
  }
  int saved = errno;
  if (kind == SF_K_POOLED) {
    int r = pooled_connect(fd, &e, v6, ip, port);
    if (r != 2) return r;
  }
  if (entry_of(fd, &e) != SF_K_SOCK || !(e.flags & SF_F_V6) != !v6) {
    errno = saved;
    return REAL(connect)(fd, addr, len); /* wrong family for the socket: the kernel says so */
  }
  if (ip == INADDR_ANY || IS_LOOPBACK(ip) || IN_MULTICAST(ntohl(ip)) || ip == INADDR_BROADCAST ||
      (v6 && sf_v6only(fd)))
    return plain_connect(fd, addr, len, saved);
  struct sf_info inf;
  if (sf_broker_info(&inf) != 0 || (ip & inf.mask) != inf.net)
    return plain_connect(fd, addr, len, saved);

  struct sf_msg req, rep;
  int rfd;
  uint16_t bound_port = (e.flags & SF_F_BOUND) ? e.bound_port : 0;
  uint16_t sport;
  if (sf_pool_take(ip, port, bound_port, &rfd, &sport) == 0) {
    /* A pre-established connection: what the broker's reply would have said. */
    memset(&rep, 0, sizeof rep);
    rep.type = SF_CONNECT_OK;
    rep.vip_a = inf.vip;
    rep.port_a = sport;
    rep.vip_b = ip;
    rep.port_b = port;
    goto swap;
  }
  memset(&req, 0, sizeof req);
  req.type = SF_CONNECT;
  req.vip_b = ip;
  req.port_b = port;
  if (e.flags & SF_F_BOUND) {
    req.vip_a = e.bound_ip;
    req.port_a = e.bound_port;
  }
  if (sf_pool_is_plain(ip, port)) return plain_connect(fd, addr, len, saved); /* asked before */
  if (sf_broker_call(&req, -1, &rep, &rfd) != 0) return plain_connect(fd, addr, len, saved);
  if (rep.type != SF_CONNECT_OK || rep.status < 0 || (rep.status == 0 && rfd < 0)) {
    if (rfd >= 0) REAL(close)(rfd);
    if (rep.type == SF_CONNECT_OK && rep.status == SF_STATUS_FALLBACK && (rep.a & SF_CONNECT_NOT_OURS))
      sf_pool_note_plain(ip, port);
    SF_DEBUG("connect fd %d: broker says fallback (status %d)", fd, rep.status);
    return plain_connect(fd, addr, len, saved);
  }
  if (rep.status > 0) {
    if (rfd >= 0) REAL(close)(rfd);
    SF_DEBUG("connect fd %d: broker says errno %d", fd, rep.status);
    errno = rep.status;
    return -1;
  }
  if (rep.a & SF_CONNECT_POOLABLE) sf_pool_confirm(ip, port);
swap:
  if (sf_swap_in(fd, rfd, &e, 1, -1) != 0) return -1;
  struct conn_arg a = {&rep, sf_fd_ino(fd)};
  sf_tab_update(fd, upd_connected, &a);
  SF_DEBUG("connect fd %d: swapped in a SlimFast socket", fd);
  /* Settle the socket's state with the kernel: a socket the broker connected without blocking is
     still "connecting" for the socket layer (the app's next connect() would return 0 instead of
     EISCONN), and one whose handshake is still running must be waited for when the app's socket
     blocks. The kernel ignores the address here (the socket is an AF_INET one now). */
  struct sockaddr_in dst;
  memset(&dst, 0, sizeof dst);
  dst.sin_family = AF_INET;
  dst.sin_addr.s_addr = ip;
  dst.sin_port = port;
  int r = REAL(connect)(fd, (struct sockaddr *)&dst, sizeof dst);
  if (r != 0 && errno != EISCONN && errno != EALREADY && errno != EINPROGRESS) return -1;
  int fl = REAL(fcntl)(fd, F_GETFL);
  if (fl >= 0 && (fl & O_NONBLOCK)) {
    errno = EINPROGRESS; /* connected or nearly: EPOLLOUT fires when it is, SO_ERROR tells */
    return -1;
  }
  errno = saved;
  return 0;
}

/* ---- listener channels: fall back ---- */

/* After exec there is no hidden real socket: listen afresh on the channel's address. */
int sf_relisten(const struct sf_entry *e) {
  int v6 = (e->flags & SF_F_V6) != 0;
  int s = REAL(socket)(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  int one = 1, zero = 0;
  REAL(setsockopt)(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (v6) REAL(setsockopt)(s, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  union {
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
  } u;
  socklen_t ul = sizeof u;
  sf_fill_addr((struct sockaddr *)&u, &ul, v6, e->l_ip, e->l_port);
  if (REAL(bind)(s, (struct sockaddr *)&u, ul) != 0 || REAL(listen)(s, 511) != 0) {
    REAL(close)(s);
    return -1;
  }
  return s;
}

/* Put the real listening socket back on the app's fd (the channel reads EOF because the broker is
   gone, or the app listens again after shutdown()). 0 = fd is an ordinary socket now, an
   SF_K_ORPHAN that the watcher registers again with the next broker, *was (if not NULL) the
   channel's entry, or kind SF_K_NONE when another thread did it; -1 = could not (errno set). */
int sf_channel_fallback(int fd, struct sf_entry *was) {
  struct sf_entry c;
  int claimed;
  if (was) was->kind = SF_K_NONE;
  for (int spins = 0;; spins++) {
    claimed = sf_claim(fd, SF_K_CHAN, NULL, &c);
    if (claimed >= 0) break;
    if (spins > 100000) {
      errno = ECONNABORTED;
      return -1;
    }
    sched_yield();
  }
  if (claimed == 0) return 0; /* another thread did it */
  int real = c.hidden_fd;
  if (real >= 0)
    sf_tab_drop(real);
  else
    real = sf_relisten(&c);
  if (real < 0) {
    sf_unclaim(fd, SF_K_NONE);
    SF_DEBUG("listener fd %d: broker gone and no real socket to fall back to", fd);
    errno = ECONNABORTED;
    return -1;
  }
  int r = sf_swap_in(fd, real, &c, 0, -1);
  int err = errno;
  sf_tab_drop(fd);
  if (r == 0) {
    struct sf_entry o = c;
    o.kind = SF_K_ORPHAN;
    o.hidden_fd = -1;
    o.nopts = 0;
    o.flags &= (uint8_t)(SF_F_NONBLOCK | SF_F_CLOEXEC | SF_F_V6 | SF_F_EPLOST);
    o.ino = sf_fd_ino(fd);
    sf_tab_set(fd, &o, NULL);
  }
  SF_DEBUG("listener fd %d: back to the ordinary listening socket", fd);
  if (was && r == 0) *was = c;
  errno = err;
  return r;
}

/* The channel's real listening socket was shut down (shutdown(SHUT_RD|SHUT_RDWR) on this fd, a
   dup of it or in another process sharing it): what the kernel's listener would then answer. */
static int channel_is_shut(const struct sf_entry *e) {
  if (e->flags & SF_F_SHUT) return 1;
  if (e->hidden_fd < 0) return 0;
  int v = 1;
  socklen_t l = sizeof v;
  return REAL(getsockopt)(e->hidden_fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) == 0 && v == 0;
}

/* ---- steered listeners ---- */

struct steer_arg {
  int chan;
  uint32_t ip;
  uint16_t port;
  uint64_t ino;
};
static int upd_steer(struct sf_entry *e, int present, void *arg) {
  struct steer_arg *a = arg;
  e->kind = SF_K_STEER; /* its epoll registrations stay: a later swap re-adds them */
  e->flags &= (uint8_t)(SF_F_NONBLOCK | SF_F_CLOEXEC | SF_F_V6 | SF_F_EPLOST);
  e->hidden_fd = a->chan;
  e->l_ip = a->ip;
  e->l_port = a->port;
  e->p_ip = 0;
  e->p_port = 0;
  e->ino = a->ino;
  e->nopts = 0;
  (void)present;
  return SF_UPD_STORE;
}

/* The broker offers a kernel-steered host listening socket for the listener whose channel is chan:
   fetch it and put it on the app's fd, with the channel hidden behind it (for the connections the
   broker still hands over, announced by doorbells). 0 = done; -1 = keep the channel alone. */
static int steer_take(int fd, int chan, const struct sf_entry *e, int app_fl, uint32_t ip, uint16_t port) {
  struct sf_msg req, rep;
  memset(&req, 0, sizeof req);
  req.type = SF_STEER_SOCKET;
  req.a = sf_fd_ino(chan);
  int tfd = -1;
  if (sf_broker_call(&req, -1, &rep, &tfd) != 0 || rep.type != SF_STEER_OK || rep.status != 0 || tfd < 0) {
    if (tfd >= 0) REAL(close)(tfd);
    return -1;
  }
  int hidden = sf_hidden_dup(chan, fd);
  if (hidden < 0) {
    REAL(close)(tfd);
    return -1;
  }
  if (sf_swap_in(fd, tfd, e, 0, app_fl) != 0) { /* it closed tfd */
    sf_hidden_close(hidden);
    return -1;
  }
  struct steer_arg a = {hidden, ip, port, sf_fd_ino(fd)};
  sf_tab_update(fd, upd_steer, &a);
  SF_DEBUG("listen fd %d: now a steered host listener (channel %d)", fd, hidden);
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
  e->flags &= (uint8_t) ~(SF_F_SWAPPING | SF_F_SHUT);
  (void)present;
  return SF_UPD_STORE;
}

/* The app's own listening socket's address, if SlimFast can serve it: AF_INET, or AF_INET6
   dual-stack on :: or ::ffff:a.b.c.d (the wire carries the IPv4 address). */
static int listen_addr(int fd, int v6, uint32_t *ip, uint16_t *port) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (REAL(getsockname)(fd, (struct sockaddr *)&ss, &sl) != 0) return 0;
  if (v6)
    return ss.ss_family == AF_INET6 && sf_v6_to_v4((struct sockaddr *)&ss, sl, ip, port) &&
           !sf_v6only(fd);
  if (ss.ss_family != AF_INET) return 0;
  const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
  *ip = sin->sin_addr.s_addr;
  *port = sin->sin_port;
  return 1;
}

SF_EXPORT int listen(int fd, int backlog) {
  if (!sf_tab_has(fd)) return REAL(listen)(fd, backlog);
  if (sf_unpool(fd) != 0) return -1;
  int saved = errno;
  struct sf_entry e;
  int kind = entry_of(fd, &e);
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
  if (kind == SF_K_CHAN && channel_is_shut(&e)) {
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
  if (r == 1) forget(fd); /* no broker now: an ordinary listener */
  if (r == 0) sf_watch_ensure();
  errno = saved;
  return 0;
}

int sf_listen_register(int fd, struct sf_entry *e, int backlog) {
  int saved = errno;
  int v6 = (e->flags & SF_F_V6) != 0;
  uint32_t lip = 0;
  uint16_t lport = 0;
  struct sf_info inf;
  if (!listen_addr(fd, v6, &lip, &lport) || (lip != INADDR_ANY && IS_LOOPBACK(lip))) goto ordinary;
  if (sf_broker_info(&inf) != 0) {
    errno = saved;
    return 1;
  }
  if (lip != INADDR_ANY && lip != inf.vip) goto ordinary;
  /* read before the broker gets the socket: it may change the shared file status flags */
  int app_fl = REAL(fcntl)(fd, F_GETFL);
  struct sf_msg req, rep;
  memset(&req, 0, sizeof req);
  req.type = SF_LISTEN;
  req.vip_a = lip;
  req.port_a = lport;
  req.a = (uint64_t)(int64_t)backlog;
  int rfd;
  /* The broker makes the real listening socket non-blocking for its own accepts, and that file
     description is the app's: put the app's O_NONBLOCK from before the call back. */
  int called = sf_broker_call(&req, fd, &rep, &rfd);
  if (called != 0 || rep.type != SF_LISTEN_OK || rep.status < 0 || (rep.status == 0 && rfd < 0)) {
    if (rfd >= 0) REAL(close)(rfd);
    if (app_fl >= 0) REAL(fcntl)(fd, F_SETFL, app_fl);
    if (called != 0) {
      errno = saved;
      return 1;
    }
    SF_DEBUG("listen fd %d: ordinary listening socket", fd);
    goto ordinary;
  }
  if (rep.status > 0) {
    if (rfd >= 0) REAL(close)(rfd);
    forget(fd);
    errno = rep.status;
    return -1;
  }
  if ((rep.a & SF_LISTEN_STEERED) && steer_take(fd, rfd, e, app_fl, rep.vip_a ? rep.vip_a : lip,
                                                rep.port_a ? rep.port_a : lport) == 0) {
    REAL(close)(rfd);
    errno = saved;
    return 0;
  }
  int hidden = sf_hidden_dup(fd, fd);
  if (sf_swap_in(fd, rfd, e, 0, app_fl) != 0) {
    int err = errno;
    sf_hidden_close(hidden);
    errno = err;
    return -1;
  }
  if (app_fl >= 0) sf_fd_nonblock(fd, (app_fl & O_NONBLOCK) != 0);
  struct chan_arg a = {hidden, rep.vip_a, rep.port_a ? rep.port_a : lport, sf_fd_ino(fd)};
  if (!rep.vip_a && !rep.port_a) a.ip = lip;
  sf_tab_update(fd, upd_channel, &a);
  SF_DEBUG("listen fd %d: now a SlimFast listener channel (hidden %d%s)", fd, hidden,
           v6 ? ", AF_INET6 dual-stack" : "");
  errno = saved;
  return 0;
ordinary:
  forget(fd);
  errno = saved;
  return 2;
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
static int chan_take(int chan, const struct sf_entry *e, struct sockaddr *addr, socklen_t *alen,
                     int flags, int rflags, int *eof) {
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
  if (kind != SF_K_STEER && kind != SF_K_CHAN) kind = entry_of(fd, &e);
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
  if (sf_tab_get(fd, &now) && now.kind == SF_K_CHAN && now.ino == e.ino && channel_is_shut(&now)) {
    int first = 0;
    sf_tab_update(fd, upd_shut, &first);
    errno = EINVAL;
    return -1;
  }
  if (sf_channel_fallback(fd, NULL) != 0) return -1;
  goto again;
#undef PLAIN_ACCEPT
}

SF_EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *alen) {
  return do_accept(fd, addr, alen, 0, 0);
}
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
  if (k == SF_K_CHAN || k == SF_K_CAND || k == SF_K_STEER) k = entry_of(fd, &e); /* connections: no fstat */
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
  if (channel_is_shut(&e)) {
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
  for (;;) { /* connections queued but never accepted: closed, as the kernel resets them */
    struct sf_msg m;
    int x;
    if (sf_recv_fd(fd, &m, sizeof m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC, &x, NULL) <= 0) break;
    if (x >= 0) REAL(close)(x);
  }
  SF_DEBUG("listener fd %d: shut down", fd);
  errno = saved;
  return 0;
}

/* ---- addresses ---- */

SF_EXPORT int getsockname(int fd, struct sockaddr *addr, socklen_t *alen) {
  if (!sf_tab_has(fd) || !addr || !alen) return REAL(getsockname)(fd, addr, alen);
  int saved = errno;
  struct sf_entry e;
  int k = entry_of(fd, &e);
  errno = saved;
  if (k == SF_K_POOLED) { /* not connected yet: unbound, as the kernel would say */
    sf_fill_addr(addr, alen, 0, 0, 0);
    return 0;
  }
  if (k != SF_K_CONN && k != SF_K_CHAN && k != SF_K_STEER) return REAL(getsockname)(fd, addr, alen);
  sf_fill_addr(addr, alen, (e.flags & SF_F_V6) != 0, e.l_ip, e.l_port);
  return 0;
}

SF_EXPORT int getpeername(int fd, struct sockaddr *addr, socklen_t *alen) {
  if (!sf_tab_has(fd) || !addr || !alen) return REAL(getpeername)(fd, addr, alen);
  int saved = errno;
  struct sf_entry e;
  int k = entry_of(fd, &e);
  errno = saved;
  if (k == SF_K_CHAN || k == SF_K_STEER || k == SF_K_POOLED) {
    errno = ENOTCONN;
    return -1;
  }
  if (k != SF_K_CONN) return REAL(getpeername)(fd, addr, alen);
  sf_fill_addr(addr, alen, (e.flags & SF_F_V6) != 0, e.p_ip, e.p_port);
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
  int name4;
  if (level == IPPROTO_IPV6) return sf_v6_opt_v4(name, &name4); /* replayed as IP_TOS/IP_TTL */
  return level == IPPROTO_IP && name == IP_TOS;
}

struct opt_arg {
  struct sf_opt o;
};
static int upd_opt(struct sf_entry *e, int present, void *arg) {
  struct opt_arg *a = arg;
  if (!present || (e->kind != SF_K_SOCK && e->kind != SF_K_POOLED)) return SF_UPD_KEEP;
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
  if (k == SF_K_CHAN || k == SF_K_CAND || (k == SF_K_CONN && level == IPPROTO_IPV6))
    k = entry_of(fd, &e);
  errno = saved;
  if (k == SF_K_CONN && level == IPPROTO_IPV6 && (e.flags & SF_F_V6) && is_inet4(fd))
    return sf_v6_setsockopt(fd, name, val, len);
  if (k == SF_K_CHAN) {
    /* a listener's options belong to the real listening socket; a receive timeout also to the
       channel, where accept() waits */
    if (level == SOL_SOCKET && name == SO_RCVTIMEO) REAL(setsockopt)(fd, level, name, val, len);
    errno = saved;
    if (e.hidden_fd >= 0) return REAL(setsockopt)(e.hidden_fd, level, name, val, len);
    return 0;
  }
  if (k == SF_K_POOLED && level == IPPROTO_TCP && name == TCP_FASTOPEN_CONNECT) {
    /* The pooled socket already sends its first bytes in a Fast Open SYN (the kernel refuses the
       option after that deferred connect); an ordinary socket that replaces it connects without. */
    int v = -1;
    if (val && len >= (socklen_t)sizeof v) memcpy(&v, val, sizeof v);
    if (v == 0 || v == 1) return 0;
    errno = EINVAL;
    return -1;
  }
  int r = REAL(setsockopt)(fd, level, name, val, len);
  /* POOLED: recorded for the ordinary socket that may replace it */
  if (r == 0 && (k == SF_K_SOCK || k == SF_K_POOLED) && recordable(level, name, val, len)) {
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
  int k = sf_tab_get(fd, &e) ? e.kind : SF_K_NONE;
  /* only answers made up from the entry need it to be the right one (SO_ERROR after a
     non-blocking connect goes straight to the kernel) */
  if (k == SF_K_CHAN || k == SF_K_CAND || ((k == SF_K_CONN || k == SF_K_STEER) && (e.flags & SF_F_V6)))
    k = entry_of(fd, &e);
  errno = saved;
  if ((k == SF_K_CONN || k == SF_K_STEER) && (e.flags & SF_F_V6)) {
    /* an AF_INET6 app socket that is (maybe) an AF_INET host socket underneath */
    if (level == SOL_SOCKET && name == SO_DOMAIN) return put_int(val, len, AF_INET6);
    if (level == IPPROTO_IPV6 && is_inet4(fd)) return sf_v6_getsockopt(fd, name, val, len);
  }
  if (k != SF_K_CHAN) return REAL(getsockopt)(fd, level, name, val, len);
  if (level == SOL_SOCKET) {
    switch (name) {
      case SO_TYPE:
        return put_int(val, len, SOCK_STREAM);
      case SO_DOMAIN:
        return put_int(val, len, (e.flags & SF_F_V6) ? AF_INET6 : AF_INET);
      case SO_PROTOCOL:
        return put_int(val, len, IPPROTO_TCP);
      case SO_ACCEPTCONN:
        return put_int(val, len, !channel_is_shut(&e));
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
