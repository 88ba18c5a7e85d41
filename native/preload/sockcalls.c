/* socket/bind/connect. AF_INET6 sockets take part when what they do is IPv4 underneath (inet6.c):
 * a connect to ::ffff:<overlay address> (listeners: accept.c). socket() may hand out a pooled host
 * socket (pool.c) that connect() to a destination its pool covers only sends the header for. */
#include "sf.h"

#include <fcntl.h>
#include <string.h>

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
  e.flags = (uint8_t)(((type & SOCK_NONBLOCK) ? SF_F_NONBLOCK : 0) | ((type & SOCK_CLOEXEC) ? SF_F_CLOEXEC : 0) |
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
  if (!(type & SOCK_NONBLOCK) != !e.tk.nonblock &&
      REAL(fcntl)(fd, F_SETFL, (type & SOCK_NONBLOCK) ? O_NONBLOCK : 0) != 0) {
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
  if (sf_unpool_claimed(fd, e, SF_TK_MISSED) != 0) return -1;
  errno = saved;
  return 2;
}

static int plain_connect(int fd, const struct sockaddr *addr, socklen_t len, int saved) {
  sf_forget(fd); /* from now on an ordinary socket */
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
      if (sf_tab_get(fd, &e) && e.kind == SF_K_SOCK) sf_forget(fd);
      errno = saved;
    }
    return REAL(connect)(fd, addr, len);
  }
  int saved = errno;
  if (kind == SF_K_POOLED) {
    int r = pooled_connect(fd, &e, v6, ip, port);
    if (r != 2) return r;
  }
  if (sf_entry_of(fd, &e) != SF_K_SOCK || !(e.flags & SF_F_V6) != !v6) {
    errno = saved;
    return REAL(connect)(fd, addr, len); /* wrong family for the socket: the kernel says so */
  }
  if (ip == INADDR_ANY || SF_IS_LOOPBACK(ip) || IN_MULTICAST(ntohl(ip)) || ip == INADDR_BROADCAST ||
      (v6 && sf_v6only(fd)))
    return plain_connect(fd, addr, len, saved);
  struct sf_info inf;
  if (sf_broker_info(&inf) != 0 || (ip & inf.mask) != inf.net) return plain_connect(fd, addr, len, saved);

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
