// slimfast-seccomp-keeper: keeps containers' seccomp notify fds across broker restarts.
//
//   slimfast-seccomp-keeper RUNC_SOCKET BROKER_SOCKET [--foreground] [--log FILE]
//
// RUNC_SOCKET is runc's linux.seccomp.listenerPath (STATE_DIR/seccomp.sock); BROKER_SOCKET
// (STATE_DIR/seccomp-keeper.sock) is where the broker attaches. The protocol and why this exists:
// native/include/slimfast_keeper.h. One keeper per state dir (a lock on BROKER_SOCKET.lock); a
// second start finds it and exits 0. Without --foreground the program returns once it serves, the
// keeper running on in its own session. It exits by itself once no broker has been attached, no
// container has used it and it holds no confinement guard for IDLE_EXIT_MS, or at once when its
// state dir (BROKER_SOCKET's directory) is removed.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../common/fdpass.h"
#include "../include/slimfast_keeper.h"
#include "../include/slimfast_wire.h"

#define IDLE_EXIT_MS 10000
#define RUNC_TIMEOUT_MS 5000
#define TICK_MS 200
#define MAX_TARGETS 4096
#define MAX_RUNC 64

enum { K_RUNC_LISTEN = 1, K_BROKER_LISTEN, K_BROKER, K_RUNC, K_NOTIFY, K_HELD };

struct target {
  int nfd;  // -1: free
  uint32_t idx;
  char *state;
  size_t state_len;
};

struct steered {  // a steered listener's record (see SFK_STEERED)
  int real_fd;    // -1: free
  struct sfk_msg m;
};

struct held {  // an accept() on a steered listener, answered when a connection comes
  int used;
  uint32_t idx;
  unsigned char notif[SFK_NOTIF_MAX];
  int lfd, rfd;  // copies of the program's steered socket and of the container-side one (or -1)
  int v6;        // an AF_INET6 (dual-stack) listener: the peer as ::ffff:a.b.c.d
};

struct runc_conn {
  int fd;  // -1: free
  char *buf;
  size_t len;
  int fds[4];
  int nfds;
  int64_t deadline;
};

static int ep = -1, runc_listen = -1, broker_listen = -1, broker = -1;
static int mem_fd = -1;
static struct sfk_slot *slots;
static struct target targets[MAX_TARGETS];
static struct steered *steer;
static size_t nsteer;
static struct held *held;
static size_t nheld;
static struct runc_conn runcs[MAX_RUNC];
static uint32_t next_idx = 1;
static size_t notif_size = sizeof(struct seccomp_notif), resp_size = sizeof(struct seccomp_notif_resp);
static FILE *logf_;
static volatile sig_atomic_t term;
static int guard_fds[SFK_GUARD_FDS];  // the broker's confinement guard (SFK_GUARD); map first
static int nguard;
static char state_dir[4096];  // BROKER_SOCKET's directory

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void say(const char *fmt, ...) {
  if (!logf_) return;
  time_t t = time(NULL);
  struct tm tm;
  char when[32];
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
  fprintf(logf_, "%s slimfast-seccomp-keeper[%d]: ", when, getpid());
  va_list ap;
  va_start(ap, fmt);
  vfprintf(logf_, fmt, ap);
  va_end(ap);
  fputc('\n', logf_);
  fflush(logf_);
}

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

static int ep_set(int op, int fd, uint32_t events, int kind, uint32_t i) {
  struct epoll_event e = {.events = events, .data.u64 = ((uint64_t)kind << 32) | i};
  return epoll_ctl(ep, op, fd, &e);
}

static int id_valid(int nfd, uint64_t id) { return ioctl(nfd, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0; }

static void respond_continue(int nfd, uint64_t id) {
  unsigned char buf[256];
  memset(buf, 0, sizeof buf);
  struct seccomp_notif_resp *r = (struct seccomp_notif_resp *)buf;
  r->id = id;
  r->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
  while (ioctl(nfd, SECCOMP_IOCTL_NOTIF_SEND, r) < 0 && errno == EINTR) {}
}

static struct target *target_by_idx(uint32_t idx) {
  for (int i = 0; i < MAX_TARGETS; i++)
    if (targets[i].nfd >= 0 && targets[i].idx == idx) return &targets[i];
  return NULL;
}

static struct steered *steered_of(uint32_t idx, int pid, int fd) {
  char path[64];
  struct stat st;
  snprintf(path, sizeof path, "/proc/%d/fd/%d", pid, fd);
  if (stat(path, &st) < 0) return NULL;
  for (size_t i = 0; i < nsteer; i++)
    if (steer[i].real_fd >= 0 && steer[i].m.idx == idx && steer[i].m.ino == (uint64_t)st.st_ino) return &steer[i];
  return NULL;
}

static int tgid_of(int tid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", tid);
  FILE *f = fopen(path, "re");
  if (!f) return -1;
  int tgid = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "Tgid: %d", &tgid) == 1) break;
  fclose(f);
  return tgid;
}

