/* Non-blocking connect (SOCK_NONBLOCK, fcntl O_NONBLOCK, ioctl FIONBIO): -1/EINPROGRESS, then
 * EPOLLOUT, SO_ERROR 0, a second connect() gives EISCONN, O_NONBLOCK is kept, data flows. */
#include "fixture.h"

#include <sys/ioctl.h>

int main(int argc, char **argv) {
  fx_init(argc, argv);
  struct sockaddr_in dst = fx_echo_target();
  for (int mode = 0; mode < 3; mode++) {
    int fd;
    if (mode == 0) {
      fd = (int)CHECK_SYS(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
    } else if (mode == 1) {
      fd = (int)CHECK_SYS(socket(AF_INET, SOCK_STREAM, 0));
      CHECK_SYS(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK));
    } else {
      fd = (int)CHECK_SYS(socket(AF_INET, SOCK_STREAM, 0));
      int on = 1;
      CHECK_SYS(ioctl(fd, FIONBIO, &on));
    }
    int r = connect(fd, (struct sockaddr *)&dst, sizeof dst);
    CHECKF(r == 0 || errno == EINPROGRESS, "mode %d: connect: %s", mode, strerror(errno));
    int ep = (int)CHECK_SYS(epoll_create1(EPOLL_CLOEXEC));
    struct epoll_event ev = {EPOLLOUT, {.u64 = 42}};
    CHECK_SYS(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev));
    struct epoll_event out;
    int n = epoll_wait(ep, &out, 1, 5000);
    CHECKF(n == 1 && (out.events & EPOLLOUT) && out.data.u64 == 42, "mode %d: no EPOLLOUT", mode);
    int err = -1;
    socklen_t l = sizeof err;
    CHECK_SYS(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l));
    CHECKF(err == 0, "mode %d: SO_ERROR %d", mode, err);
    /* A socket whose connect the kernel saw completing says EISCONN; one still "connecting" for
       the socket layer (an ordinary one, or a pooled one: its handshake ran after connect()
       returned) completes now: 0, as on the host */
    errno = 0;
    r = connect(fd, (struct sockaddr *)&dst, sizeof dst);
    CHECKF((r == -1 && errno == EISCONN) || r == 0, "mode %d: second connect: r=%d %s", mode, r, strerror(errno));
    CHECK(connect(fd, (struct sockaddr *)&dst, sizeof dst) == -1 && errno == EISCONN);
    CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK);
    fx_expect_slimfast(fd, "non-blocking connect");
    struct sockaddr_in peer = fx_peername(fd);
    CHECK(fx_same_addr(&peer, &dst));
    fx_echo_check(fd, "hello non-blocking\n");
    close(ep);
    close(fd);
  }
  fx_pass();
}
