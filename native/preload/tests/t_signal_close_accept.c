/* Signal handlers that close() SlimFast sockets (connections and listeners) and accept() on a
 * non-blocking SlimFast listener, delivered to threads that are themselves inside the library
 * (connect, accept, dup, close in loops, so at times holding its fd-table and broker locks or
 * reading the broker's replies): every handler returns promptly with the kernel's answer (close
 * succeeds, accept gives a connection with its virtual peer address or EAGAIN), and afterwards the
 * library still hands out SlimFast sockets (no broker timeout made it fall back). */
#include "fixture.h"

#include <time.h>

#define NLISTEN 24
#define NCONN 96
#define LISTEN_EVERY 200 /* handler runs between closes of a stashed listener */
#define CONN_EVERY 50    /* ... of a stashed connection */

static int stash_l[NLISTEN], stash_c[NCONN];
static int left_l = NLISTEN, left_c = NCONN;
static int acc_fd;       /* non-blocking SlimFast listener the handlers accept on */
static uint32_t self_ip; /* the peer address of what they accept */

static long handled, closed_l, closed_c, accepted, eagain;
static long close_err, accept_err, peer_err, last_errno;
static int64_t max_ns;
static volatile int stop;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void note_err(long *counter, int err) {
  __atomic_add_fetch(counter, 1, __ATOMIC_RELAXED);
  __atomic_store_n(&last_errno, err, __ATOMIC_RELAXED);
}

static void on_usr1(int sig) {
  (void)sig;
  int saved = errno;
  int64_t t0 = now_ns();
  long k = __atomic_add_fetch(&handled, 1, __ATOMIC_RELAXED);
  if (k % LISTEN_EVERY == 0) {
    int i = __atomic_sub_fetch(&left_l, 1, __ATOMIC_RELAXED);
    if (i >= 0) {
      if (close(stash_l[i]) == 0)
        __atomic_add_fetch(&closed_l, 1, __ATOMIC_RELAXED);
      else
        note_err(&close_err, errno);
    }
  }
  if (k % CONN_EVERY == 0) {
    int i = __atomic_sub_fetch(&left_c, 1, __ATOMIC_RELAXED);
    if (i >= 0) {
      if (close(stash_c[i]) == 0)
        __atomic_add_fetch(&closed_c, 1, __ATOMIC_RELAXED);
      else
        note_err(&close_err, errno);
    }
  }
  struct sockaddr_in from;
  socklen_t fl = sizeof from;
  memset(&from, 0, sizeof from);
  int a = accept(acc_fd, (struct sockaddr *)&from, &fl);
  if (a >= 0) {
    __atomic_add_fetch(&accepted, 1, __ATOMIC_RELAXED);
    if (fl != sizeof from || from.sin_family != AF_INET || from.sin_addr.s_addr != self_ip) note_err(&peer_err, 0);
    if (close(a) != 0) note_err(&close_err, errno);
  } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
    __atomic_add_fetch(&eagain, 1, __ATOMIC_RELAXED);
  } else {
    note_err(&accept_err, errno);
  }
  int64_t dt = now_ns() - t0, m = __atomic_load_n(&max_ns, __ATOMIC_RELAXED);
  while (dt > m && !__atomic_compare_exchange_n(&max_ns, &m, dt, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
  errno = saved;
}

static struct sockaddr_in echo_dst, acc_dst;
static long main_iters, worker_iters;

/* Connects to the listener the handlers accept on, and accepts there too. */
static void *worker(void *arg) {
  (void)arg;
  while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) continue;
    int r = connect(s, (struct sockaddr *)&acc_dst, sizeof acc_dst);
    CHECKF(r == 0, "worker connect to %s: %s", fx_fmt(&acc_dst), strerror(errno));
    fx_expect_slimfast(s, "worker connect");
    int d = dup(s);
    close(s);
    int a = accept4(acc_fd, NULL, NULL, SOCK_CLOEXEC);
    CHECKF(a >= 0 || errno == EAGAIN || errno == EWOULDBLOCK, "worker accept: %s", strerror(errno));
    if (a >= 0) close(a);
    if (d >= 0) close(d);
    worker_iters++;
  }
  return NULL;
}

