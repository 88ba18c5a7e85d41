/* Pre-established host connections: connect() without a round trip to the broker.
 *
 * After the first cross-host connect to a peer host, the broker sends this process a pool channel
 * for that peer's route (SF_POOL_CHANNEL) and keeps it stocked with connected host sockets on
 * which nothing was sent yet, each with a header the broker signed (source vIP, no destination).
 *
 * Two ways to use one. (1) socket() takes one from the pool this process's last connect used
 * (sf_pool_hand): the app's fd *is* the pooled socket, and a connect() to a destination that pool
 * covers only fills the destination into the header and sends it (sf_pool_connect): one syscall
 * each, as on the host. A connect elsewhere, bind, listen or dup first puts an ordinary socket in
 * its place (sf_unpool, swap.c) and the pooled one is counted as gone. (2) A socket that did not
 * get one takes one at connect() (sf_pool_take) and it is swapped onto the app's fd.
 *
 * Either way only to a destination the broker confirmed as a SlimFast listener in the last second;
 * anything else (an empty pool, an unconfirmed destination, a stale or dead socket) goes the
 * ordinary way through the broker. Takes are reported (SF_POOL_TOOK) in batches of the size the
 * broker asks for in each SF_POOLED (seq), and at once when the pool is found empty. A pool the
 * broker drops (a policy now restricts the container) is emptied by the broker itself before it
 * closes it, so nothing queued can be taken after; the next take finds it empty or closed.
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
#define NOK 64                    /* confirmed destinations remembered */
#define OK_TTL_NS 1000000000LL    /* how long a confirmation lets connects skip the broker */
#define VIEW_TTL_NS 30000000000LL /* ... with a view page that has not moved */
#define MAX_TRIES 16              /* stale sockets skipped in one take at most */
/* An empty pool is reported again after this: the broker may have backed off (peer down), and
   refills only when asked. */
#define EMPTY_REPORT_NS 1000000000LL
#define MAX_BATCH 64 /* takes left unreported at most, whatever the broker asks */
/* A socket held longer than this between socket() and connect() is used only once its channel is
   seen open: the broker may have dropped the pool (a new policy) meanwhile. */
#define HELD_CHECK_NS 20000000LL
#define HAND_SCORE_MAX 8

struct pool {
  int fd;             /* -1: free slot */
  uint32_t id;        /* names the pool in tickets; never reused */
  uint32_t net, mask; /* network order */
  int users;
  int dead;
  int64_t empty_reported_at;   /* last "found empty" report; 0: none since the last take */
  uint32_t owe_used, owe_gone; /* takes not reported yet */
  uint32_t batch;              /* report once this many are owed (the broker's SF_POOLED seq) */
  int want_block;              /* the last socket() it served wanted a blocking socket */
};

/* A remembered answer for ip:port: a confirmation (oks) or "not SlimFast's" (plains). */
struct okdst {
  uint32_t ip;
  uint16_t port;
  int64_t until;
  const struct sf_view *view; /* the page it was given under (NULL: none) */
  uint64_t at;                /* its gone (oks) or found (plains) counter then */
};

static pthread_mutex_t pmu = PTHREAD_MUTEX_INITIALIZER;
static struct pool pools[NPOOLS] = {[0 ... NPOOLS - 1] = {.fd = -1}};
static int pool_fds[NPOOLS] = {[0 ... NPOOLS - 1] = -1}; /* lock-free copy for sf_pool_is_fd */
static struct okdst oks[NOK], plains[NOK];
static const struct sf_view *view;
static uint32_t last_id;
/* socket() hands out sockets from hand_slot's pool while hand_score > 0: pooled connects raise it,
   sockets that connected elsewhere lower it twice as fast. */
static int hand_slot = -1, hand_score;
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
  pools[i].id = 0;
  __atomic_store_n(&pool_fds[i], -1, __ATOMIC_RELAXED);
  if (hand_slot == i) hand_slot = -1;
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
  if (++last_id == 0) last_id = 1;
  pools[slot] = (struct pool){.fd = fd, .id = last_id, .net = net & mask, .mask = mask, .batch = 1};
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
  memset(plains, 0, sizeof plains);
  view = NULL; /* the next broker's HELLO brings its own */
  hand_slot = -1;
  hand_score = 0;
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

/* The child's tickets name the parent's pools, which it closes here: they are never used (its
   POOLED sockets get ordinary ones at connect), so parent and child never both send a header. */
