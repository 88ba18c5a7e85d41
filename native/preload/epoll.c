/* epoll bookkeeping: for tracked sockets and channels remember (epfd, events, data) per ADD/MOD,
 * forget on DEL, so that a swap can re-register the new socket in the same sets. Epoll instances
 * get a generation number so that a registration is never replayed into an unrelated epoll
 * instance that reused a closed epfd's number (swap.c checks it before replaying). */
#include "sf.h"

#include <string.h>

static uint64_t gen_counter;

static int track_epoll(int fd) {
  if (fd < 0 || !sf_conf.enabled) return fd;
  int saved = errno;
  struct sf_entry e, old;
  memset(&e, 0, sizeof e);
  e.kind = SF_K_EPOLL;
  e.hidden_fd = -1;
  e.gen = __atomic_add_fetch(&gen_counter, 1, __ATOMIC_RELAXED);
  if (sf_tab_set(fd, &e, &old) == 1) sf_entry_release(&old);
  errno = saved;
  return fd;
}

SF_EXPORT int epoll_create(int size) { return track_epoll(REAL(epoll_create)(size)); }
SF_EXPORT int epoll_create1(int flags) { return track_epoll(REAL(epoll_create1)(flags)); }

struct ep_arg {
  int op;
  struct sf_ep ep;
};

static int upd_ep(struct sf_entry *e, int present, void *arg) {
  struct ep_arg *a = arg;
  if (!present || (e->kind != SF_K_SOCK && e->kind != SF_K_POOLED && e->kind != SF_K_CHAN && e->kind != SF_K_STEER &&
                   e->kind != SF_K_ORPHAN))
    return SF_UPD_KEEP;
  int i;
  for (i = 0; i < e->neps; i++)
    if (e->eps[i].epfd == a->ep.epfd) break;
  if (a->op == EPOLL_CTL_DEL) {
    if (i == e->neps) return SF_UPD_KEEP;
    e->eps[i] = e->eps[--e->neps];
    return SF_UPD_STORE;
  }
  if (i == e->neps) {
    if (e->neps == SF_MAX_EPS) {
      e->flags |= SF_F_EPLOST;
      return SF_UPD_STORE;
    }
    e->neps++;
  }
  e->eps[i] = a->ep;
  return SF_UPD_STORE;
}

SF_EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev) {
  if (!sf_tab_has(fd)) return REAL(epoll_ctl)(epfd, op, fd, ev);
  struct sf_entry e;
  if (!sf_tab_get(fd, &e)) return REAL(epoll_ctl)(epfd, op, fd, ev);
  if (e.kind == SF_K_CAND) e.kind = (uint8_t)sf_adopt(fd);
  int r = REAL(epoll_ctl)(epfd, op, fd, ev);
  if (r != 0 || (e.kind != SF_K_SOCK && e.kind != SF_K_POOLED && e.kind != SF_K_CHAN && e.kind != SF_K_STEER &&
                 e.kind != SF_K_ORPHAN))
    return r;
  if (e.kind != SF_K_SOCK && e.kind != SF_K_POOLED)
    sf_watch_ensure(); /* a listener: e.g. a worker forked after listen() */
  if (op != EPOLL_CTL_ADD && op != EPOLL_CTL_MOD && op != EPOLL_CTL_DEL) return r;
  int saved = errno;
  struct ep_arg a;
  memset(&a, 0, sizeof a);
  a.op = op;
  a.ep.epfd = epfd;
  if (ev && op != EPOLL_CTL_DEL) {
    a.ep.events = ev->events;
    a.ep.data = ev->data.u64;
  }
  struct sf_entry pe;
  if (op != EPOLL_CTL_DEL && sf_tab_get(epfd, &pe) && pe.kind == SF_K_EPOLL) a.ep.gen = pe.gen;
  sf_tab_update(fd, upd_ep, &a);
  if (SF_UNLIKELY(sf_conf.debug) && op == EPOLL_CTL_ADD)
    SF_DEBUG("fd %d added to epoll %d (events 0x%x)", fd, epfd, a.ep.events);
  errno = saved;
  return r;
}