static void unwatch_held(struct held *h) {
  if (h->lfd >= 0) epoll_ctl(ep, EPOLL_CTL_DEL, h->lfd, NULL);
  if (h->rfd >= 0) epoll_ctl(ep, EPOLL_CTL_DEL, h->rfd, NULL);
  close_fd(&h->lfd);
  close_fd(&h->rfd);
}

static void drop_held(struct held *h) {
  unwatch_held(h);
  h->used = 0;
}

static struct held *new_held(uint32_t idx, const void *notif) {
  for (size_t i = 0; i < nheld; i++)
    if (!held[i].used) {
      held[i].used = 1;
      held[i].idx = idx;
      held[i].lfd = held[i].rfd = -1;
      memcpy(held[i].notif, notif, notif_size);
      return &held[i];
    }
  struct held *h = realloc(held, (nheld + 16) * sizeof *held);
  if (!h) return NULL;
  memset(h + nheld, 0, 16 * sizeof *held);
  held = h;
  nheld += 16;
  return new_held(idx, notif);
}

static void respond_error(int nfd, uint64_t id, int err) {
  unsigned char buf[256];
  memset(buf, 0, sizeof buf);
  struct seccomp_notif_resp *r = (struct seccomp_notif_resp *)buf;
  r->id = id;
  r->error = -err;
  while (ioctl(nfd, SECCOMP_IOCTL_NOTIF_SEND, r) < 0 && errno == EINTR) {}
}

// The 48-byte header a steered connection starts with (in its SYN, else shortly after).
static int read_hdr(int fd, struct sf_hdr *h) {
  size_t got = 0;
  int64_t deadline = now_ms() + 100;
  while (got < sizeof *h) {
    ssize_t n = recv(fd, (char *)h + got, sizeof *h - got, MSG_DONTWAIT);
    if (n > 0) {
      got += (size_t)n;
      continue;
    }
    if (n == 0 || (errno != EINTR && errno != EAGAIN)) return 0;
    int64_t left = deadline - now_ms();
    if (left <= 0) return 0;
    struct pollfd p = {fd, POLLIN, 0};
    poll(&p, 1, (int)left);
  }
  return ntohl(h->magic) == SF_HDR_MAGIC && h->version == SF_HDR_VERSION;
}

