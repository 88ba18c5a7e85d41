/* The listener machinery under listen(), accept() and the watcher: a listening socket handed to the
 * broker (a listener channel on the app's fd, its real socket hidden behind it; or a kernel-steered
 * host socket with the channel hidden behind that), the real socket put back when the broker is
 * gone or the app listens again after shutdown(), a fresh listening socket on a virtual address.
 * The interposed calls are in accept.c; relisten.c registers orphans again with a new broker. */
#include "sf.h"

#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

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

int sf_unsteer(int fd, struct sf_entry *e, int kind, int wait_ms) {
  int s;
  for (int i = 0; (s = sf_relisten(e)) < 0 && errno == EADDRINUSE && i < wait_ms; i++) usleep(1000);
  if (s < 0 || sf_swap_in(fd, s, e, 0, -1) != 0) return -1; /* sf_swap_in closed s */
  e->kind = (uint8_t)kind;
  e->hidden_fd = -1;
  e->nopts = 0;
  e->flags &= (uint8_t)(SF_F_NONBLOCK | SF_F_CLOEXEC | SF_F_V6 | SF_F_EPLOST);
  e->ino = sf_fd_ino(fd);
  /* the channel the table holds now, which a concurrent relocation may have moved */
  struct sf_entry old;
  if (sf_tab_set(fd, e, &old) == 1 && SF_HAS_HIDDEN(&old)) sf_hidden_close(old.hidden_fd);
  return 0;
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

int sf_channel_is_shut(const struct sf_entry *e) {
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
  if (v6) return ss.ss_family == AF_INET6 && sf_v6_to_v4((struct sockaddr *)&ss, sl, ip, port) && !sf_v6only(fd);
  if (ss.ss_family != AF_INET) return 0;
  const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
  *ip = sin->sin_addr.s_addr;
  *port = sin->sin_port;
  return 1;
}

int sf_listen_register(int fd, struct sf_entry *e, int backlog) {
  int saved = errno;
  int v6 = (e->flags & SF_F_V6) != 0;
  uint32_t lip = 0;
  uint16_t lport = 0;
  struct sf_info inf;
  if (!listen_addr(fd, v6, &lip, &lport) || (lip != INADDR_ANY && SF_IS_LOOPBACK(lip))) goto ordinary;
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
    sf_forget(fd);
    errno = rep.status;
    return -1;
  }
  if ((rep.a & SF_LISTEN_STEERED) &&
      steer_take(fd, rfd, e, app_fl, rep.vip_a ? rep.vip_a : lip, rep.port_a ? rep.port_a : lport) == 0) {
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
  sf_forget(fd);
  errno = saved;
  return 2;
}
