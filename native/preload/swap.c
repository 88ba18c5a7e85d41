/* Putting a socket onto the application's fd number (its FD_CLOEXEC, O_NONBLOCK, recorded options
 * and epoll registrations carried over), claims that keep two threads from swapping one fd at once,
 * a pooled socket replaced by an ordinary one, and our hidden fds (a listener's real socket or
 * channel, dup'ed high, CLOEXEC, invisible to the app). */
#include "sf.h"

#include <fcntl.h>
#include <string.h>

void sf_fill_addr(struct sockaddr *addr, socklen_t *len, int v6, uint32_t ip, uint16_t port) {
  if (!addr || !len) return;
  union {
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
  } u;
  socklen_t full;
  memset(&u, 0, sizeof u);
  if (v6) {
    u.sin6.sin6_family = AF_INET6;
    u.sin6.sin6_port = port;
    if (ip) { /* ::ffff:a.b.c.d; 0 stays :: (a listener bound to the unspecified address) */
      u.sin6.sin6_addr.s6_addr[10] = 0xff;
      u.sin6.sin6_addr.s6_addr[11] = 0xff;
      memcpy(&u.sin6.sin6_addr.s6_addr[12], &ip, 4);
    }
    full = sizeof u.sin6;
  } else {
    u.sin.sin_family = AF_INET;
    u.sin.sin_addr.s_addr = ip;
    u.sin.sin_port = port;
    full = sizeof u.sin;
  }
  socklen_t n = *len < full ? *len : full;
  memcpy(addr, &u, n); /* truncated like the kernel does */
  *len = full;
}

int sf_hidden_dup(int fd, int owner) {
  int h = sf_fd_dup_high(fd);
  if (h >= 0) sf_tab_mark_internal(h, owner);
  return h;
}

void sf_hidden_close(int hfd) {
  if (hfd < 0) return;
  sf_tab_drop(hfd);
  REAL(close)(hfd);
}

void sf_entry_release(const struct sf_entry *e) {
  if (SF_HAS_HIDDEN(e)) sf_hidden_close(e->hidden_fd);
  if (e->kind == SF_K_POOLED && e->tk.pool) { /* closed (or replaced) before it connected */
    struct sf_ticket t = e->tk;
    sf_pool_settle(&t, SF_TK_GONE);
  }
}

void sf_forget(int fd) {
  struct sf_entry old;
  if (sf_tab_del(fd, &old) == 1) sf_entry_release(&old);
}

struct chown_arg {
  int old_h, new_h;
};
static int upd_hidden(struct sf_entry *e, int present, void *arg) {
  struct chown_arg *a = arg;
  if (!present || !SF_HAS_HIDDEN(e) || e->hidden_fd != a->old_h) return SF_UPD_KEEP;
  e->hidden_fd = a->new_h;
  return SF_UPD_STORE;
}

void sf_internal_relocate(int fd) {
  if (sf_broker_is_fd(fd)) {
    sf_broker_relocate(fd);
    return;
  }
  if (sf_pool_is_fd(fd)) {
    sf_pool_relocate(fd);
    return;
  }
  struct sf_entry e;
  if (!sf_tab_get(fd, &e) || e.kind != SF_K_INTERNAL || e.hidden_fd < 0) return;
  int owner = e.hidden_fd;
  int n = sf_hidden_dup(fd, owner);
  if (n < 0) return;
  struct chown_arg a = {fd, n};
  if (sf_tab_update(owner, upd_hidden, &a) != SF_UPD_STORE) sf_hidden_close(n); /* unused */
  sf_hidden_close(fd);
}

static void replay_opts(int fd, const struct sf_entry *e) {
  int dom = -1;
  for (int i = 0; i < e->nopts; i++) {
    const struct sf_opt *o = &e->opts[i];
    int level = o->level, name = o->name;
    if (level == IPPROTO_IPV6) { /* recorded on an AF_INET6 socket; fd may be an AF_INET one */
      if (dom < 0) {
        socklen_t l = sizeof dom;
        if (REAL(getsockopt)(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l) != 0) dom = 0;
      }
      if (dom == AF_INET) {
        if (sf_v6_setsockopt(fd, name, o->val, o->len) != 0)
          SF_DEBUG("replaying IPv6 option %d on fd %d failed: %s", name, fd, strerror(errno));
        continue;
      }
    }
    if (REAL(setsockopt)(fd, level, name, o->val, o->len) != 0)
      SF_DEBUG("replaying option %d/%d on fd %d failed: %s", level, name, fd, strerror(errno));
  }
}