// A connection for a held accept: from the steered socket (its header names the virtual peer)
// or from the container-side socket (an overlay client: its own address). 1: answered (or the
// caller is gone), 0: nothing queued.
static int serve_held(struct held *h) {
  struct target *t = target_by_idx(h->idx);
  const struct seccomp_notif *n = (const struct seccomp_notif *)h->notif;
  if (!t || !id_valid(t->nfd, n->id)) return 1;
  int flags = n->data.nr == __NR_accept4 ? (int)n->data.args[3] : 0;
  for (int k = 0; k < 16; k++) {
    int from = -1;
    struct pollfd p[2] = {{h->lfd, POLLIN, 0}, {h->rfd, POLLIN, 0}};
    if (poll(p, 2, 0) <= 0) return 0;
    from = (p[0].revents & POLLIN) ? h->lfd : (p[1].revents & POLLIN) ? h->rfd : -1;
    if (from < 0) return 0;
    int conn = accept4(from, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (conn < 0) continue;
    struct sockaddr_storage peer;
    memset(&peer, 0, sizeof peer);
    socklen_t full = sizeof peer;
    if (from == h->lfd) {
      struct sf_hdr hdr;
      if (!read_hdr(conn, &hdr) || hdr.type == SF_HDR_DOORBELL) {
        close(conn);
        continue;
      }
      if (h->v6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&peer;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = hdr.src_port;
        a6->sin6_addr.s6_addr[10] = a6->sin6_addr.s6_addr[11] = 0xff;
        memcpy(&a6->sin6_addr.s6_addr[12], &hdr.src_vip, 4);
        full = sizeof *a6;
      } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&peer;
        a4->sin_family = AF_INET;
        a4->sin_addr.s_addr = hdr.src_vip;
        a4->sin_port = hdr.src_port;
        full = sizeof *a4;
      }
    } else if (getpeername(conn, (struct sockaddr *)&peer, &full) < 0) {
      close(conn);  // reset meanwhile
      continue;
    }
    if (!(flags & SOCK_NONBLOCK)) fcntl(conn, F_SETFL, fcntl(conn, F_GETFL) & ~O_NONBLOCK);
    uint64_t addr = n->data.args[1], lenp = n->data.args[2];
    if (addr && lenp) {  // the peer's address into the caller's buffer, as the kernel writes it
      char path[64];
      snprintf(path, sizeof path, "/proc/%u/mem", n->pid);
      int mfd = open(path, O_RDWR | O_CLOEXEC);
      socklen_t len = 0;
      int ok = mfd >= 0 && id_valid(t->nfd, n->id) &&
               pread(mfd, &len, sizeof len, (off_t)lenp) == (ssize_t)sizeof len && (int)len >= 0;
      size_t w = len < full ? len : full;
      ok = ok && (!w || pwrite(mfd, &peer, w, (off_t)addr) == (ssize_t)w) &&
           pwrite(mfd, &full, sizeof full, (off_t)lenp) == (ssize_t)sizeof full;
      if (mfd >= 0) close(mfd);
      if (!ok) {
        close(conn);
        respond_error(t->nfd, n->id, EFAULT);
        return 1;
      }
    }
    struct seccomp_notif_addfd add = {.id = n->id,
                                      .flags = SECCOMP_ADDFD_FLAG_SEND,
                                      .srcfd = (uint32_t)conn,
                                      .newfd_flags = (flags & SOCK_CLOEXEC) ? O_CLOEXEC : 0};
    int rc;
    do rc = ioctl(t->nfd, SECCOMP_IOCTL_NOTIF_ADDFD, &add);
    while (rc < 0 && errno == EINTR);
    close(conn);
    if (rc < 0 && errno != ENOENT) respond_error(t->nfd, n->id, errno);
    return 1;
  }
  return 0;
}

// accept() on a steered listener while no broker is attached: answered with the next connection
// either of its sockets gets (the kernel's accept would hand over the steered ones with their
// header still in front). Returns 0 when it is no such accept.
static int hold_accept(struct target *t, const void *raw) {
  const struct seccomp_notif *n = raw;
  if (n->data.nr != __NR_accept && n->data.nr != __NR_accept4) return 0;
  struct steered *s = steered_of(t->idx, (int)n->pid, (int)n->data.args[0]);
  if (!s) return 0;
  struct held *h = new_held(t->idx, raw);
  if (!h) {
    respond_error(t->nfd, n->id, ECONNABORTED);
    return 1;
  }
  uint32_t i = (uint32_t)(h - held);
  h->v6 = (s->m.flags & SFK_F_V6) != 0;
  int tg = tgid_of((int)n->pid);
  int pfd = tg > 0 ? (int)syscall(SYS_pidfd_open, tg, 0) : -1;
  h->lfd = pfd >= 0 ? (int)syscall(SYS_pidfd_getfd, pfd, (int)n->data.args[0], 0) : -1;
  if (pfd >= 0) close(pfd);
  h->rfd = fcntl(s->real_fd, F_DUPFD_CLOEXEC, 0);
  if (h->lfd >= 0) ep_set(EPOLL_CTL_ADD, h->lfd, EPOLLIN, K_HELD, i);
  if (h->rfd >= 0) ep_set(EPOLL_CTL_ADD, h->rfd, EPOLLIN, K_HELD, i);
  if (serve_held(h)) drop_held(h);
  return 1;
}

// No broker: accept() on a steered listener is served here (hold_accept); everything else runs
// as if no filter were there (connections then take the container's own interface, the overlay).
static void serve_detached(struct target *t, const void *raw) {
  const struct seccomp_notif *n = raw;
  if (!id_valid(t->nfd, n->id) || hold_accept(t, raw)) return;
  respond_continue(t->nfd, n->id);
}

