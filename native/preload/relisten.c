/* The watcher: listeners outlive their broker.
 *
 * A broker that dies (SIGKILL, a crash) takes its ends of the listener channels with it, and a new
 * broker that takes its state directory over knows the containers again but not their listeners.
 * Without help, a listening application would get nothing over SlimFast until it listened anew.
 * So every process that has a SlimFast listener runs one small thread, started with its first
 * listener (and again in a fork child that uses one):
 *
 *   - it polls the broker connection for a hangup only (POLLRDHUP; the request/reply readers in
 *     broker.c are not disturbed), waking once a second to look at the current connection;
 *   - on a hangup it marks the connection dead and goes over the fd table: a channel listener
 *     whose channel is dead and drained gets its own listening socket back (SF_K_ORPHAN: plain
 *     clients are served meanwhile), and once a broker answers (every 100 ms, backing off to 1 s)
 *     it is registered again on the same fd number; a steered listener keeps its host socket (the
 *     kernel still steers to it until the new broker replaces the group's program) and hands it to
 *     the new broker (SF_STEER_AGAIN), which gives it a slot and a new channel.
 *
 * The thread blocks every signal (application handlers never run on it) and takes the same locks
 * in the same order as any other thread calling into the library.
 */
#include "sf.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BACKLOG 511
#define MAX_CANDS 64

static int started; /* this process's watcher runs (a fork child starts with none) */

struct cand {
  int fd;
  struct sf_entry e;
};
/* Only the watcher thread uses these (one per process). */
static struct cand cands[MAX_CANDS];
static int ncands, overflow;

static int collect(int fd, const struct sf_entry *e, void *arg) {
  (void)arg;
  if (e->kind != SF_K_CHAN && e->kind != SF_K_STEER && e->kind != SF_K_ORPHAN) return 0;
  if (ncands == MAX_CANDS) {
    overflow++;
    return 0;
  }
  cands[ncands].fd = fd;
  cands[ncands].e = *e;
  ncands++;
  return 0;
}

/* A listener channel: 0 = its broker end is open; 1 = gone and nothing queued; 2 = gone, with
   connections still queued for the application (it takes them first). */
