/* Listener channels inherited across exec, and the entry of an fd as the app's socket calls see it.
 *
 * A new image starts with an empty table. Inherited AF_UNIX/SEQPACKET fds (and TCP listeners) may be
 * SlimFast listeners of the process before exec: the constructor marks them as candidates
 * (SF_K_CAND), and the first call that uses one asks the broker what it is (SF_QUERY_CHANNEL). */
#include "sf.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static void mark_candidate(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return;
  int dom = 0, type = 0;
  socklen_t l1 = sizeof dom, l2 = sizeof type;
  if (REAL(getsockopt)(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l1) != 0 ||
      REAL(getsockopt)(fd, SOL_SOCKET, SO_TYPE, &type, &l2) != 0)
    return;
  int listening = 0;
  socklen_t l3 = sizeof listening;
  /* a listener channel, or a TCP listener that may be a steered one */
  if (!(dom == AF_UNIX && type == SOCK_SEQPACKET) &&
      !(dom == AF_INET && type == SOCK_STREAM &&
        REAL(getsockopt)(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l3) == 0 && listening))
    return;
  struct sf_entry e;
  memset(&e, 0, sizeof e);
  e.kind = SF_K_CAND;
  e.hidden_fd = -1;
  e.ino = (uint64_t)st.st_ino;
  sf_tab_set(fd, &e, NULL);
  SF_DEBUG("fd %d: inherited %s, may be SlimFast's", fd, dom == AF_UNIX ? "unix seqpacket socket" : "TCP listener");
}

void sf_scan_inherited(void) {
  int dfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    for (int fd = 0; fd < 1024; fd++) mark_candidate(fd);
    return;
  }
  char buf[4096];
  for (;;) {
    long n = syscall(SYS_getdents64, dfd, buf, sizeof buf);
    if (n <= 0) break;
    for (long off = 0; off < n;) {
      struct dirent64 *d = (struct dirent64 *)(buf + off);
      off += d->d_reclen;
      if (d->d_name[0] < '0' || d->d_name[0] > '9') continue;
      int fd = 0;
      for (const char *p = d->d_name; *p >= '0' && *p <= '9'; p++) fd = fd * 10 + (*p - '0');
      if (fd != dfd) mark_candidate(fd);
    }
  }
  REAL(close)(dfd);
}

int sf_adopt(int fd) {
  int saved = errno;
  struct sf_entry e;
  if (!sf_tab_get(fd, &e)) return SF_K_NONE;
  if (e.kind != SF_K_CAND) return e.kind;
  if (sf_fd_ino(fd) != e.ino) {
    sf_tab_del(fd, NULL);
    errno = saved;
    return SF_K_NONE;
  }
  struct sf_msg req, rep;
  memset(&req, 0, sizeof req);
  req.type = SF_QUERY_CHANNEL;
  req.a = e.ino;
  int rfd;
  if (sf_broker_call(&req, -1, &rep, &rfd) != 0) {
    errno = saved;
    return SF_K_CAND; /* unknown: ask again later */
  }
  e.hidden_fd = -1;
  if (rep.type == SF_CHANNEL_INFO && rep.status == 0 && (rep.a & SF_LISTEN_STEERED) && rfd >= 0) {
    /* a steered host listener; the broker attached a channel for what it still hands over */
    e.kind = SF_K_STEER;
    e.hidden_fd = sf_hidden_dup(rfd, fd);
    e.l_ip = rep.vip_a;
    e.l_port = rep.port_a;
    SF_DEBUG("fd %d: adopted as a steered listener", fd);
  } else if (rep.type == SF_CHANNEL_INFO && rep.status == 0 && !(rep.a & SF_LISTEN_STEERED)) {
    e.kind = SF_K_CHAN;
    e.l_ip = rep.vip_a;
    e.l_port = rep.port_a;
    SF_DEBUG("fd %d: adopted as a listener channel", fd);
  } else {
    e.kind = SF_K_NOTCHAN;
  }
  if (rfd >= 0) REAL(close)(rfd);
  sf_tab_set(fd, &e, NULL);
  errno = saved;
  return e.kind;
}

int sf_entry_of(int fd, struct sf_entry *e) {
  if (!sf_tab_get(fd, e)) return SF_K_NONE;
  if (e->kind == SF_K_CAND) {
    sf_adopt(fd);
    if (!sf_tab_get(fd, e)) return SF_K_NONE;
  }
  if ((e->kind == SF_K_SOCK || e->kind == SF_K_CONN || e->kind == SF_K_CHAN || e->kind == SF_K_STEER ||
       e->kind == SF_K_ORPHAN) &&
      e->ino && sf_fd_ino(fd) != e->ino) {
    SF_DEBUG("fd %d: stale entry dropped", fd);
    sf_forget(fd);
    return SF_K_NONE;
  }
  return e->kind;
}
