/* nginx adds the upstream fd to epoll before connect(): the SlimFast socket must be in the same
 * epoll sets afterwards, with the same events and data (incl. after EPOLL_CTL_MOD); an epoll set
 * closed meanwhile must not get it, not even when a new epoll instance reuses its number. */
#include "fixture.h"

int main(int argc, char **argv) {
  fx_init(argc, argv);
  struct sockaddr_in dst = fx_echo_target();
  int fd = (int)CHECK_SYS(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
  int ep1 = (int)CHECK_SYS(epoll_create1(0));
  int ep2 = (int)CHECK_SYS(epoll_create(8));
  int ep3 = (int)CHECK_SYS(epoll_create1(0));
  struct epoll_event ev = {EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP, {.u64 = 0xdeadbeef01ULL}};
  CHECK_SYS(epoll_ctl(ep1, EPOLL_CTL_ADD, fd, &ev));
  ev = (struct epoll_event){EPOLLOUT, {.u64 = 2}};
  CHECK_SYS(epoll_ctl(ep2, EPOLL_CTL_ADD, fd, &ev));
  ev = (struct epoll_event){EPOLLOUT | EPOLLIN, {.u64 = 3}};
  CHECK_SYS(epoll_ctl(ep2, EPOLL_CTL_MOD, fd, &ev));
  ev = (struct epoll_event){EPOLLOUT, {.u64 = 4}};
  CHECK_SYS(epoll_ctl(ep3, EPOLL_CTL_ADD, fd, &ev));
  CHECK_SYS(close(ep3));
  int ep4 = (int)CHECK_SYS(epoll_create1(0)); /* most likely ep3's number */

  int r = connect(fd, (struct sockaddr *)&dst, sizeof dst);
  CHECKF(r == 0 || errno == EINPROGRESS, "connect: %s", strerror(errno));
  struct epoll_event out[4];
  int n = epoll_wait(ep1, out, 4, 5000);
  CHECKF(n == 1 && out[0].data.u64 == 0xdeadbeef01ULL && (out[0].events & EPOLLOUT), "epoll 1: n=%d events=0x%x", n,
         n > 0 ? out[0].events : 0);
  n = epoll_wait(ep2, out, 4, 5000);
  CHECKF(n == 1 && out[0].data.u64 == 3 && (out[0].events & EPOLLOUT), "epoll 2: n=%d", n);
  n = epoll_wait(ep4, out, 4, 100);
  CHECKF(n == 0, "an epoll instance created after the registration got the fd (n=%d)", n);
  int err = -1;
  socklen_t l = sizeof err;
  CHECK_SYS(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l));
  CHECK(err == 0);
  fx_expect_slimfast(fd, "connect after epoll_ctl");

  CHECK(write(fd, "ping\n", 5) == 5);
  n = epoll_wait(ep1, out, 4, 5000);
  CHECKF(n == 1 && (out[0].events & EPOLLIN) && out[0].data.u64 == 0xdeadbeef01ULL, "no EPOLLIN on epoll 1 (n=%d)", n);
  char buf[16];
  CHECK(read(fd, buf, sizeof buf) == 5 && memcmp(buf, "ping\n", 5) == 0);
  /* EPOLL_CTL_DEL after the swap works on the new socket */
  CHECK_SYS(epoll_ctl(ep2, EPOLL_CTL_DEL, fd, NULL));
  close(fd);
  close(ep1);
  close(ep2);
  close(ep4);
  fx_pass();
}