void sf_pool_atfork_child(void) {
  fork_locked = 0;
  in_pool = 0;
  pthread_mutex_init(&pmu, NULL);
  for (int i = 0; i < NPOOLS; i++) {
    if (pools[i].fd >= 0) close_pool_locked(i); /* the parent's: its broker stocks them */
    pools[i] = (struct pool){.fd = -1};
  }
  memset(oks, 0, sizeof oks);
  memset(plains, 0, sizeof plains);
  view = NULL;
  hand_slot = -1;
  hand_score = 0;
}

static unsigned ok_slot(uint32_t ip, uint16_t port) { return (ip * 2654435761u ^ port) % NOK; }

static int covering_locked(uint32_t ip) {
  for (int k = 0; k < NPOOLS; k++)
    if (pools[k].fd >= 0 && !pools[k].dead && (ip & pools[k].mask) == pools[k].net) return k;
  return -1;
}

/* A connect used pool i: socket() keeps handing out its sockets. */
static void hit_locked(int i) {
  hand_slot = i;
  if (hand_score < HAND_SCORE_MAX) hand_score++;
}

/* A socket from pool i was connected somewhere the pool does not go. */
static void miss_locked(int i) {
  if (hand_slot == i) hand_score -= 2;
}

/* The slot of the pool a ticket names, or -1. */
static int find_locked(uint32_t id) {
  for (int k = 0; k < NPOOLS; k++)
    if (pools[k].id == id && pools[k].fd >= 0) return k;
  return -1;
}

/* One user of pool i leaves; the last one closes a dead pool. */
static void release_locked(int i) {
  if (--pools[i].users == 0 && pools[i].dead) close_pool_locked(i);
}

static uint64_t view_count(const struct sf_view *v, int found) {
  return __atomic_load_n(found ? &v->found : &v->gone, __ATOMIC_ACQUIRE);
}

static void remember_locked(struct okdst *o, uint32_t ip, uint16_t port, int found) {
  o->ip = ip;
  o->port = port;
  o->view = view;
  o->at = view ? view_count(view, found) : 0;
  o->until = sf_now_ns() + (view ? VIEW_TTL_NS : OK_TTL_NS);
}

/* An answer still good: given under the live page and that counter has not moved since, or (no
   page) younger than a second. */
static int fresh_locked(const struct okdst *o, uint32_t ip, uint16_t port, int found) {
  if (o->ip != ip || o->port != port || sf_now_ns() >= o->until) return 0;
  if (!o->view) return !view;
  return o->view == view && view_count(view, found) == o->at;
}

void sf_pool_set_view(const struct sf_view *v) {
  if (!pool_lock()) return;
  view = v;
  pool_unlock();
}

void sf_pool_confirm(uint32_t ip, uint16_t port) {
  if (!pool_lock()) return;
  remember_locked(&oks[ok_slot(ip, port)], ip, port, 0);
  struct okdst *p = &plains[ok_slot(ip, port)];
  if (p->ip == ip && p->port == port) p->until = 0;
  int i = covering_locked(ip);
  if (i >= 0) hit_locked(i);
  pool_unlock();
}

static int confirmed_locked(uint32_t ip, uint16_t port) { return fresh_locked(&oks[ok_slot(ip, port)], ip, port, 0); }

void sf_pool_note_plain(uint32_t ip, uint16_t port) {
  if (!pool_lock()) return;
  if (view) remember_locked(&plains[ok_slot(ip, port)], ip, port, 1); /* without a page: ask each time */
  pool_unlock();
}

int sf_pool_is_plain(uint32_t ip, uint16_t port) {
  if (!__atomic_load_n(&view, __ATOMIC_RELAXED) || !pool_lock()) return 0;
  int r = fresh_locked(&plains[ok_slot(ip, port)], ip, port, 1);
  pool_unlock();
  return r;
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

/* A taken socket that was connected before it was queued is usable if it is neither closed nor
   reset by the peer, nor carries data (the receiving broker never sends any). */
static int alive(int fd) {
  char b;
  ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* The broker closed its end (after emptying the channel: it dropped this pool). */
static int hung_up(int pfd) {
  struct pollfd p = {.fd = pfd, .events = POLLRDHUP};
  return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR));
}