static void on_notify(struct target *t, uint32_t events) {
  if (events & EPOLLIN) {
    for (int i = 0; i < 64 && broker < 0; i++) {
      struct pollfd p = {t->nfd, POLLIN, 0};  // only what is pending now: RECV blocks otherwise
      if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN)) break;
      unsigned char buf[512];
      memset(buf, 0, notif_size);
      if (ioctl(t->nfd, SECCOMP_IOCTL_NOTIF_RECV, buf) < 0) {
        if (errno == EINTR || errno == ENOENT) continue;
        break;
      }
      serve_detached(t, buf);
    }
  }
  if ((events & (EPOLLHUP | EPOLLERR)) && !(events & EPOLLIN)) {
    // Every process of that filter has exited.
    say("container state %u: its processes have exited", t->idx);
    for (size_t i = 0; i < nsteer; i++)
      if (steer[i].real_fd >= 0 && steer[i].m.idx == t->idx) close_fd(&steer[i].real_fd);
    for (size_t i = 0; i < nheld; i++)
      if (held[i].used && held[i].idx == t->idx) drop_held(&held[i]);
    epoll_ctl(ep, EPOLL_CTL_DEL, t->nfd, NULL);
    close_fd(&t->nfd);
    free(t->state);
    t->state = NULL;
  }
}

