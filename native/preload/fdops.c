/* dup/dup2/dup3/fcntl(F_DUPFD*)/close/close_range/closefrom/fclose: keep the table in step with
 * the kernel's fd table. fcntl(F_SETFL) and ioctl(FIONBIO) keep SF_F_NONBLOCK, so that a pooled
 * socket's connect() knows whether to say EINPROGRESS without asking the kernel (a swap still
 * reads the flags from the kernel: another process sharing the file may have changed them). */
#include "sf.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <string.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* fd number n was just handed out by the kernel: an entry there is stale. */
static void drop_stale(int n) {
  if (!sf_tab_has(n)) return;
  struct sf_entry old;
  if (sf_tab_del(n, &old) == 1) sf_entry_release(&old);
}

/* newfd now refers to oldfd's open file description: give it a copy of oldfd's entry. (A POOLED
   socket was made an ordinary one before the dup: see before_dup.) */
static void copy_entry(int oldfd, int newfd) {
  drop_stale(newfd);
  struct sf_entry e;
  if (!sf_tab_has(oldfd) || !sf_tab_get(oldfd, &e) || e.kind == SF_K_INTERNAL) return;
  e.neps = 0; /* epoll registrations are per fd number */
  e.flags &= (uint8_t) ~(SF_F_EPLOST | SF_F_SWAPPING);
  if (SF_HAS_HIDDEN(&e)) e.hidden_fd = sf_hidden_dup(e.hidden_fd, newfd);
  struct sf_entry old;
  if (sf_tab_set(newfd, &e, &old) == 1) sf_entry_release(&old);
}

/* Two fds on one pooled socket could each send its header: the socket becomes an ordinary one
   first (as a connect() elsewhere would make it), so that both fds share that. */
static int before_dup(int oldfd) { return sf_tab_has(oldfd) && sf_table_owner() ? sf_unpool(oldfd) : 0; }

SF_EXPORT int dup(int fd) {
  if (sf_conf.enabled && before_dup(fd) != 0) return -1;
  int n = REAL(dup)(fd);
  if (n >= 0 && sf_conf.enabled && sf_table_owner()) {
    int saved = errno;
    copy_entry(fd, n);
    errno = saved;
  }
  return n;
}

static void protect_target(int newfd) {
  struct sf_entry e;
  if (sf_tab_has(newfd) && sf_tab_get(newfd, &e) && e.kind == SF_K_INTERNAL) sf_internal_relocate(newfd);
}

SF_EXPORT int dup2(int oldfd, int newfd) {
  if (oldfd == newfd || !sf_conf.enabled || !sf_table_owner()) return REAL(dup2)(oldfd, newfd);
  if (before_dup(oldfd) != 0) return -1;
  int saved = errno;
  protect_target(newfd);
  errno = saved;
  int n = REAL(dup2)(oldfd, newfd);
  if (n >= 0) {
    copy_entry(oldfd, n);
    errno = saved;
  }
  return n;
}

SF_EXPORT int dup3(int oldfd, int newfd, int flags) {
  if (oldfd == newfd || !sf_conf.enabled || !sf_table_owner()) return REAL(dup3)(oldfd, newfd, flags);
  if (before_dup(oldfd) != 0) return -1;
  int saved = errno;
  protect_target(newfd);
  errno = saved;
  int n = REAL(dup3)(oldfd, newfd, flags);
  if (n >= 0) {
    copy_entry(oldfd, n);
    errno = saved;
  }
  return n;
}

static int upd_nonblock(struct sf_entry *e, int present, void *arg) {
  int on = *(const int *)arg;
  if (!present || e->kind == SF_K_INTERNAL || e->kind == SF_K_EPOLL) return SF_UPD_KEEP;
  uint8_t f = (uint8_t)(on ? (e->flags | SF_F_NONBLOCK) : (e->flags & ~SF_F_NONBLOCK));
  if (f == e->flags) return SF_UPD_KEEP;
  e->flags = f;
  return SF_UPD_STORE;
}

static void note_nonblock(int fd, int on) {
  int saved = errno;
  sf_tab_update(fd, upd_nonblock, &on);
  errno = saved;
}

SF_EXPORT int ioctl(int fd, unsigned long req, ...) {
  va_list ap;
  va_start(ap, req);
  void *arg = va_arg(ap, void *);
  va_end(ap);
  int r = REAL(ioctl)(fd, req, arg);
  if (r == 0 && req == FIONBIO && arg && sf_tab_has(fd)) note_nonblock(fd, *(const int *)arg != 0);
  return r;
}

static int do_fcntl(int (*real)(int, int, ...), int fd, int cmd, void *arg) {
  if ((cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && sf_conf.enabled && before_dup(fd) != 0) return -1;
  int r = real(fd, cmd, arg);
  if (r >= 0 && cmd == F_SETFL && sf_tab_has(fd)) note_nonblock(fd, ((int)(intptr_t)arg & O_NONBLOCK) != 0);
  if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && sf_conf.enabled && sf_table_owner()) {
    int saved = errno;
    copy_entry(fd, r);
    errno = saved;
  }
  return r;
}

SF_EXPORT int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void *arg = va_arg(ap, void *);
  va_end(ap);
  return do_fcntl(REAL(fcntl), fd, cmd, arg);
}