static int report(int pfd, uint32_t used, uint32_t gone, int empty, int want_block) {
  struct sf_msg m;
  memset(&m, 0, sizeof m);
  m.type = SF_POOL_TOOK;
  m.version = SF_MSG_VERSION;
  m.status = (empty ? SF_TOOK_EMPTY : 0) | (want_block ? SF_TOOK_BLOCKING : 0);
  m.a = (uint64_t)used | ((uint64_t)gone << 32);
  /* Never blocks; what a full channel refuses goes in the next report. */
  if (send(pfd, &m, sizeof m, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)sizeof m) return 0;
  SF_DEBUG("pool report: %s", strerror(errno));
  return -1;
}

/* Pool i (a user held, released here) had `used` sockets used (a hit: see hit_locked) and `gone`
   discarded; reports what is owed once a batch is full or the pool was found empty. batch: the
   broker's latest ask (0: as before). */
static void account(int i, uint32_t used, uint32_t gone, int found_empty, int dead, uint32_t batch) {
  struct pool *p = &pools[i];
  pool_lock(); /* succeeds: a handler that interrupted us in between has returned */
  if (used) hit_locked(i);
  if (batch) p->batch = batch < MAX_BATCH ? batch : MAX_BATCH;
  p->owe_used += used;
  p->owe_gone += gone;
  int64_t now = found_empty ? sf_now_ns() : 0;
  int send_report =
      !dead && p->owe_used + p->owe_gone > 0 && (p->owe_used + p->owe_gone >= (p->batch ? p->batch : 1) || found_empty);
  if (found_empty && !dead && !send_report && (!p->empty_reported_at || now - p->empty_reported_at > EMPTY_REPORT_NS))
    send_report = 1;
  uint32_t u = 0, g = 0;
  if (send_report) {
    u = p->owe_used;
    g = p->owe_gone;
    p->owe_used = p->owe_gone = 0;
    p->empty_reported_at = found_empty ? now : 0;
  }
  if (dead) p->dead = 1;
  int pfd = p->fd, wb = p->want_block;
  pool_unlock();
  int unsent = send_report && report(pfd, u, g, found_empty, wb) != 0;
  pool_lock();
  if (unsent) {
    p->owe_used += u;
    p->owe_gone += g;
  }
  release_locked(i);
  pool_unlock();
}

/* Up to MAX_TRIES messages from pool channel pfd until a usable socket: *fd (-1: none), *pm its
   message; *empty / *dead: why none; returns how many were discarded. */
static uint32_t receive(int pfd, int flags, int *fd, struct sf_pooled *pm, int *empty, int *dead) {
  uint32_t gone = 0;
  *fd = -1;
  for (int tries = 0; tries < MAX_TRIES; tries++) {
    int rfd = -1, trunc = 0;
    ssize_t n = sf_recv_fd(pfd, pm, sizeof *pm, MSG_DONTWAIT | flags, &rfd, &trunc);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      *empty = 1;
      break;
    }
    if (n <= 0) {
      *dead = 1;
      break;
    }
    int ok = n == (ssize_t)sizeof *pm && !(trunc & MSG_TRUNC) && pm->m.type == SF_POOLED && rfd >= 0 &&
             (uint64_t)sf_now_ns() - pm->m.a < SF_POOL_MAX_AGE_NS &&
             ((pm->m.status & SF_POOLED_DEFERRED) || alive(rfd)); /* deferred: nothing sent yet */
    if (!ok) {
      if (rfd >= 0) REAL(close)(rfd);
      gone++;
      continue;
    }
    *fd = rfd;
    break;
  }
  return gone;
}

int sf_pool_hand(int cloexec, int nonblock, int *out_fd, struct sf_ticket *t) {
  if (__atomic_load_n(&hand_score, __ATOMIC_RELAXED) <= 0) return -1;
  int saved = errno;
  if (!pool_lock()) return -1;
  int i = hand_slot;
  if (i < 0 || hand_score <= 0 || pools[i].fd < 0 || pools[i].dead) {
    pool_unlock();
    return -1;
  }
  struct pool *p = &pools[i];
  p->users++;
  p->want_block = !nonblock;
  int pfd = p->fd;
  uint32_t id = p->id;
  pool_unlock();

  int fd, empty = 0, dead = 0;
  struct sf_pooled pm;
  uint32_t gone = receive(pfd, cloexec ? MSG_CMSG_CLOEXEC : 0, &fd, &pm, &empty, &dead);
  account(i, 0, gone, empty && fd < 0, dead, fd >= 0 ? pm.m.seq : 0);
  errno = saved;
  if (fd < 0) return -1;
  memset(t, 0, sizeof *t);
  t->h = pm.h;
  t->made_ns = (int64_t)pm.m.a;
  t->taken_ns = sf_now_ns();
  t->pool = id;
  t->sport = pm.m.port_a;
  t->deferred = (pm.m.status & SF_POOLED_DEFERRED) != 0;
  t->nonblock = (pm.m.status & SF_POOLED_NONBLOCK) != 0;
  *out_fd = fd;
  return 0;
}