// One message: m, then elen bytes of extra, with n descriptors (SCM_RIGHTS).
static ssize_t send_fds(int fd, const struct sfk_msg *m, const void *extra, size_t elen, const int *fds, int n) {
  struct iovec iov[2] = {{(void *)m, sizeof *m}, {(void *)extra, elen}};
  ssize_t r;
  do r = sf_fdpass_send(fd, iov, elen ? 2 : 1, fds, n, MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  return r;
}

static ssize_t send_msg(int fd, const struct sfk_msg *m, const void *extra, size_t elen, int pass_fd) {
  return send_fds(fd, m, extra, elen, &pass_fd, pass_fd >= 0 ? 1 : 0);
}

static void drop_guard(void) {
  for (int i = 0; i < nguard; i++) close(guard_fds[i]);
  nguard = 0;
}

// A new guard from the broker: kept, and the one held before let go (its programs detach; the
// map lives on in the new programs when the broker reused it).
static void keep_guard(const int *fds, int n) {
  drop_guard();
  for (int i = 0; i < n && i < SFK_GUARD_FDS; i++) guard_fds[nguard++] = fds[i];
  say("holding the confinement guard (%d descriptors)", nguard);
}

static struct sfk_msg msg_of(uint16_t type, uint32_t idx) {
  struct sfk_msg m;
  memset(&m, 0, sizeof m);
  m.magic = SFK_MAGIC;
  m.type = type;
  m.idx = idx;
  return m;
}

static int send_target(struct target *t) {
  struct sfk_msg m = msg_of(SFK_TARGET, t->idx);
  return send_msg(broker, &m, t->state, t->state_len, t->nfd) >= 0;
}

static void detach(const char *why) {
  if (broker < 0) return;
  say("broker detached (%s)", why);
  epoll_ctl(ep, EPOLL_CTL_DEL, broker, NULL);
  close_fd(&broker);
  // What the broker had received and not answered: held (steered accept) or let through.
  int cont = 0, kept = 0;
  for (int i = 0; slots && i < SFK_SLOTS; i++) {
    struct sfk_slot *s = &slots[i];
    if (!__atomic_load_n(&s->used, __ATOMIC_ACQUIRE)) continue;
    const struct seccomp_notif *n = (const struct seccomp_notif *)s->notif;
    struct target *t = target_by_idx(s->idx);
    if (t && id_valid(t->nfd, n->id)) {
      if (hold_accept(t, s->notif)) {
        kept++;
      } else {
        respond_continue(t->nfd, n->id);
        cont++;
      }
    }
    s->used = 0;
  }
  if (cont || kept) say("%d unanswered notification(s) let through, %d accept(s) held", cont, kept);
  if (slots) munmap(slots, SFK_SLOTS * sizeof *slots);
  slots = NULL;
  close_fd(&mem_fd);
  for (int i = 0; i < MAX_TARGETS; i++)
    if (targets[i].nfd >= 0) {
      ep_set(EPOLL_CTL_MOD, targets[i].nfd, EPOLLIN, K_NOTIFY, (uint32_t)i);
      on_notify(&targets[i], EPOLLIN);  // anything that queued meanwhile
    }
}

// A broker attached: the table, every notify fd, every steered listener, every held notification.
static void attach(int fd) {
  if (broker >= 0) {  // one at a time
    close(fd);
    return;
  }
  int sz = 4 << 20;  // a state of up to SFK_STATE_MAX in one datagram
  setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof sz);
  // Blocking sends, bounded: the hand-over of many containers may fill the socket while the
  // broker reads; a broker that stops reading for 2 s counts as gone.
  struct timeval tv = {2, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  mem_fd = (int)syscall(SYS_memfd_create, "slimfast-inflight", MFD_CLOEXEC);
  if (mem_fd < 0 || ftruncate(mem_fd, SFK_SLOTS * sizeof *slots) < 0 ||
      (slots = mmap(NULL, SFK_SLOTS * sizeof *slots, PROT_READ | PROT_WRITE, MAP_SHARED, mem_fd, 0)) == MAP_FAILED) {
    say("in-flight table: %s", strerror(errno));
    slots = NULL;
    close_fd(&mem_fd);
    close(fd);
    return;
  }
  broker = fd;
  for (int i = 0; i < MAX_TARGETS; i++)  // the broker receives from now on
    if (targets[i].nfd >= 0) ep_set(EPOLL_CTL_MOD, targets[i].nfd, 0, K_NOTIFY, (uint32_t)i);
  ep_set(EPOLL_CTL_ADD, fd, EPOLLIN | EPOLLRDHUP, K_BROKER, 0);
  struct sfk_msg m = msg_of(SFK_GUARD, 0);
  m.len = (uint16_t)nguard;
  int ok = nguard == 0 || send_fds(broker, &m, NULL, 0, guard_fds, nguard) >= 0;
  m = msg_of(SFK_HELLO, 0);
  ok = ok && send_msg(broker, &m, NULL, 0, mem_fd) >= 0;
  int nt = 0, ns = 0, nh = 0;
  for (int i = 0; ok && i < MAX_TARGETS; i++)
    if (targets[i].nfd >= 0) ok = send_target(&targets[i]), nt++;
  for (size_t i = 0; ok && i < nsteer; i++)
    if (steer[i].real_fd >= 0) {
      struct sfk_msg s = steer[i].m;
      s.magic = SFK_MAGIC;
      s.type = SFK_STEERED;
      ok = send_msg(broker, &s, NULL, 0, steer[i].real_fd) >= 0;
      ns++;
    }
  for (size_t i = 0; ok && i < nheld; i++)
    if (held[i].used) {
      struct target *t = target_by_idx(held[i].idx);
      if (!t || !id_valid(t->nfd, ((struct seccomp_notif *)held[i].notif)->id)) {
        drop_held(&held[i]);
        continue;
      }
      struct sfk_msg h = msg_of(SFK_HELD, held[i].idx);
      h.len = (uint16_t)notif_size;
      ok = send_msg(broker, &h, held[i].notif, notif_size, -1) >= 0;
      if (ok) drop_held(&held[i]), nh++;  // the broker answers it now
    }
  if (ok) {
    m = msg_of(SFK_READY, 0);
    ok = send_msg(broker, &m, NULL, 0, -1) >= 0;
  }
  if (!ok) return detach(strerror(errno));
  say("broker attached: %d container state(s), %d steered listener(s), %d held accept(s) handed over", nt, ns, nh);
}

static void on_broker(void) {
  for (;;) {
    struct sfk_msg m;
    int fd = -1, fds[SFK_GUARD_FDS], nfds = 0;
    ssize_t n =
        sf_fdpass_recv(broker, &m, sizeof m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC, fds, SFK_GUARD_FDS, &nfds, NULL, close);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) return detach(n == 0 ? "closed" : strerror(errno));
    if (n == (ssize_t)sizeof m && m.magic == SFK_MAGIC && m.type == SFK_GUARD && nfds > 0 && m.len == nfds) {
      keep_guard(fds, nfds);
      continue;
    }
    for (int j = 1; j < nfds; j++) close(fds[j]);
    if (nfds > 0) fd = fds[0];
    if (n != (ssize_t)sizeof m || m.magic != SFK_MAGIC) {
      close_fd(&fd);
      continue;
    }
    if (m.type == SFK_GUARD_DROP) {
      if (nguard) say("confinement guard released by the broker");
      drop_guard();
    }
    if (m.type == SFK_STEERED && fd >= 0 && target_by_idx(m.idx)) {
      size_t i = 0;
      while (i < nsteer && steer[i].real_fd >= 0) i++;
      if (i == nsteer) {
        struct steered *s = realloc(steer, (nsteer + 16) * sizeof *steer);
        if (!s) {
          close_fd(&fd);
          continue;
        }
        for (size_t j = nsteer; j < nsteer + 16; j++) s[j].real_fd = -1;
        steer = s;
        nsteer += 16;
      }
      steer[i].real_fd = fd;
      steer[i].m = m;
      fd = -1;
    } else if (m.type == SFK_UNSTEERED) {
      for (size_t i = 0; i < nsteer; i++)
        if (steer[i].real_fd >= 0 && steer[i].m.idx == m.idx && steer[i].m.ino == m.ino) close_fd(&steer[i].real_fd);
    }
    close_fd(&fd);
  }
}

