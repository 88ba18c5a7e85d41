/* shutdown(SHUT_RD|SHUT_RDWR) on a listener behaves as on a kernel listener: accept() calls
 * blocked on it (on this fd or a dup of it) wake with EINVAL, later ones fail with EINVAL at once,
 * epoll wakes, connections not accepted yet are dropped, a second shutdown says ENOTCONN, SHUT_WR
 * does nothing and listen() starts it again. A SlimFast listener stays a SlimFast listener
 * throughout (a shut-down channel is not mistaken for a dead broker). */
#include "fixture.h"

struct waiter {
  int fd;
  volatile int done;
  int result, err;
};

static void *accept_thread(void *arg) {
  struct waiter *w = arg;
  w->result = accept(w->fd, NULL, NULL);
  w->err = errno;
  __atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
  return NULL;
}

static void start_waiter(struct waiter *w, pthread_t *t, int fd) {
  memset(w, 0, sizeof *w);
  w->fd = fd;
  CHECK(pthread_create(t, NULL, accept_thread, w) == 0);
  usleep(200000); /* let it block in accept() */
  CHECKF(!__atomic_load_n(&w->done, __ATOMIC_ACQUIRE), "accept() returned early: %d (%s)", w->result, strerror(w->err));
}

static void expect_einval(struct waiter *w, pthread_t t, const char *what) {
  double end = fx_now() + 5;
  while (!__atomic_load_n(&w->done, __ATOMIC_ACQUIRE) && fx_now() < end) usleep(5000);
  CHECKF(__atomic_load_n(&w->done, __ATOMIC_ACQUIRE), "%s: accept() still blocked 5 s after shutdown", what);
  pthread_join(t, NULL);
  CHECKF(w->result == -1 && w->err == EINVAL, "%s: accept() returned %d (%s), wanted EINVAL", what, w->result,
         strerror(w->err));
}

static int accept_once(int lfd, uint32_t self) {
  struct sockaddr_in d = fx_mkaddr(self, fx_port(lfd));
  int c = fx_connect(&d);
  int a = (int)CHECK_SYS(accept(lfd, NULL, NULL));
  CHECK(write(c, "k", 1) == 1);
  char ch;
  CHECK(read(a, &ch, 1) == 1 && ch == 'k');
  close(a);
  return c;
}

/* still the fd the app had: a SlimFast channel when it was one, never the real socket again */
static void still_channel(int fd, int was_channel) {
  if (was_channel)
    CHECKF(fx_raw_sockopt_int(fd, SOL_SOCKET, SO_DOMAIN) == AF_UNIX,
           "the listener fell back to its ordinary socket after shutdown()");
}

static int sockopt_int(int fd, int level, int name) {
  int v = -1;
  socklen_t l = sizeof v;
  CHECK_SYS(getsockopt(fd, level, name, &v, &l));
  return v;
}