/* 1 if the epoll instance recorded as (epfd, gen) is still the one at epfd (epoll.c numbers them). */
static int epoll_same(int epfd, uint64_t gen) {
  if (gen == 0) return 1;
  struct sf_entry e;
  return sf_tab_get(epfd, &e) && e.kind == SF_K_EPOLL && e.gen == gen;
}

int sf_swap_in(int fd, int newfd, const struct sf_entry *e, int replay, int fl) {
  if (fl < 0) fl = REAL(fcntl)(fd, F_GETFL);
  int fdfl = REAL(fcntl)(fd, F_GETFD);
  if (fl < 0 || fdfl < 0) {
    REAL(close)(newfd);
    errno = EBADF;
    return -1;
  }
  if (replay) replay_opts(newfd, e);
  for (int i = 0; i < e->neps; i++) {
    struct epoll_event ev = {0, {0}};
    REAL(epoll_ctl)(e->eps[i].epfd, EPOLL_CTL_DEL, fd, &ev); /* also drops a stale key */
  }
  if (REAL(dup3)(newfd, fd, (fdfl & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0) {
    int err = errno;
    REAL(close)(newfd);
    errno = err;
    return -1;
  }
  REAL(close)(newfd);
  int nf = REAL(fcntl)(fd, F_GETFL);
  if (nf >= 0) {
    int want = (nf & ~O_NONBLOCK) | (fl & O_NONBLOCK);
    if (want != nf) REAL(fcntl)(fd, F_SETFL, want);
  }
  for (int i = 0; i < e->neps; i++) {
    const struct sf_ep *p = &e->eps[i];
    if (!epoll_same(p->epfd, p->gen)) continue; /* closed since, maybe reused */
    struct epoll_event ev;
    ev.events = p->events;
    ev.data.u64 = p->data;
    if (REAL(epoll_ctl)(p->epfd, EPOLL_CTL_ADD, fd, &ev) != 0 && errno != EBADF && errno != ENOENT)
      SF_DEBUG("re-adding fd %d to epoll %d failed: %s", fd, p->epfd, strerror(errno));
  }
  return 0;
}

struct claim_arg {
  int kind, result;
  const uint64_t *ino;
  struct sf_entry *out;
};
static int upd_claim(struct sf_entry *e, int present, void *arg) {
  struct claim_arg *a = arg;
  if (!present || e->kind != a->kind || (a->ino && e->ino != *a->ino)) return SF_UPD_KEEP;
  if (e->flags & SF_F_SWAPPING) {
    a->result = -1;
    return SF_UPD_KEEP;
  }
  e->flags |= SF_F_SWAPPING;
  if (a->out) *a->out = *e;
  a->result = 1;
  return SF_UPD_STORE;
}

int sf_claim(int fd, int kind, const uint64_t *ino, struct sf_entry *out) {
  struct claim_arg a = {kind, 0, ino, out};
  sf_tab_update(fd, upd_claim, &a);
  return a.result;
}

static int upd_unclaim(struct sf_entry *e, int present, void *arg) {
  int kind = *(const int *)arg;
  if (!present || (kind != SF_K_NONE && e->kind != kind)) return SF_UPD_KEEP;
  e->flags &= (uint8_t)~SF_F_SWAPPING;
  return SF_UPD_STORE;
}

void sf_unclaim(int fd, int kind) { sf_tab_update(fd, upd_unclaim, &kind); }

int sf_unpool_claimed(int fd, struct sf_entry *e, int how) {
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

/* fd, if it is a POOLED socket, becomes an ordinary one (see sf_unpool_claimed). 0 when it is not
   POOLED (or no longer: another thread got there first) or was replaced; -1 when that failed (errno). */
static int unpool_if_pooled(int fd, int how) {
  struct sf_entry e;
  if (!sf_tab_has(fd) || !sf_tab_get(fd, &e) || e.kind != SF_K_POOLED) return 0;
  if (sf_claim(fd, SF_K_POOLED, NULL, &e) != 1) return 0;
  return sf_unpool_claimed(fd, &e, how);
}

int sf_unpool(int fd) {
  int saved = errno;
  int r = unpool_if_pooled(fd, SF_TK_GONE);
  if (r == 0) errno = saved;
  return r;
}
