/* Pre-established host connections: connect() without a round trip to the broker.
 *
 * After the first cross-host connect to a peer host, the broker sends this process a pool channel
 * for that peer's route (SF_POOL_CHANNEL) and keeps it stocked with connected host sockets on
 * which nothing was sent yet, each with a header the broker signed (source vIP, no destination).
 * A connect() to a destination the broker confirmed as a SlimFast listener in the last second
 * takes one, fills the destination into that header, sends it, and reports the take; anything else (an empty pool, an
 * unconfirmed destination, a stale or dead socket) goes the ordinary way through the broker.
 *
 * Locking: one mutex for the tables, never held across a blocking call (every syscall under it is
 * non-blocking or absent). A pool fd in use by a taker is closed only when the last user leaves.
 * A signal handler that comes back into the library on a thread holding the mutex (in_pool) does
 * without the pools: a connect there asks the broker, a pool channel arriving there is closed, a
 * dead broker's pools are found dead by the next taker. The atfork prepare handler takes the mutex.
 */
#include "sf.h"

#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#define NPOOLS 8
#define NOK 64                       /* confirmed destinations remembered */
#define OK_TTL_NS 1000000000LL       /* how long a confirmation lets connects skip the broker */
#define MAX_TRIES 16                 /* stale sockets skipped in one connect at most */
/* An empty pool is reported again after this: the broker may have backed off (peer down), and
   refills only when asked. */
#define EMPTY_REPORT_NS 1000000000LL

struct pool {
  int fd; /* -1: free slot */
  uint32_t net, mask; /* network order */
  int users;
  int dead;
  int64_t empty_reported_at; /* last "found empty" report; 0: none since the last take */
  uint32_t owe_used, owe_gone; /* takes a full channel kept us from reporting: in the next report */
};

struct okdst {
  uint32_t ip;
  uint16_t port;
  int64_t until;
};

static pthread_mutex_t pmu = PTHREAD_MUTEX_INITIALIZER;
static struct pool pools[NPOOLS] = {[0 ... NPOOLS - 1] = {.fd = -1}};
static int pool_fds[NPOOLS] = {[0 ... NPOOLS - 1] = -1}; /* lock-free copy for sf_pool_is_fd */
static struct okdst oks[NOK];
static int fork_locked; /* the atfork prepare handler holds pmu */

static __thread int in_pool __attribute__((tls_model("initial-exec")));

int sf_pool_busy(void) { return in_pool; }

/* 0 when this thread holds pmu already or is inside the fd table, which comes after pmu in lock
   order (we are in a signal handler that interrupted it). */
static int pool_lock(void) {
  if (in_pool || sf_tab_busy()) return 0;
  in_pool = 1;
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  pthread_mutex_lock(&pmu);
  return 1;
}
static void pool_unlock(void) {
  pthread_mutex_unlock(&pmu);
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  in_pool = 0;
}

static void close_pool_locked(int i) {
  sf_tab_drop(pools[i].fd);
  REAL(close)(pools[i].fd);
  pools[i].fd = -1;
  __atomic_store_n(&pool_fds[i], -1, __ATOMIC_RELAXED);
}

void sf_pool_add(int fd, uint32_t net, uint32_t prefix) {
  fd = sf_fd_move_high(fd);
  uint32_t mask = sf_prefix_mask(prefix);
  if (!pool_lock()) {
    REAL(close)(fd);
    return;
  }
  int slot = -1;
  for (int i = 0; i < NPOOLS; i++) {
    if (pools[i].fd >= 0 && !pools[i].dead && pools[i].net == (net & mask) && pools[i].mask == mask) {
      slot = -2; /* have one already: a reconnect raced; keep the first */
      break;
    }
    if (pools[i].fd < 0 && slot == -1) slot = i;
  }
  if (slot < 0) {
    pool_unlock();
    REAL(close)(fd);
    return;
  }
  sf_tab_mark_internal(fd, -1);
  pools[slot] = (struct pool){.fd = fd, .net = net & mask, .mask = mask};
  __atomic_store_n(&pool_fds[slot], fd, __ATOMIC_RELAXED);
  pool_unlock();
  SF_DEBUG("pool channel fd %d for route /%u", fd, prefix);
}

void sf_pool_drop_all(void) {
  if (!pool_lock()) return; /* their channels read EOF once the broker is gone */
  for (int i = 0; i < NPOOLS; i++) {
    if (pools[i].fd < 0) continue;
    pools[i].dead = 1;
    if (pools[i].users == 0) close_pool_locked(i);
  }
  memset(oks, 0, sizeof oks);
  pool_unlock();
}

/* Lock order: the broker's mu (taken first by its own prepare handler), then pmu. */
void sf_pool_atfork_prepare(void) {
  if (pool_lock()) fork_locked = 1;
}

void sf_pool_atfork_parent(void) {
  if (!fork_locked) return;
  fork_locked = 0;
  pool_unlock();
}

void sf_pool_atfork_child(void) {
  fork_locked = 0;
  in_pool = 0;
  pthread_mutex_init(&pmu, NULL);
  for (int i = 0; i < NPOOLS; i++) {
    if (pools[i].fd >= 0) close_pool_locked(i); /* the parent's: its broker stocks them */
    pools[i] = (struct pool){.fd = -1};
  }
  memset(oks, 0, sizeof oks);
}

static unsigned ok_slot(uint32_t ip, uint16_t port) { return (ip * 2654435761u ^ port) % NOK; }

