/* accept4 flags (SOCK_NONBLOCK/SOCK_CLOEXEC as seen with fcntl), EINVAL for bad flags, and a
 * non-blocking listener: EAGAIN when idle, EPOLLIN when a connection is pending. */
#include "fixture.h"

int main(int argc, char **argv) {
  fx_init(argc, argv);
  uint32_t self = fx_self_ip();
  int lfd = fx_listen(INADDR_ANY, 0, 0);
  struct sockaddr_in dst = fx_mkaddr(self, fx_port(lfd));

  int c1 = fx_connect(&dst);
  int a = (int)CHECK_SYS(accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC));
  CHECK(fcntl(a, F_GETFL) & O_NONBLOCK);
  CHECK(fcntl(a, F_GETFD) & FD_CLOEXEC);
  char buf[8];
  CHECK(read(a, buf, sizeof buf) == -1 && errno == EAGAIN);

  int c2 = fx_connect(&dst);
  int b = (int)CHECK_SYS(accept4(lfd, NULL, NULL, 0));
  CHECK((fcntl(b, F_GETFL) & O_NONBLOCK) == 0);
  CHECK((fcntl(b, F_GETFD) & FD_CLOEXEC) == 0);
  CHECK(write(c2, "q", 1) == 1);
  CHECK(read(b, buf, 1) == 1); /* blocking read works */

  int c3 = fx_connect(&dst);
  int d = (int)CHECK_SYS(accept4(lfd, NULL, NULL, SOCK_CLOEXEC));
  CHECK((fcntl(d, F_GETFL) & O_NONBLOCK) == 0);
  CHECK(fcntl(d, F_GETFD) & FD_CLOEXEC);

  CHECK(accept4(lfd, NULL, NULL, 0x40000000) == -1 && errno == EINVAL);

  /* non-blocking listener */
  int nl = fx_listen(INADDR_ANY, 0, SOCK_NONBLOCK);
  fx_expect_slimfast(nl, "non-blocking listener");
  CHECK(accept4(nl, NULL, NULL, 0) == -1 && (errno == EAGAIN || errno == EWOULDBLOCK));
  int ep = (int)CHECK_SYS(epoll_create1(0));
  struct epoll_event ev = {EPOLLIN, {.u64 = 9}}, out;
  CHECK_SYS(epoll_ctl(ep, EPOLL_CTL_ADD, nl, &ev));
  CHECK(epoll_wait(ep, &out, 1, 0) == 0);
  struct sockaddr_in nd = fx_mkaddr(self, fx_port(nl));
  int c4 = fx_connect(&nd);
  CHECK(epoll_wait(ep, &out, 1, 5000) == 1 && out.data.u64 == 9 && (out.events & EPOLLIN));
  int e = (int)CHECK_SYS(accept4(nl, NULL, NULL, SOCK_NONBLOCK));
  CHECK(accept4(nl, NULL, NULL, 0) == -1 && errno == EAGAIN);
  CHECK(epoll_wait(ep, &out, 1, 0) == 0);

  /* a blocking listener made non-blocking afterwards */
  CHECK_SYS(fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK));
  CHECK(accept(lfd, NULL, NULL) == -1 && errno == EAGAIN);
  close(a), close(b), close(d), close(e), close(c1), close(c2), close(c3), close(c4);
  close(lfd), close(nl), close(ep);
  fx_pass();
}