static int chan_state(int ch) {
  struct pollfd p = {ch, 0, 0};
  if (poll(&p, 1, 0) != 1 || !(p.revents & (POLLHUP | POLLERR))) return 0;
  char b;
  ssize_t n = recv(ch, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return n > 0 ? 2 : 1;
}

/* An orphaned listener to the broker: 0 done (or nothing to do), 1 try again later. */
static int register_orphan(int fd, struct sf_entry *e) {
  /* not claimed: closed, replaced, or another thread is at it */
  if (sf_claim(fd, SF_K_ORPHAN, &e->ino, NULL) != 1) return 0;
  int saved = errno;
  int r = sf_listen_register(fd, e, BACKLOG);
  errno = saved;
  if (r == 0) {
    SF_DEBUG("listener fd %d registered again", fd);
    return 0;
  }
  if (r == 1) {
    sf_unclaim(fd, SF_K_ORPHAN);
    return 1;
  }
  /* refused (or the swap failed): an ordinary listener from now on */
  struct sf_entry old;
  if (r < 0 && sf_tab_del(fd, &old) == 1) sf_entry_release(&old);
  SF_DEBUG("listener fd %d stays an ordinary listening socket", fd);
  return 0;
}

struct rechan {
  uint64_t ino;
  int old_hidden, chan, ok;
};
/* Under fd's slot lock (so that a concurrent close() of the listener cannot free the number in
   between): the new channel goes onto the old hidden fd's number, which every copy of the entry
   (also one another thread is using right now) refers to. */
static int upd_rechan(struct sf_entry *e, int present, void *arg) {
  struct rechan *a = arg;
  a->ok = present && e->kind == SF_K_STEER && e->ino == a->ino && e->hidden_fd == a->old_hidden &&
          REAL(dup3)(a->chan, a->old_hidden, O_CLOEXEC) == a->old_hidden;
  return SF_UPD_KEEP;
}

/* A steered listener whose broker went away becomes an orphan: a fresh listening socket on its
   virtual address takes the fd (what is queued on the host socket is lost). */
static int steered_to_orphan(int fd, struct sf_entry *e) {
  if (sf_unsteer(fd, e, SF_K_ORPHAN, 0) != 0) return 1;
  SF_DEBUG("steered listener fd %d: a listening socket of its own again", fd);
  return register_orphan(fd, e);
}

/* A steered listener to the new broker: 0 done, 1 try again later. */
static int steer_again(int fd, struct sf_entry *e, const struct sf_info *inf) {
  if (!(inf->features & SF_FEAT_STEER_AGAIN)) return steered_to_orphan(fd, e);
  int fds[2] = {fd, -1}, n = 1;
  int plain = sf_relisten(e); /* for clients that do not come through SlimFast */
  if (plain >= 0) fds[n++] = plain;
  struct sf_msg req, rep;
  memset(&req, 0, sizeof req);
  req.type = SF_STEER_AGAIN;
  req.vip_a = e->l_ip;
  req.port_a = e->l_port;
  int rfd = -1;
  int r = sf_broker_call_fds(&req, fds, n, &rep, &rfd);
  if (plain >= 0) REAL(close)(plain);
  if (r != 0) return 1;
  if (rep.type != SF_LISTEN_OK || rep.status != 0 || rfd < 0) {
    if (rfd >= 0) REAL(close)(rfd);
    SF_DEBUG("steered listener fd %d: the broker cannot steer it again (%d)", fd, rep.status);
    return steered_to_orphan(fd, e);
  }
  struct rechan a = {e->ino, e->hidden_fd, rfd, 0};
  sf_tab_update(fd, upd_rechan, &a);
  REAL(close)(rfd);
  SF_DEBUG("steered listener fd %d: %s", fd, a.ok ? "steered again" : "gone meanwhile");
  return 0;
}

/* One pass over this process's listeners: how many still wait for a broker. */
static int pass(void) {
  ncands = overflow = 0;
  sf_tab_scan(0, SF_TAB_MAXFD - 1, collect, NULL);
  int waiting = overflow;
  int have = -1; /* whether a broker answers: asked once per pass, when needed */
  struct sf_info inf;
  memset(&inf, 0, sizeof inf);
#define BROKER_UP() (have < 0 ? (have = sf_broker_reconnect(&inf) == 0) : have)
  for (int i = 0; i < ncands; i++) {
    int fd = cands[i].fd;
    struct sf_entry e = cands[i].e;
    if (e.ino && sf_fd_ino(fd) != e.ino) continue; /* closed behind our back: not ours */
    if (e.kind == SF_K_CHAN) {
      int st = chan_state(fd);
      if (st == 0) continue;
      if (st == 2) {
        waiting++;
        continue;
      }
      if (sf_channel_fallback(fd, NULL) != 0 || !sf_tab_get(fd, &e) || e.kind != SF_K_ORPHAN) continue;
    }
    if (e.kind == SF_K_ORPHAN) {
      if (!BROKER_UP() || register_orphan(fd, &e)) waiting++;
    } else if (e.kind == SF_K_STEER && e.hidden_fd >= 0 && chan_state(e.hidden_fd) != 0) {
      if (!BROKER_UP() || steer_again(fd, &e, &inf)) waiting++;
    }
  }
#undef BROKER_UP
  return waiting;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static void *watch_main(void *arg) {
  (void)arg;
  int delay = 0; /* ms until the next pass; 0 = nothing waits, watch the connection */
  for (;;) {
    if (delay) {
      sleep_ms(delay);
    } else {
      int bfd = sf_broker_watch_fd();
      if (bfd < 0) {
        sleep_ms(1000); /* no connection now: a failed request dropped it, or none yet */
      } else {
        struct pollfd p = {bfd, POLLRDHUP, 0};
        int n = poll(&p, 1, 1000);
        if (n == 0 || (n < 0 && errno == EINTR)) continue;
        if (n == 1 && (p.revents & POLLNVAL)) {
          sleep_ms(10); /* moved or closed meanwhile: look again */
          continue;
        }
        if (n == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) sf_broker_hangup(bfd);
      }
    }
    int waiting = pass();
    delay = !waiting ? 0 : !delay ? 100 : delay >= 500 ? 1000 : delay * 2;
  }
  return NULL;
}

void sf_watch_ensure(void) {
  if (__atomic_load_n(&started, __ATOMIC_ACQUIRE) || !sf_conf.enabled || !sf_table_owner()) return;
  int expect = 0;
  if (!__atomic_compare_exchange_n(&started, &expect, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return;
  int saved = errno;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old); /* the thread starts with every signal blocked */
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&a, 256 * 1024);
  pthread_t t;
  int r = pthread_create(&t, &a, watch_main, NULL);
  pthread_attr_destroy(&a);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  /* without it (thread limit, ...) listeners simply stay ordinary after a broker restart */
  if (r != 0) SF_DEBUG("no listener watcher: %s", strerror(r));
  errno = saved;
}

void sf_watch_atfork_child(void) { __atomic_store_n(&started, 0, __ATOMIC_RELAXED); }