/* Sends the ticket's header with the destination filled in: the connection's first segment. */
static int send_header(int fd, struct sf_hdr *h, uint32_t ip, uint16_t port, uint16_t sport) {
  h->dst_vip = ip;
  h->dst_port = port;
  h->src_port = sport;
  return send(fd, h, sizeof *h, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)sizeof *h ? 0 : -1;
}

int sf_pool_connect(int fd, struct sf_ticket *t, uint32_t ip, uint16_t port, uint16_t bound_port) {
  if (!t->pool) return -1;
  /* A privileged bound port goes through the broker, which signs it once it knows we may use it:
     receivers refuse pooled headers with one. */
  if (bound_port && ntohs(bound_port) < SF_POOLED_SPORT_MIN) return -1;
  int64_t now = sf_now_ns();
  if ((uint64_t)(now - t->made_ns) >= SF_POOL_MAX_AGE_NS) return -1;
  int saved = errno;
  if (!pool_lock()) return -1;
  int i = find_locked(t->pool);
  if (i >= 0 && pools[i].dead) i = -1;
  int ok = i >= 0 && (ip & pools[i].mask) == pools[i].net && confirmed_locked(ip, port);
  if (i >= 0 && !ok) miss_locked(i);
  int pfd = i >= 0 ? pools[i].fd : -1;
  if (ok) pools[i].users++;
  pool_unlock();
  if (!ok) return -1;
  int r = now - t->taken_ns > HELD_CHECK_NS && hung_up(pfd) ? -1 : 0;
  if (r == 0) r = send_header(fd, &t->h, ip, port, bound_port ? bound_port : t->sport);
  if (r == 0) {
    if (bound_port) t->sport = bound_port;
    t->pool = 0;
    account(i, 1, 0, 0, 0, 0);
  } else {
    pool_lock();
    release_locked(i); /* the caller settles the ticket */
    pool_unlock();
  }
  errno = saved;
  return r;
}

void sf_pool_settle(struct sf_ticket *t, int how) {
  if (!t->pool) return;
  uint32_t id = t->pool;
  t->pool = 0;
  if (!pool_lock()) return;
  int i = find_locked(id);
  if (i >= 0 && how == SF_TK_MISSED) miss_locked(i);
  if (i >= 0) pools[i].users++;
  pool_unlock();
  if (i >= 0) account(i, 0, 1, 0, 0, 0);
}

/* At exit: the takes not reported yet, so that the broker's counts are whole. */
__attribute__((destructor)) static void flush_reports(void) {
  if (!pool_lock()) return;
  for (int i = 0; i < NPOOLS; i++) {
    struct pool *p = &pools[i];
    if (p->fd < 0 || p->dead || p->owe_used + p->owe_gone == 0) continue;
    if (report(p->fd, p->owe_used, p->owe_gone, 0, p->want_block) == 0) p->owe_used = p->owe_gone = 0;
  }
  pool_unlock();
}

int sf_pool_take(uint32_t ip, uint16_t port, uint16_t bound_port, int *out_fd, uint16_t *out_sport) {
  if (bound_port && ntohs(bound_port) < SF_POOLED_SPORT_MIN) return -1;
  int saved = errno;
  if (!pool_lock()) return -1;
  int i = confirmed_locked(ip, port) ? covering_locked(ip) : -1;
  if (i < 0) {
    pool_unlock();
    return -1;
  }
  struct pool *p = &pools[i];
  p->users++;
  int pfd = p->fd;
  pool_unlock();

  int fd, empty = 0, dead = 0;
  struct sf_pooled pm;
  uint32_t gone = receive(pfd, MSG_CMSG_CLOEXEC, &fd, &pm, &empty, &dead);
  uint16_t sport = 0;
  if (fd >= 0) {
    sport = bound_port ? bound_port : pm.m.port_a;
    if (send_header(fd, &pm.h, ip, port, sport) != 0) {
      REAL(close)(fd);
      fd = -1;
      gone++;
    }
  }
  account(i, fd >= 0, gone, empty && fd < 0, dead, fd >= 0 ? pm.m.seq : 0);
  errno = saved;
  if (fd < 0) return -1;
  *out_fd = fd;
  *out_sport = sport;
  return 0;
}