static pthread_t targets[2];
static void *signaller(void *arg) {
  (void)arg;
  while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
    for (int i = 0; i < 2; i++) pthread_kill(targets[i], SIGUSR1);
    usleep(250);
  }
  return NULL;
}

int main(int argc, char **argv) {
  fx_init(argc, argv);
  self_ip = fx_self_ip();
  echo_dst = fx_echo_target();
  acc_fd = fx_listen(INADDR_ANY, 0, SOCK_NONBLOCK);
  fx_expect_slimfast(acc_fd, "listener");
  acc_dst = fx_mkaddr(self_ip, fx_port(acc_fd));
  for (int i = 0; i < NLISTEN; i++) {
    stash_l[i] = fx_listen(INADDR_ANY, 0, 0);
    fx_expect_slimfast(stash_l[i], "stashed listener");
  }
  for (int i = 0; i < NCONN; i++) {
    stash_c[i] = fx_connect(&echo_dst);
    fx_expect_slimfast(stash_c[i], "stashed connection");
  }

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sa.sa_flags = SA_RESTART;
  CHECK_SYS(sigaction(SIGUSR1, &sa, NULL));
  targets[0] = pthread_self();
  pthread_t w, sg;
  CHECK(pthread_create(&w, NULL, worker, NULL) == 0);
  targets[1] = w;
  CHECK(pthread_create(&sg, NULL, signaller, NULL) == 0);

  double end = fx_now() + 1.5;
  while (fx_now() < end) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) continue;
    int r = connect(s, (struct sockaddr *)&echo_dst, sizeof echo_dst);
    CHECKF(r == 0, "connect to %s: %s", fx_fmt(&echo_dst), strerror(errno));
    fx_expect_slimfast(s, "connect during the storm");
    int d = dup(s);
    CHECK(d >= 0);
    CHECK_SYS(close(s));
    if (main_iters % 16 == 0) fx_echo_check(d, "storm\n");
    CHECK_SYS(close(d));
    main_iters++;
  }
  __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
  pthread_join(sg, NULL);
  pthread_join(w, NULL);
  signal(SIGUSR1, SIG_IGN);

  printf(
      "%ld + %ld iterations, %ld handlers (max %.1f ms): closed %ld listeners, %ld connections; "
      "accepted %ld, EAGAIN %ld\n",
      main_iters, worker_iters, handled, max_ns / 1e6, closed_l, closed_c, accepted, eagain);
  CHECKF(close_err == 0, "%ld close() in a handler failed (errno %ld)", close_err, last_errno);
  CHECKF(accept_err == 0, "%ld accept() in a handler failed (errno %ld: %s)", accept_err, last_errno,
         strerror((int)last_errno));
  CHECKF(peer_err == 0, "%ld accept() in a handler gave a wrong peer address", peer_err);
  CHECKF(max_ns < 500000000, "a handler took %.0f ms", max_ns / 1e6);
  CHECKF(handled > 200 && closed_l > 0 && closed_c > 0 && main_iters > 20,
         "too little happened: %ld handlers, %ld iterations", handled, main_iters);
  for (int i = __atomic_load_n(&left_l, __ATOMIC_RELAXED) - 1; i >= 0; i--) CHECK_SYS(close(stash_l[i]));
  for (int i = __atomic_load_n(&left_c, __ATOMIC_RELAXED) - 1; i >= 0; i--) CHECK_SYS(close(stash_c[i]));

  /* still on SlimFast, listeners included */
  int c = fx_connect(&echo_dst);
  fx_expect_slimfast(c, "connect after the storm");
  fx_echo_check(c, "after the storm\n");
  close(c);
  int l = fx_listen(INADDR_ANY, 0, 0);
  fx_expect_slimfast(l, "listener after the storm");
  close(l);
  close(acc_fd);
  fx_pass();
}