static int json_complete(const char *s, size_t n) {
  int depth = 0, in_str = 0, started = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (in_str) {
      if (c == '\\')
        i++;
      else if (c == '"')
        in_str = 0;
    } else if (c == '"') {
      in_str = 1;
    } else if (c == '{' || c == '[') {
      depth++, started = 1;
    } else if (c == '}' || c == ']') {
      if (--depth == 0 && started) return 1;
    }
  }
  return 0;
}

static int is_notify_fd(int fd) {
  char path[64], link[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(path, link, sizeof link - 1);
  if (n <= 0) return 0;
  link[n] = 0;
  return strstr(link, "seccomp") != NULL;
}

static void drop_runc(struct runc_conn *r) {
  epoll_ctl(ep, EPOLL_CTL_DEL, r->fd, NULL);
  close_fd(&r->fd);
  for (int i = 0; i < r->nfds; i++) close_fd(&r->fds[i]);
  r->nfds = 0;
  free(r->buf);
  r->buf = NULL;
  r->len = 0;
}

// runc's state and fd are here: a new target.
static void runc_done(struct runc_conn *r) {
  int nfd = -1;
  for (int i = 0; i < r->nfds; i++)
    if (nfd < 0 && is_notify_fd(r->fds[i])) {
      nfd = r->fds[i];
      r->fds[i] = -1;
    }
  int slot = -1;
  for (int i = 0; i < MAX_TARGETS && slot < 0; i++)
    if (targets[i].nfd < 0) slot = i;
  if (nfd < 0 || slot < 0 || !json_complete(r->buf, r->len)) {
    say("a container state without %s: dropped", nfd < 0 ? "a seccomp notify fd" : slot < 0 ? "room" : "valid JSON");
    close_fd(&nfd);
    return drop_runc(r);
  }
  struct target *t = &targets[slot];
  t->nfd = nfd;
  t->idx = next_idx++;
  t->state = r->buf;
  t->state_len = r->len;
  r->buf = NULL;
  r->len = 0;
  drop_runc(r);
  if (ep_set(EPOLL_CTL_ADD, nfd, broker >= 0 ? 0 : EPOLLIN, K_NOTIFY, (uint32_t)slot) < 0) {
    say("epoll for a notify fd: %s", strerror(errno));
    close_fd(&t->nfd);
    free(t->state);
    t->state = NULL;
    return;
  }
  if (broker >= 0 && !send_target(t)) detach(strerror(errno));
}

static void on_runc(struct runc_conn *r) {
  for (int k = 0; k < 64; k++) {
    char buf[16384];
    int got;  // descriptors beyond the 4 the connection keeps are closed
    ssize_t n = sf_fdpass_recv(r->fd, buf, sizeof buf, MSG_DONTWAIT | MSG_CMSG_CLOEXEC, r->fds + r->nfds, 4 - r->nfds,
                               &got, NULL, close);
    r->nfds += got;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0) return drop_runc(r);
    if (n == 0) return runc_done(r);
    if (r->len + (size_t)n > SFK_STATE_MAX) {
      say("a container state larger than %u bytes: dropped", SFK_STATE_MAX);
      return drop_runc(r);
    }
    char *b = realloc(r->buf, r->len + (size_t)n);
    if (!b) return drop_runc(r);
    memcpy(b + r->len, buf, (size_t)n);
    r->buf = b;
    r->len += (size_t)n;
    // runc sends the state with its fd in one message and may keep its end open (runc exec).
    if (r->nfds && json_complete(r->buf, r->len)) return runc_done(r);
  }
}