void sf_pool_confirm(uint32_t ip, uint16_t port) {
  if (!pool_lock()) return;
  struct okdst *o = &oks[ok_slot(ip, port)];
  o->ip = ip;
  o->port = port;
  o->until = sf_now_ns() + OK_TTL_NS;
  pool_unlock();
}

int sf_pool_is_fd(int fd) {
  if (fd < 0) return 0;
  for (int i = 0; i < NPOOLS; i++)
    if (__atomic_load_n(&pool_fds[i], __ATOMIC_RELAXED) == fd) return 1;
  return 0;
}

void sf_pool_relocate(int fd) {
  if (!pool_lock()) return;
  for (int i = 0; i < NPOOLS; i++) {
    if (pools[i].fd != fd) continue;
    int n = sf_fd_dup_high(fd);
    if (n >= 0 && n != fd) {
      sf_tab_mark_internal(n, -1);
      pools[i].fd = n;
      __atomic_store_n(&pool_fds[i], n, __ATOMIC_RELAXED);
      sf_tab_drop(fd);
      REAL(close)(fd);
    }
  }
  pool_unlock();
}

/* A taken socket is usable if it is neither closed nor reset by the peer, nor carries data (the
   receiving broker never sends any). */
static int alive(int fd) {
  char b;
  ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* The broker closed its end: it dropped this pool (say, a policy now restricts the container), and
   what is still queued must not be used. Queued messages stay readable after a hangup, so ask. */
static int hung_up(int pfd) {
  struct pollfd p = {.fd = pfd, .events = POLLRDHUP};
  return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR));
}

static int report(int pfd, uint32_t used, uint32_t gone, int empty) {
  struct sf_msg m;
  memset(&m, 0, sizeof m);
  m.type = SF_POOL_TOOK;
  m.version = SF_MSG_VERSION;
  m.status = empty;
  m.a = (uint64_t)used | ((uint64_t)gone << 32);
  /* Never blocks; what a full channel refuses goes in the next report. */
  if (send(pfd, &m, sizeof m, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)sizeof m) return 0;
  SF_DEBUG("pool report: %s", strerror(errno));
  return -1;
}

int sf_pool_take(uint32_t ip, uint16_t port, uint16_t bound_port, int *out_fd, uint16_t *out_sport) {
  /* A privileged bound port goes through the broker, which signs it once it knows we may use it:
     receivers refuse pooled headers with one. */
  if (bound_port && ntohs(bound_port) < SF_POOLED_SPORT_MIN) return -1;
  int saved = errno;
  if (!pool_lock()) return -1;
  struct okdst *o = &oks[ok_slot(ip, port)];
  int i = -1;
  if (o->ip == ip && o->port == port && sf_now_ns() < o->until) {
    for (int k = 0; k < NPOOLS; k++)
      if (pools[k].fd >= 0 && !pools[k].dead && (ip & pools[k].mask) == pools[k].net) {
        i = k;
        break;
      }
  }
  if (i < 0) {
    pool_unlock();
    return -1;
  }
  struct pool *p = &pools[i];
  p->users++;
  int pfd = p->fd;
  pool_unlock();

  int fd = -1, empty = 0, dead = hung_up(pfd);
  struct sf_pooled pm;
  uint32_t gone = 0;
  for (int tries = 0; tries < MAX_TRIES && fd < 0 && !dead; tries++) {
    int rfd = -1, trunc = 0;
    ssize_t n = sf_recv_fd(pfd, &pm, sizeof pm, MSG_DONTWAIT | MSG_CMSG_CLOEXEC, &rfd, &trunc);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      empty = 1;
      break;
    }
    if (n <= 0) {
      dead = 1;
      break;
    }
    int ok = n == (ssize_t)sizeof pm && !(trunc & MSG_TRUNC) && pm.m.type == SF_POOLED && rfd >= 0 &&
             (uint64_t)sf_now_ns() - pm.m.a < SF_POOL_MAX_AGE_NS &&
             ((pm.m.status & SF_POOLED_DEFERRED) || alive(rfd)); /* deferred: nothing sent yet */
    if (!ok) {
      if (rfd >= 0) REAL(close)(rfd);
      gone++;
      continue;
    }
    fd = rfd;
  }
  uint16_t sport = 0;
  if (fd >= 0) {
    /* The broker's signed header with where to: the connection's first segment. */
    sport = bound_port ? bound_port : pm.m.port_a;
    pm.h.dst_vip = ip;
    pm.h.dst_port = port;
    pm.h.src_port = sport;
    if (send(fd, &pm.h, sizeof pm.h, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)sizeof pm.h) {
      REAL(close)(fd);
      fd = -1;
      gone++;
    }
  }
  pool_lock(); /* succeeds: a handler that interrupted us in between has returned */
  int found_empty = empty && fd < 0;
  int64_t now = sf_now_ns();
  uint32_t used = (fd >= 0) + p->owe_used;
  gone += p->owe_gone;
  int send_report = !dead && (used > 0 || gone > 0 || (found_empty && (!p->empty_reported_at || now - p->empty_reported_at > EMPTY_REPORT_NS)));
  if (send_report) p->empty_reported_at = found_empty ? now : 0;
  if (dead) p->dead = 1;
  p->owe_used = p->owe_gone = 0;
  pool_unlock();
  int unsent = send_report && report(pfd, used, gone, found_empty) != 0;
  pool_lock();
  if (unsent) {
    p->owe_used += used;
    p->owe_gone += gone;
  }
  if (--p->users == 0 && p->dead) close_pool_locked(i);
  pool_unlock();
  errno = saved;
  if (fd < 0) return -1;
  *out_fd = fd;
  *out_sport = sport;
  return 0;
}
