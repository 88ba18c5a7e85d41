/* Signals: a blocking accept() on a SlimFast listener returns EINTR when a handler without
 * SA_RESTART runs; a handler that creates and closes tracked sockets while the main thread is busy
 * with the same calls never deadlocks. */
#include "fixture.h"

#include <time.h>

static volatile sig_atomic_t handled;

static void on_usr1(int sig) { (void)sig; }

static void on_usr2(int sig) {
  (void)sig;
  int saved = errno;
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s >= 0) {
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int d = dup(s);
    close(s);
    if (d >= 0) close(d);
  }
  handled++;
  errno = saved;
}

static pthread_t main_thread;
static void *poke(void *arg) {
  (void)arg;
  usleep(200000);
  pthread_kill(main_thread, SIGUSR1);
  return NULL;
}

int main(int argc, char **argv) {
  fx_init(argc, argv);
  /* EINTR from accept() */
  if (getenv("SF_TEST_SELF_IP")) {
    int lfd = fx_listen(INADDR_ANY, 0, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    CHECK_SYS(sigaction(SIGUSR1, &sa, NULL));
    main_thread = pthread_self();
    pthread_t t;
    CHECK(pthread_create(&t, NULL, poke, NULL) == 0);
    int r = accept(lfd, NULL, NULL);
    CHECKF(r == -1 && errno == EINTR, "accept: r=%d %s", r, strerror(errno));
    pthread_join(t, NULL);
    /* still usable afterwards */
    struct sockaddr_in d = fx_mkaddr(fx_self_ip(), fx_port(lfd));
    int c = fx_connect(&d);
    int a = (int)CHECK_SYS(accept(lfd, NULL, NULL));
    close(a), close(c), close(lfd);
  }

  /* a signal storm against the fd table */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr2;
  sa.sa_flags = SA_RESTART;
  CHECK_SYS(sigaction(SIGUSR2, &sa, NULL));
  timer_t tid;
  struct sigevent sev;
  memset(&sev, 0, sizeof sev);
  sev.sigev_notify = SIGEV_SIGNAL;
  sev.sigev_signo = SIGUSR2;
  CHECK_SYS(timer_create(CLOCK_MONOTONIC, &sev, &tid));
  struct itimerspec its = {{0, 200000}, {0, 200000}};
  CHECK_SYS(timer_settime(tid, 0, &its, NULL));
  int ep = (int)CHECK_SYS(epoll_create1(0));
  long iters = 0;
  double end = fx_now() + 1.5;
  while (fx_now() < end) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) continue;
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    struct epoll_event ev = {EPOLLIN, {.u64 = 1}};
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    int d = dup(s);
    epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL);
    close(s);
    if (d >= 0) close(d);
    iters++;
  }
  its = (struct itimerspec){{0, 0}, {0, 0}};
  timer_settime(tid, 0, &its, NULL);
  timer_delete(tid);
  printf("%ld iterations, %d signals handled\n", iters, (int)handled);
  CHECK(iters > 100 && handled > 10);
  close(ep);
  fx_pass();
}
