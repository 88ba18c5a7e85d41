/* getsockname/getpeername/setsockopt/getsockopt: what the app reads of a socket SlimFast serves is
 * its virtual side (addresses, a listener channel's options answered as a TCP listener's, an AF_INET
 * host socket's IPv6 options emulated); options set before connect() are recorded for the socket
 * that replaces it (swap.c). */
#include "sf.h"

#include <netinet/tcp.h>
#include <string.h>

/* The kernel's family of fd is AF_INET (a host socket under an app's AF_INET6 socket). */
static int is_inet4(int fd) {
  int d = 0;
  socklen_t l = sizeof d;
  return REAL(getsockopt)(fd, SOL_SOCKET, SO_DOMAIN, &d, &l) == 0 && d == AF_INET;
}

/* ---- addresses ---- */

SF_EXPORT int getsockname(int fd, struct sockaddr *addr, socklen_t *alen) {
  if (!sf_tab_has(fd) || !addr || !alen) return REAL(getsockname)(fd, addr, alen);
  int saved = errno;
  struct sf_entry e;
  int k = sf_entry_of(fd, &e);
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
  int k = sf_entry_of(fd, &e);
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
  if (k == SF_K_CHAN || k == SF_K_CAND || (k == SF_K_CONN && level == IPPROTO_IPV6)) k = sf_entry_of(fd, &e);
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
    k = sf_entry_of(fd, &e);
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
        return put_int(val, len, !sf_channel_is_shut(&e));
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
