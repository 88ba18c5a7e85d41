/* An overlay server that is not on SlimFast is reached with an ordinary connection. */
#include "fixture.h"

int main(int argc, char **argv) {
  fx_init(argc, argv);
  struct sockaddr_in dst = fx_need_addr("SF_TEST_PLAIN");
  int fd = fx_connect(&dst);
  CHECKF(!fx_is_swapped(fd), "a connection to a plain server was swapped");
  struct sockaddr_in p = fx_peername(fd), raw;
  CHECK(fx_same_addr(&p, &dst));
  CHECK(fx_raw_peername(fd, &raw) == 0 && fx_same_addr(&raw, &dst));
  fx_echo_check(fd, "plain\n");
  /* again, non-blocking */
  int nb = (int)CHECK_SYS(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
  int r = connect(nb, (struct sockaddr *)&dst, sizeof dst);
  CHECK(r == 0 || errno == EINPROGRESS);
  CHECK(fx_wait_fd(nb, POLLOUT, 5000) & POLLOUT);
  int err = -1;
  socklen_t l = sizeof err;
  CHECK_SYS(getsockopt(nb, SOL_SOCKET, SO_ERROR, &err, &l));
  CHECK(err == 0);
  /* the kernel completes a non-blocking connect on the next connect(): 0, then EISCONN */
  errno = 0;
  int r2 = connect(nb, (struct sockaddr *)&dst, sizeof dst);
  CHECKF(r2 == 0 || errno == EISCONN, "second connect: %s", strerror(errno));
  fx_echo_check(nb, "plain non-blocking\n");
  close(fd), close(nb);
  fx_pass();
}