static void on_runc_listen(void) {
  for (int k = 0; k < 16; k++) {
    int fd = accept4(runc_listen, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    int i = 0;
    while (i < MAX_RUNC && runcs[i].fd >= 0) i++;
    if (i == MAX_RUNC || ep_set(EPOLL_CTL_ADD, fd, EPOLLIN | EPOLLRDHUP, K_RUNC, (uint32_t)i) < 0) {
      close(fd);
      continue;
    }
    runcs[i].fd = fd;
    runcs[i].deadline = now_ms() + RUNC_TIMEOUT_MS;
  }
}

// Steered listeners whose socket left the process (closed, or the process is gone) while no
// broker would have said so: the keeper's copy of their container-side socket goes too.
static void check_steered(void) {
  for (size_t i = 0; i < nsteer; i++) {
    if (steer[i].real_fd < 0) continue;
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "/proc/%u/fd/%d", steer[i].m.tgid, steer[i].m.tfd);
    if (stat(path, &st) < 0 || (uint64_t)st.st_ino != steer[i].m.ino) close_fd(&steer[i].real_fd);
  }
}

static int bind_unix(const char *path, int type, struct stat *st) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof a.sun_path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  strcpy(a.sun_path, path);
  int fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if ((unlink(path) < 0 && errno != ENOENT) || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || chmod(path, 0600) < 0 ||
      stat(path, st) < 0 || listen(fd, 256) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

static void unlink_if_ours(const char *path, const struct stat *mine) {
  struct stat st;
  if (lstat(path, &st) == 0 && st.st_dev == mine->st_dev && st.st_ino == mine->st_ino) unlink(path);
}

static void on_term(int sig) {
  (void)sig;
  term = 1;
}

int main(int argc, char **argv) {
  const char *runc_path = NULL, *broker_path = NULL, *log_path = NULL;
  int foreground = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--foreground"))
      foreground = 1;
    else if (!strcmp(argv[i], "--log") && i + 1 < argc)
      log_path = argv[++i];
    else if (!runc_path)
      runc_path = argv[i];
    else if (!broker_path)
      broker_path = argv[i];
    else
      runc_path = NULL, i = argc;
  }
  if (!runc_path || !broker_path) {
    fprintf(stderr, "usage: slimfast-seccomp-keeper RUNC_SOCKET BROKER_SOCKET [--foreground] [--log FILE]\n");
    return 2;
  }
  char lock_path[4096];
  snprintf(lock_path, sizeof lock_path, "%s.lock", broker_path);
  snprintf(state_dir, sizeof state_dir, "%s", broker_path);
  char *slash = strrchr(state_dir, '/');
  if (slash)
    *(slash == state_dir ? slash + 1 : slash) = 0;
  else
    snprintf(state_dir, sizeof state_dir, ".");
  int lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock < 0) {
    fprintf(stderr, "slimfast-seccomp-keeper: cannot open %s: %s\n", lock_path, strerror(errno));
    return 1;
  }
  if (flock(lock, LOCK_EX | LOCK_NB) < 0) {
    if (errno == EWOULDBLOCK) {
      printf("slimfast-seccomp-keeper: already running for %s\n", broker_path);
      return 0;
    }
    fprintf(stderr, "slimfast-seccomp-keeper: lock %s: %s\n", lock_path, strerror(errno));
    return 1;
  }
  struct stat runc_st, broker_st;
  runc_listen = bind_unix(runc_path, SOCK_STREAM, &runc_st);
  if (runc_listen < 0) {
    fprintf(stderr, "slimfast-seccomp-keeper: cannot listen on %s: %s\n", runc_path, strerror(errno));
    return 1;
  }
  broker_listen = bind_unix(broker_path, SOCK_SEQPACKET, &broker_st);
  if (broker_listen < 0) {
    fprintf(stderr, "slimfast-seccomp-keeper: cannot listen on %s: %s\n", broker_path, strerror(errno));
    unlink_if_ours(runc_path, &runc_st);
    return 1;
  }
  if (log_path) logf_ = fopen(log_path, "ae");
  if (!foreground) {
    // Serving already (both sockets listen): the caller may go on as soon as this returns.
    pid_t p = fork();
    if (p < 0) {
      fprintf(stderr, "slimfast-seccomp-keeper: fork: %s\n", strerror(errno));
      return 1;
    }
    if (p > 0) {
      printf("slimfast-seccomp-keeper: running (pid %d)\n", p);
      return 0;
    }
    setsid();
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
      dup2(null, 0), dup2(null, 1), dup2(null, 2);
      if (null > 2) close(null);
    }
  }
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa = {.sa_handler = on_term};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  struct seccomp_notif_sizes sz;
  if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sz) == 0) {
    if (sz.seccomp_notif > notif_size) notif_size = sz.seccomp_notif;
    if (sz.seccomp_notif_resp > resp_size) resp_size = sz.seccomp_notif_resp;
  }
  if (notif_size > SFK_NOTIF_MAX || resp_size > 256) {
    say("seccomp notification sizes %zu/%zu: larger than this program knows", notif_size, resp_size);
    return 1;
  }
  for (int i = 0; i < MAX_TARGETS; i++) targets[i].nfd = -1;
  for (int i = 0; i < MAX_RUNC; i++) runcs[i].fd = -1;
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0 || ep_set(EPOLL_CTL_ADD, runc_listen, EPOLLIN, K_RUNC_LISTEN, 0) < 0 ||
      ep_set(EPOLL_CTL_ADD, broker_listen, EPOLLIN, K_BROKER_LISTEN, 0) < 0) {
    say("epoll: %s", strerror(errno));
    return 1;
  }
  say("serving %s and %s", runc_path, broker_path);
  int64_t idle_since = now_ms(), next_check = 0;
  for (;;) {
    struct epoll_event evs[64];
    int n = epoll_wait(ep, evs, 64, TICK_MS);
    for (int i = 0; i < n; i++) {
      int kind = (int)(evs[i].data.u64 >> 32);
      uint32_t k = (uint32_t)evs[i].data.u64;
      switch (kind) {
        case K_RUNC_LISTEN:
          on_runc_listen();
          break;
        case K_BROKER_LISTEN: {
          int fd = accept4(broker_listen, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd >= 0) attach(fd);
          break;
        }
        case K_BROKER:
          if (broker >= 0) on_broker();
          break;
        case K_RUNC:
          if (k < MAX_RUNC && runcs[k].fd >= 0) on_runc(&runcs[k]);
          break;
        case K_HELD:
          if (k < nheld && held[k].used && serve_held(&held[k])) drop_held(&held[k]);
          break;
        case K_NOTIFY:
          if (k < MAX_TARGETS && targets[k].nfd >= 0) on_notify(&targets[k], evs[i].events);
          break;
      }
    }
    int64_t now = now_ms();
    int busy = broker >= 0 || nguard > 0;
    for (int i = 0; i < MAX_RUNC; i++)
      if (runcs[i].fd >= 0) {
        busy = 1;
        if (now >= runcs[i].deadline) drop_runc(&runcs[i]);
      }
    for (int i = 0; i < MAX_TARGETS && !busy; i++) busy = targets[i].nfd >= 0;
    if (now >= next_check) {
      next_check = now + 1000;
      if (access(state_dir, F_OK) < 0 && errno == ENOENT) {
        say("the state dir %s is gone", state_dir);
        break;
      }
      check_steered();
      for (size_t i = 0; i < nheld; i++)  // a signal ended the call: its restart is a new notification
        if (held[i].used) {
          struct target *t = target_by_idx(held[i].idx);
          if (!t || !id_valid(t->nfd, ((struct seccomp_notif *)held[i].notif)->id)) drop_held(&held[i]);
        }
    }
    if (busy) idle_since = now;
    int targets_held = 0;
    for (int i = 0; i < MAX_TARGETS; i++) targets_held += targets[i].nfd >= 0;
    if (term && !targets_held) break;
    if (term == 1 && targets_held) {
      say("SIGTERM ignored: %d container state(s) would lose their seccomp listener (SIGKILL to force)", targets_held);
      term = 2;
    }
    if (now - idle_since >= IDLE_EXIT_MS) break;
  }
  say("exiting: nothing to keep");
  unlink_if_ours(runc_path, &runc_st);
  unlink_if_ours(broker_path, &broker_st);
  return 0;
}