SF_EXPORT int fcntl64(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  void *arg = va_arg(ap, void *);
  va_end(ap);
  return do_fcntl(REAL(fcntl64), fd, cmd, arg);
}

/* close(fd) done by real_close(arg): the entry goes first (so the number cannot be handed out
   again while it is still there), then the fd, then the broker hears of a closed listener. */
static int close_tracked(int fd, int (*real_close)(void *), void *arg) {
  struct sf_entry old;
  int r = sf_tab_del(fd, &old);
  if (r == 2) { /* one of ours: to the application that number is not open */
    errno = EBADF;
    return -1;
  }
  if (r != 1) return real_close(arg);
  int saved = errno;
  /* A listener: its channel is fd itself (CHAN) or the hidden fd (STEER). */
  uint64_t chan_ino = old.kind == SF_K_CHAN ? old.ino : old.kind == SF_K_STEER ? sf_fd_ino(old.hidden_fd) : 0;
  sf_entry_release(&old);
  int rc = real_close(arg);
  int err = errno;
  if (chan_ino) sf_broker_listen_closed(chan_ino);
  errno = rc == 0 ? saved : err;
  return rc;
}

static int close_fd_arg(void *arg) { return REAL(close)(*(int *)arg); }
static int fclose_arg(void *arg) { return REAL(fclose)(arg); }

SF_EXPORT int close(int fd) {
  if (!sf_tab_has(fd) || !sf_table_owner()) return REAL(close)(fd);
  return close_tracked(fd, close_fd_arg, &fd);
}

/* fclose() of a stream over a socket (fdopen) closes the fd inside libc, where close() is not ours. */
SF_EXPORT int fclose(FILE *f) {
  int fd = f && sf_conf.enabled && sf_table_owner() ? fileno(f) : -1;
  struct sf_entry e;
  if (fd < 0 || !sf_tab_has(fd) || (sf_tab_get(fd, &e) && e.kind == SF_K_INTERNAL)) return REAL(fclose)(f);
  return close_tracked(fd, fclose_arg, f);
}

/* ---- close_range: clear the entries, keep our own fds open ---- */

struct fdlist {
  int *v;
  int n, cap, oom;
};
static void push(struct fdlist *l, int fd) {
  if (l->n == l->cap) {
    int cap = l->cap ? l->cap * 2 : 16;
    int *v = realloc(l->v, (size_t)cap * sizeof(int));
    if (!v) {
      l->oom = 1;
      return;
    }
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = fd;
}

struct range_arg {
  struct fdlist keep, hidden;
};
static int range_cb(int fd, const struct sf_entry *e, void *arg) {
  struct range_arg *a = arg;
  if (e->kind == SF_K_INTERNAL) {
    push(&a->keep, fd);
    return 0;
  }
  if (SF_HAS_HIDDEN(e)) push(&a->hidden, e->hidden_fd);
  return 1;
}
static int cmp_int(const void *x, const void *y) {
  int a = *(const int *)x, b = *(const int *)y;
  return (a > b) - (a < b);
}

SF_EXPORT int close_range(unsigned first, unsigned last, int flags) {
  if (!sf_conf.enabled || (flags & CLOSE_RANGE_CLOEXEC) || first > last || !sf_table_owner())
    return REAL(close_range)(first, last, flags); /* CLOEXEC only marks: entries stay */
  int saved = errno;
  struct range_arg a;
  memset(&a, 0, sizeof a);
  sf_tab_scan(first, last, range_cb, &a);
  for (int i = 0; i < a.hidden.n; i++) {
    int h = a.hidden.v[i];
    sf_hidden_close(h);
    for (int j = 0; j < a.keep.n; j++)
      if (a.keep.v[j] == h) a.keep.v[j] = -1;
  }
  int r = 0, err = 0;
  if (a.keep.oom) {
    r = REAL(close_range)(first, last, flags);
    err = errno;
  } else {
    /* nothing kept: keep.v is still NULL, which qsort must not be given even for 0 elements */
    if (a.keep.n > 1) qsort(a.keep.v, (size_t)a.keep.n, sizeof(int), cmp_int);
    unsigned lo = first;
    for (int i = 0; i < a.keep.n; i++) {
      if (a.keep.v[i] < 0 || (unsigned)a.keep.v[i] < lo) continue;
      unsigned k = (unsigned)a.keep.v[i];
      if (k > lo && REAL(close_range)(lo, k - 1, flags) != 0 && !err) {
        r = -1;
        err = errno;
      }
      lo = k + 1;
    }
    if (lo <= last && lo != 0 && REAL(close_range)(lo, last, flags) != 0 && !err) {
      r = -1;
      err = errno;
    }
  }
  free(a.keep.v);
  free(a.hidden.v);
  errno = r ? err : saved;
  return r;
}

SF_EXPORT void closefrom(int lowfd) {
  if (lowfd < 0) lowfd = 0;
  int saved = errno;
  if (close_range((unsigned)lowfd, ~0U, 0) == 0 || !REAL(closefrom)) {
    errno = saved;
    return;
  }
  REAL(closefrom)(lowfd);
  errno = saved;
}
