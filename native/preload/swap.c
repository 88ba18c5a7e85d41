/* Putting a socket onto the application's fd number, and our hidden fds. */
#include "sf.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

void sf_fill_addr(struct sockaddr *addr, socklen_t *len, uint32_t ip, uint16_t port) {
  if (!addr || !len) return;
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = ip;
  sin.sin_port = port;
  socklen_t n = *len < (socklen_t)sizeof sin ? *len : (socklen_t)sizeof sin;
  memcpy(addr, &sin, n); /* truncated like the kernel does */
  *len = sizeof sin;
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
  if (e->kind == SF_K_CHAN && e->hidden_fd >= 0) sf_hidden_close(e->hidden_fd);
}

struct chown_arg {
  int old_h, new_h;
};
static int upd_hidden(struct sf_entry *e, int present, void *arg) {
  struct chown_arg *a = arg;
  if (!present || e->kind != SF_K_CHAN || e->hidden_fd != a->old_h) return SF_UPD_KEEP;
  e->hidden_fd = a->new_h;
  return SF_UPD_STORE;
}

void sf_internal_relocate(int fd) {
  if (sf_broker_is_fd(fd)) {
    sf_broker_relocate(fd);
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
  for (int i = 0; i < e->nopts; i++) {
    const struct sf_opt *o = &e->opts[i];
    if (REAL(setsockopt)(fd, o->level, o->name, o->val, o->len) != 0)
      SF_DEBUG("replaying option %d/%d on fd %d failed: %s", o->level, o->name, fd,
               strerror(errno));
  }
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
    if (!sf_epoll_same(p->epfd, p->gen)) continue; /* closed since, maybe reused */
    struct epoll_event ev;
    ev.events = p->events;
    ev.data.u64 = p->data;
    if (REAL(epoll_ctl)(p->epfd, EPOLL_CTL_ADD, fd, &ev) != 0 && errno != EBADF &&
        errno != ENOENT)
      SF_DEBUG("re-adding fd %d to epoll %d failed: %s", fd, p->epfd, strerror(errno));
  }
  return 0;
}
