/* The per-process broker connection and request/reply matching.
 *
 * One SOCK_SEQPACKET connection per process, opened lazily (first connect/listen of a TCP socket)
 * and shared by all threads. Requests carry a seq; replies echo it.
 *
 * Leader/follower: a mutex + condvar protect the table of outstanding requests. A waiting thread
 * that finds nobody reading becomes the reader: it drops the mutex, reads one reply (first polling
 * with MSG_DONTWAIT for a short adaptive budget, then ppoll with its deadline), retakes the mutex,
 * files the reply (and its fd) under the owner's seq, wakes everybody and looks at its own slot
 * again. No lock is ever held across a blocking call. A reply nobody waits for any more (its
 * requester timed out) is dropped and its fd closed.
 *
 * Failure handling: every wait has a deadline (SLIMFAST_TIMEOUT_MS, 3 s). EOF or an error kills
 * the connection (shutdown wakes its reader; the fd is closed when its last user lets go); the next
 * request reconnects, with a growing back-off while the broker cannot be reached. A timeout
 * suspends the broker for a while (requests fall back at once) without dropping the connection.
 * A forked child closes the inherited connection and starts from scratch: the atfork prepare handler
 * takes the mutex so that the child gets the tables in a consistent state.
 *
 * Signal handlers: while a thread is inside the client (in_broker) it may hold the mutex, sit in
 * pthread_cond_timedwait, be the connection's reader or be opening it; a handler that calls back into
 * the library on that thread can wait for none of it (the interrupted frame cannot go on, and
 * pthread_cond_* are not async-signal-safe), so broker calls made there fail at once and the
 * caller falls back. Connection objects come from a static array: no malloc/free (a handler may
 * drop the last reference).
 */
#include "sf.h"

#include "fdpass.h"

#include <sys/mman.h>

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define NPEND 64
/* Connection objects: the live one plus dead ones that threads still hold (each reconnect waits
   for a back-off, so few ever coexist). None free: the call falls back. */
#define NCONNS 16

struct conn {
  int used;
  int fd;
  int refs; /* cur's reference + threads using it */
  int dead;
  int reader; /* a thread is reading it */
};