int main(int argc, char **argv) {
  fx_init(argc, argv);
  uint32_t self = fx_self_ip();

  /* 1. a thread blocked in accept() wakes with EINVAL */
  int lfd = fx_listen(INADDR_ANY, 0, 0);
  fx_expect_slimfast(lfd, "listener");
  int chan = fx_raw_sockopt_int(lfd, SOL_SOCKET, SO_DOMAIN) == AF_UNIX;
  uint16_t port = fx_port(lfd);
  close(accept_once(lfd, self));
  struct waiter w;
  pthread_t t;
  start_waiter(&w, &t, lfd);
  CHECK_SYS(shutdown(lfd, SHUT_RDWR));
  expect_einval(&w, t, "blocked accept");
  still_channel(lfd, chan);
  CHECK(accept(lfd, NULL, NULL) == -1 && errno == EINVAL);
  CHECK(accept4(lfd, NULL, NULL, SOCK_NONBLOCK) == -1 && errno == EINVAL);
  still_channel(lfd, chan);
  CHECK(sockopt_int(lfd, SOL_SOCKET, SO_ACCEPTCONN) == 0);
  CHECK(shutdown(lfd, SHUT_RDWR) == -1 && errno == ENOTCONN);
  CHECK(shutdown(lfd, SHUT_WR) == -1 && errno == ENOTCONN);
  CHECK(shutdown(lfd, 7) == -1 && errno == EINVAL);
  /* nobody accepts on that port any more: connects are refused (once the broker dropped it) */
  struct sockaddr_in d = fx_mkaddr(self, port);
  int refused = 0;
  for (double end = fx_now() + 5; !refused && fx_now() < end;) {
    int c = (int)CHECK_SYS(socket(AF_INET, SOCK_STREAM, 0));
    refused = connect(c, (struct sockaddr *)&d, sizeof d) == -1 && errno == ECONNREFUSED;
    close(c);
    if (!refused) usleep(20000);
  }
  CHECKF(refused, "connects to a shut-down listener's port are not refused");
  close(lfd);

  /* 2. SHUT_WR does nothing; SHUT_RD drops pending connections and wakes epoll */
  int l2 = fx_listen(INADDR_ANY, 0, 0);
  fx_expect_slimfast(l2, "second listener");
  int chan2 = fx_raw_sockopt_int(l2, SOL_SOCKET, SO_DOMAIN) == AF_UNIX;
  CHECK_SYS(shutdown(l2, SHUT_WR));
  int keep = accept_once(l2, self);
  int ep = (int)CHECK_SYS(epoll_create1(0));
  struct epoll_event ev = {EPOLLIN, {.u64 = 5}}, out;
  CHECK_SYS(epoll_ctl(ep, EPOLL_CTL_ADD, l2, &ev));
  CHECK(epoll_wait(ep, &out, 1, 0) == 0);
  struct sockaddr_in d2 = fx_mkaddr(self, fx_port(l2));
  int pending = fx_connect(&d2);
  CHECK(epoll_wait(ep, &out, 1, 5000) == 1 && out.data.u64 == 5);
  CHECK_SYS(shutdown(l2, SHUT_RD));
  still_channel(l2, chan2);
  CHECK(epoll_wait(ep, &out, 1, 1000) == 1 && out.data.u64 == 5); /* still wakes */
  CHECK(accept(l2, NULL, NULL) == -1 && errno == EINVAL);
  /* the connection that was never accepted is dropped: EOF or reset */
  CHECKF(fx_wait_fd(pending, POLLIN, 5000) & (POLLIN | POLLHUP | POLLERR),
         "a connection pending on a shut-down listener stays open");
  char buf[8];
  ssize_t n = read(pending, buf, sizeof buf);
  CHECKF(n == 0 || (n < 0 && errno == ECONNRESET), "pending connection: read %zd (%s)", n, strerror(errno));
  close(pending), close(keep);

  /* 3. listen() again: a working (SlimFast) listener once more, same fd, same epoll set */
  CHECK_SYS(listen(l2, 16));
  fx_expect_slimfast(l2, "listener after listen() again");
  CHECK(sockopt_int(l2, SOL_SOCKET, SO_ACCEPTCONN) == 1);
  CHECKF(epoll_wait(ep, &out, 1, 0) == 0, "the listener is ready with nothing pending");
  d2 = fx_mkaddr(self, fx_port(l2));
  int c3 = fx_connect(&d2);
  CHECK(epoll_wait(ep, &out, 1, 5000) == 1 && out.data.u64 == 5);
  int a3 = (int)CHECK_SYS(accept(l2, NULL, NULL));
  fx_expect_slimfast(a3, "accepted after listen() again");
  CHECK(write(c3, "r", 1) == 1);
  char ch;
  CHECK(read(a3, &ch, 1) == 1 && ch == 'r');
  close(a3), close(c3), close(ep), close(l2);

  /* 4. accept() blocked on a dup of the listener wakes too */
  int l3 = fx_listen(INADDR_ANY, 0, 0);
  int chan3 = fx_raw_sockopt_int(l3, SOL_SOCKET, SO_DOMAIN) == AF_UNIX;
  int dupfd = (int)CHECK_SYS(dup(l3));
  start_waiter(&w, &t, dupfd);
  CHECK_SYS(shutdown(l3, SHUT_RDWR));
  expect_einval(&w, t, "accept on a dup");
  still_channel(dupfd, chan3);
  CHECK(accept(dupfd, NULL, NULL) == -1 && errno == EINVAL);
  still_channel(dupfd, chan3);
  close(dupfd), close(l3);
  fx_pass();
}
