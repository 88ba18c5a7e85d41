/* connect to an overlay address where nothing listens: ECONNREFUSED, promptly, for blocking and
 * non-blocking sockets. */
#include "fixture.h"

int main(int argc, char **argv) {
  fx_init(argc, argv);
  struct sockaddr_in dst = fx_need_addr("SF_TEST_CLOSED");
  double t0 = fx_now();
  int fd = (int)CHECK_SYS(socket(AF_INET, SOCK_STREAM, 0));
  int r = connect(fd, (struct sockaddr *)&dst, sizeof dst);
  CHECKF(r == -1 && errno == ECONNREFUSED, "blocking connect to %s: r=%d %s", fx_fmt(&dst), r, strerror(errno));
  double dt = fx_now() - t0;
  CHECKF(dt < 2.5, "refusal took %.2f s", dt);
  close(fd);

  t0 = fx_now();
  fd = (int)CHECK_SYS(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
  r = connect(fd, (struct sockaddr *)&dst, sizeof dst);
  if (r == -1 && errno == EINPROGRESS) {
    CHECK(fx_wait_fd(fd, POLLOUT, 5000) & (POLLOUT | POLLERR | POLLHUP));
    int err = 0;
    socklen_t l = sizeof err;
    CHECK_SYS(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l));
    CHECKF(err == ECONNREFUSED, "SO_ERROR %d (%s)", err, strerror(err));
  } else {
    CHECKF(r == -1 && errno == ECONNREFUSED, "non-blocking connect: r=%d %s", r, strerror(errno));
  }
  dt = fx_now() - t0;
  CHECKF(dt < 2.5, "non-blocking refusal took %.2f s", dt);
  close(fd);
  fx_pass();
}