struct pend {
  int used, done, failed;
  uint32_t seq;
  struct conn *c;
  struct sf_msg msg;
  int fd;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv;
static int cv_ready;
static struct conn *cur; /* the live connection, or NULL */
static struct conn conn_slots[NCONNS];
static int cur_fd = -1; /* lock-free copy of cur->fd for sf_broker_is_fd */
static int opening;
static int64_t retry_at; /* no connection attempt before this */
static int backoff_ms;
static int64_t suspend_until; /* after a timeout: fall back at once until then */
static int suspend_ms;
static struct sf_info info;
static uint32_t next_seq;
static struct pend pend[NPEND];
static int64_t wait_ewma_ns = 10000; /* how long a reader usually waits for a reply */
static pid_t owner_pid;
static int fork_locked; /* the atfork prepare handler holds mu */

static __thread int in_broker __attribute__((tls_model("initial-exec")));

/* Enter the client on this thread; 0 when this thread is in it already, or holds a lock that comes
   after mu in lock order (the pools', the fd table's): we are in a signal handler that came back
   into the library, and the caller must fall back without touching anything here. */
static int broker_enter(void) {
  if (in_broker || sf_pool_busy() || sf_tab_busy()) return 0;
  in_broker = 1;
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  return 1;
}
static void broker_leave(void) {
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  in_broker = 0;
}

static struct conn *conn_new(void) {
  for (int i = 0; i < NCONNS; i++)
    if (!conn_slots[i].used) {
      memset(&conn_slots[i], 0, sizeof conn_slots[i]);
      conn_slots[i].used = 1;
      return &conn_slots[i];
    }
  return NULL;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static void cv_init_locked(void) {
  if (cv_ready) return;
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  pthread_cond_init(&cv, &a);
  pthread_condattr_destroy(&a);
  cv_ready = 1;
}

/* Wait on cv until deadline; returns ETIMEDOUT once it passed. */
static int cv_wait(int64_t deadline) {
  struct timespec ts = {(time_t)(deadline / 1000000000), (long)(deadline % 1000000000)};
  return pthread_cond_timedwait(&cv, &mu, &ts);
}

static void conn_put(struct conn *c) {
  if (--c->refs > 0) return;
  sf_tab_drop(c->fd);
  REAL(close)(c->fd);
  c->used = 0;
}

static void conn_kill(struct conn *c, const char *why) {
  if (c->dead) return;
  SF_DEBUG("broker connection fd %d lost (%s)", c->fd, why);
  c->dead = 1;
  REAL(shutdown)(c->fd, SHUT_RDWR);
  sf_pool_drop_all(); /* its broker stocks them no more */
  for (int i = 0; i < NPEND; i++)
    if (pend[i].used && pend[i].c == c && !pend[i].done) pend[i].done = pend[i].failed = 1;
  if (cur == c) {
    cur = NULL;
    __atomic_store_n(&cur_fd, -1, __ATOMIC_RELAXED);
    conn_put(c);
  }
  pthread_cond_broadcast(&cv);
}

/* Child of a fork (or a clone that bypassed the atfork handlers): nothing here is ours. */
static void reset_locked(void) {
  for (int i = 0; i < NCONNS; i++) {
    struct conn *c = &conn_slots[i];
    if (!c->used) continue;
    sf_tab_drop(c->fd);
    REAL(close)(c->fd);
    c->used = 0;
  }
  cur = NULL;
  __atomic_store_n(&cur_fd, -1, __ATOMIC_RELAXED);
  for (int i = 0; i < NPEND; i++) {
    if (pend[i].used && pend[i].fd >= 0) REAL(close)(pend[i].fd);
    memset(&pend[i], 0, sizeof pend[i]);
  }
  opening = 0;
  retry_at = suspend_until = 0;
  backoff_ms = suspend_ms = 0;
  owner_pid = getpid();
}

/* Before fork(): hold mu so that no other thread is half-way through the tables. Not when this
   thread is in the client already (fork() in a signal handler): the child starts afresh anyway. */
void sf_broker_atfork_prepare(void) {
  if (!broker_enter()) return;
  pthread_mutex_lock(&mu);
  fork_locked = 1;
}

void sf_broker_atfork_parent(void) {
  if (!fork_locked) return;
  fork_locked = 0;
  pthread_mutex_unlock(&mu);
  broker_leave();
}

void sf_broker_atfork_child(void) {
  sf_pool_atfork_child();
  fork_locked = 0;
  in_broker = 0;
  pthread_mutex_init(&mu, NULL);
  cv_ready = 0;
  cv_init_locked();
  reset_locked();
}

/* ---- raw message I/O (no locks held) ---- */

#define MAX_SEND_FDS 2

static int send_msg(int fd, const struct sf_msg *m, const int *fds, int nfds, int64_t deadline) {
  struct iovec iov = {(void *)m, sizeof *m};
  if (nfds > MAX_SEND_FDS) return -1;
  for (;;) {
    ssize_t n = sf_fdpass_send(fd, &iov, 1, fds, nfds, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n == (ssize_t)sizeof *m) return 0;
    if (n >= 0) return -1;
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return -1;
    int64_t left = deadline - sf_now_ns();
    if (left <= 0) return -1;
    struct pollfd pfd = {fd, POLLOUT, 0};
    struct timespec ts = {(time_t)(left / 1000000000), (long)(left % 1000000000)};
    if (ppoll(&pfd, 1, &ts, NULL) < 0 && errno != EINTR) return -1;
  }
}

/* One packet: 1 = message (*rfd = attached fd or -1), 0 = garbage (skipped), -1 = EOF/error,
   -2 = would block. */
static int recv_msg(int fd, struct sf_msg *m, int *rfd) {
  int trunc;
  ssize_t n = sf_recv_fd(fd, m, sizeof *m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC, rfd, &trunc);
  if (n < 0) return (errno == EAGAIN || errno == EINTR) ? -2 : -1;
  if (n == 0) return -1;
  if (n != (ssize_t)sizeof *m || (trunc & MSG_TRUNC)) {
    if (*rfd >= 0) REAL(close)(*rfd);
    *rfd = -1;
    return 0;
  }
  return 1;
}

/* Read one reply: poll without blocking for `spin_ns`, then block until deadline.
   1 = message, 0 = deadline passed, -1 = connection dead. */
static int read_reply(int fd, int64_t deadline, int64_t spin_ns, struct sf_msg *m, int *rfd) {
  int64_t start = sf_now_ns(), spin_end = start + spin_ns;
  for (;;) {
    int r = recv_msg(fd, m, rfd);
    if (r == 1) {
      int64_t waited = sf_now_ns() - start;
      wait_ewma_ns += (waited - wait_ewma_ns) / 8; /* only the reader writes it */
      return 1;
    }
    if (r == -1) return -1;
    if (r == 0) continue;
    int64_t now = sf_now_ns();
    if (now < spin_end) {
      for (int i = 0; i < 16; i++) cpu_relax();
      continue;
    }
    if (now >= deadline) return 0;
    int64_t left = deadline - now;
    struct pollfd pfd = {fd, POLLIN, 0};
    struct timespec ts = {(time_t)(left / 1000000000), (long)(left % 1000000000)};
    if (ppoll(&pfd, 1, &ts, NULL) < 0 && errno != EINTR) return -1;
  }
}

static int64_t spin_budget(void) {
  int64_t max = (int64_t)sf_conf.spin_max_us * 1000;
  if (max <= 0) return 0;
  int64_t w = wait_ewma_ns;
  if (w > max) return 2000; /* replies come too late for polling to pay; keep measuring */
  int64_t b = 2 * w + 2000;
  return b > max ? max : b;
}

/* ---- connection set-up ---- */

/* -1 on failure; *refused: the broker answered the handshake with this errno (EMFILE: the
   container is at its limit of broker connections; ENFILE: the broker is short of descriptors). */
static int open_broker(struct sf_info *inf, int64_t deadline, int *refused) {
  *refused = 0;
  int fd = REAL(socket)(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, sf_conf.sock_path, strlen(sf_conf.sock_path));
  if (REAL(connect)(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    int e = errno;
    SF_DEBUG("cannot reach broker %s: %s", sf_conf.sock_path, strerror(e));
    /* No broker (ENOENT, ECONNREFUSED) is normal while it restarts; a socket this user may not
       reach is a misconfiguration that would otherwise go unnoticed: every connect and listen
       silently takes the ordinary path. Said once per program. */
    static int warned;
    if ((e == EACCES || e == EPERM) && !__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
      sf_warn(
          "cannot connect to the broker socket %s as uid %u: %s; this program's TCP stays off SlimFast "
          "(the broker makes its state dir's containers/ mode 711: is the path right, or the mode changed?)",
          sf_conf.sock_path, (unsigned)getuid(), strerror(e));
    REAL(close)(fd);
    return -1;
  }
  fd = sf_fd_move_high(fd);
  struct sf_msg m;
  memset(&m, 0, sizeof m);
  m.type = SF_HELLO;
  m.version = SF_MSG_VERSION;
  m.a = (uint64_t)getpid();
  if (send_msg(fd, &m, NULL, 0, deadline) != 0) {
    /* A broker that refused the connection (a limit) said why before it closed it. */
    int rfd;
    if (recv_msg(fd, &m, &rfd) == 1) {
      if (rfd >= 0) REAL(close)(rfd);
      if (m.type == SF_HELLO_OK && m.seq == 0 && m.status != 0) goto refused;
    }
    goto fail;
  }
  int view_fd = -1;
  for (;;) {
    int rfd;
    int r = read_reply(fd, deadline, 0, &m, &rfd);
    if (r <= 0) goto fail;
    if (m.type == SF_HELLO_OK && m.seq == 0) {
      view_fd = rfd;
      break;
    }
    if (rfd >= 0) REAL(close)(rfd);
  }
  /* The view page: mapped read-only (the broker sealed it against writable mappings); kept mapped
     for good, since other threads may be reading it (one page per broker connection). */
  if (view_fd >= 0) {
    const struct sf_view *v = NULL;
    if (m.status == 0 && (ntohs(m.port_b) & SF_FEAT_VIEW)) {
      void *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, view_fd, 0);
      if (p != MAP_FAILED && __atomic_load_n(&((const struct sf_view *)p)->magic, __ATOMIC_ACQUIRE) == SF_VIEW_MAGIC)
        v = p;
      else if (p != MAP_FAILED)
        munmap(p, 4096);
    }
    REAL(close)(view_fd);
    sf_pool_set_view(v);
  }
  if (m.status != 0) {
  refused:
    *refused = m.status;
    static int warned_refused;
    if (m.status == EACCES && !__atomic_exchange_n(&warned_refused, 1, __ATOMIC_RELAXED))
      sf_warn(
          "the broker at %s refused this program: it is not in that container's network namespace; "
          "its TCP stays off SlimFast",
          sf_conf.sock_path);
    SF_DEBUG("broker %s refused this process: %s; falling back to the container's network", sf_conf.sock_path,
             strerror(m.status > 0 ? m.status : EPROTO));
    REAL(close)(fd);
    return -1;
  }
  inf->vip = m.vip_a;
  inf->net = m.vip_b;
  uint32_t p = (uint32_t)m.a;
  inf->mask = sf_prefix_mask(p);
  inf->net &= inf->mask;
  inf->features = ntohs(m.port_b);
  SF_DEBUG("broker connection fd %d up (prefix /%u)", fd, p);
  return fd;
fail:
  SF_DEBUG("broker handshake failed");
  REAL(close)(fd);
  return -1;
}

/* Returns the live connection with a reference taken, or NULL (caller falls back). A request
   (exact_pid) asks the kernel for the pid: a child made by a raw clone() never ran the atfork
   handler and must not read its parent's replies; looking the route up needs no syscall. */
static struct conn *acquire(int64_t deadline, int exact_pid) {
  pthread_mutex_lock(&mu);
  cv_init_locked();
  if (exact_pid ? owner_pid != getpid() : !owner_pid) reset_locked(); /* (fork() children: atfork_child) */
  for (;;) {
    int64_t now = sf_now_ns();
    if (now < suspend_until) break;
    if (cur) {
      cur->refs++;
      struct conn *c = cur;
      pthread_mutex_unlock(&mu);
      return c;
    }
    if (now < retry_at) break;
    if (opening) {
      if (cv_wait(deadline) == ETIMEDOUT) break;
      continue;
    }
    opening = 1;
    pthread_mutex_unlock(&mu);
    struct sf_info inf;
    int refused;
    int fd = open_broker(&inf, deadline, &refused);
    pthread_mutex_lock(&mu);
    opening = 0;
    struct conn *c = fd >= 0 ? conn_new() : NULL;
    if (c) {
      c->fd = fd;
      c->refs = 1;
      cur = c;
      __atomic_store_n(&cur_fd, fd, __ATOMIC_RELAXED);
      sf_tab_mark_internal(fd, -1);
      info = inf;
      backoff_ms = 0;
    } else {
      if (fd >= 0) REAL(close)(fd);
      /* a failed connect() on a Unix socket costs microseconds: retry soon, a restarted broker
         is used within a second; one that refused us (at a limit) is asked again after a second */
      backoff_ms = refused ? 1000 : backoff_ms ? (backoff_ms >= 500 ? 1000 : backoff_ms * 2) : 100;
      retry_at = sf_now_ns() + (int64_t)backoff_ms * 1000000;
    }
    pthread_cond_broadcast(&cv);
  }
  pthread_mutex_unlock(&mu);
  return NULL;
}

int sf_broker_info(struct sf_info *out) {
  if (!broker_enter()) return -1;
  int saved = errno;
  struct conn *c = acquire(sf_now_ns() + (int64_t)sf_conf.timeout_ms * 1000000, 0);
  if (!c) {
    broker_leave();
    errno = saved;
    return -1;
  }
  pthread_mutex_lock(&mu);
  *out = info;
  conn_put(c);
  pthread_mutex_unlock(&mu);
  broker_leave();
  errno = saved;
  return 0;
}

static void file_reply(struct conn *c, const struct sf_msg *m, int fd) {
  if (m->type == SF_POOL_CHANNEL && m->seq == 0) { /* unsolicited, ahead of the reply needing it */
    if (fd >= 0 && !c->dead)
      sf_pool_add(fd, m->vip_a, (uint32_t)m->a);
    else if (fd >= 0)
      REAL(close)(fd);
    return;
  }
  for (int i = 0; i < NPEND; i++) {
    struct pend *p = &pend[i];
    if (p->used && !p->done && p->c == c && p->seq == m->seq) {
      p->msg = *m;
      p->fd = fd;
      p->done = 1;
      return;
    }
  }
  SF_DEBUG("dropping late or unknown reply type %u seq %u", m->type, m->seq);
  if (fd >= 0) REAL(close)(fd);
}

static int call(struct sf_msg *req, const int *fds, int nfds, struct sf_msg *rep, int *rep_fd) {
  int saved = errno;
  int64_t deadline = sf_now_ns() + (int64_t)sf_conf.timeout_ms * 1000000;
  struct conn *c = acquire(deadline, 1);
  if (!c) {
    errno = saved;
    return -1;
  }
  pthread_mutex_lock(&mu);
  struct pend *p = NULL;
  for (;;) {
    for (int i = 0; i < NPEND && !p; i++)
      if (!pend[i].used) p = &pend[i];
    if (p || c->dead || cv_wait(deadline) == ETIMEDOUT) break;
  }
  if (!p) {
    conn_put(c);
    pthread_mutex_unlock(&mu);
    errno = saved;
    return -1;
  }
  memset(p, 0, sizeof *p);
  p->used = 1;
  p->c = c;
  p->fd = -1;
  if (++next_seq == 0) next_seq = 1; /* seq 0 is the handshake's */
  p->seq = next_seq;
  pthread_mutex_unlock(&mu);

  req->seq = p->seq;
  req->version = SF_MSG_VERSION;
  int sent = send_msg(c->fd, req, fds, nfds, deadline);

  pthread_mutex_lock(&mu);
  if (sent != 0) conn_kill(c, "send failed");
  int timed_out = 0;
  while (!p->done) {
    if (c->dead) {
      p->failed = 1;
      break;
    }
    if (sf_now_ns() >= deadline) {
      timed_out = 1;
      break;
    }
    if (!c->reader) {
      c->reader = 1;
      int fd = c->fd;
      int64_t spin = spin_budget();
      pthread_mutex_unlock(&mu);
      struct sf_msg m;
      int mfd;
      int r = read_reply(fd, deadline, spin, &m, &mfd);
      pthread_mutex_lock(&mu);
      c->reader = 0;
      if (r == 1)
        file_reply(c, &m, mfd);
      else if (r < 0)
        conn_kill(c, "read failed or EOF");
      pthread_cond_broadcast(&cv);
      continue;
    }
    cv_wait(deadline);
  }
  int ok = p->done && !p->failed;
  if (ok) {
    *rep = p->msg;
    *rep_fd = p->fd;
  }
  p->used = 0;
  if (timed_out) {
    suspend_ms = suspend_ms ? (suspend_ms >= 16000 ? 30000 : suspend_ms * 2) : 1000;
    suspend_until = sf_now_ns() + (int64_t)suspend_ms * 1000000;
    SF_DEBUG("broker did not answer within %d ms; falling back for %d ms", sf_conf.timeout_ms, suspend_ms);
  } else if (ok) {
    suspend_ms = 0;
  }
  conn_put(c);
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  errno = saved;
  return ok ? 0 : -1;
}

int sf_broker_call(struct sf_msg *req, int send_fd, struct sf_msg *rep, int *rep_fd) {
  return sf_broker_call_fds(req, &send_fd, send_fd >= 0 ? 1 : 0, rep, rep_fd);
}

int sf_broker_call_fds(struct sf_msg *req, const int *fds, int nfds, struct sf_msg *rep, int *rep_fd) {
  *rep_fd = -1;
  if (!broker_enter()) return -1;
  int r = call(req, fds, nfds, rep, rep_fd);
  broker_leave();
  return r;
}

int sf_broker_watch_fd(void) { return __atomic_load_n(&cur_fd, __ATOMIC_RELAXED); }

/* The watcher saw fd hang up. If it is still the live connection (looked at again under the
   mutex: the number may have been reused since), it is dead now; and the next request reconnects
   without the back-off, since the broker is probably being restarted. */
void sf_broker_hangup(int fd) {
  if (!broker_enter()) return;
  pthread_mutex_lock(&mu);
  if (owner_pid == getpid() && cur && cur->fd == fd && !cur->dead) {
    struct pollfd p = {fd, POLLRDHUP, 0};
    if (poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) conn_kill(cur, "hung up");
  }
  retry_at = 0;
  backoff_ms = 0;
  pthread_mutex_unlock(&mu);
  broker_leave();
}

int sf_broker_reconnect(struct sf_info *out) {
  if (!broker_enter()) return -1;
  pthread_mutex_lock(&mu);
  retry_at = 0;
  pthread_mutex_unlock(&mu);
  broker_leave();
  return sf_broker_info(out);
}

/* The process closed a listener: the broker drops its copy of the listening socket before this
   returns (if no other process holds the listener), so that the application can bind the port
   again at once. Only on a live connection, and not from a signal handler that interrupted this
   thread in the client: then the broker notices the closed channel by itself a moment later. */
void sf_broker_listen_closed(uint64_t chan_ino) {
  if (!chan_ino || !broker_enter()) return;
  pthread_mutex_lock(&mu);
  int live = cur && !cur->dead && owner_pid == getpid() && sf_now_ns() >= suspend_until &&
             (info.features & SF_FEAT_LISTEN_CLOSED); /* an older broker would not answer */
  pthread_mutex_unlock(&mu);
  broker_leave();
  if (!live) return;
  struct sf_msg req, rep;
  int rfd;
  memset(&req, 0, sizeof req);
  req.type = SF_LISTEN_CLOSED;
  req.a = chan_ino;
  if (sf_broker_call(&req, -1, &rep, &rfd) == 0 && rfd >= 0) REAL(close)(rfd);
}

int sf_broker_is_fd(int fd) { return fd >= 0 && __atomic_load_n(&cur_fd, __ATOMIC_RELAXED) == fd; }

void sf_broker_relocate(int fd) {
  if (!broker_enter()) return; /* dup2() onto it in a handler: no way to move it now */
  pthread_mutex_lock(&mu);
  if (cur && cur->fd == fd) {
    int n = sf_fd_dup_high(fd);
    if (n >= 0 && n != fd) {
      sf_tab_mark_internal(n, -1);
      cur->fd = n;
      __atomic_store_n(&cur_fd, n, __ATOMIC_RELAXED);
      sf_tab_drop(fd);
      REAL(close)(fd);
    }
  }
  pthread_mutex_unlock(&mu);
  broker_leave();
}
