/* dup/dup2/dup3/F_DUPFD/F_DUPFD_CLOEXEC keep the virtual addresses; a dup'ed listener accepts;
 * a dup2 target that was tracked loses its old entry. */
#include "fixture.h"

static void same_view(int fd, const struct sockaddr_in *l, const struct sockaddr_in *p, const char *what) {
  struct sockaddr_in a = fx_sockname(fd), b = fx_peername(fd);
  CHECKF(fx_same_addr(&a, l) && fx_same_addr(&b, p), "%s: %s -> %s, want %s -> %s", what, fx_fmt(&a), fx_fmt(&b),
         fx_fmt(l), fx_fmt(p));
}

int main(int argc, char **argv) {
  fx_init(argc, argv);
  struct sockaddr_in dst = fx_echo_target();
  int fd = fx_connect(&dst);
  fx_expect_slimfast(fd, "connect");
  struct sockaddr_in l = fx_sockname(fd), p = fx_peername(fd);

  int d1 = (int)CHECK_SYS(dup(fd));
  CHECK(dup2(fd, 200) == 200);
  CHECK(dup3(fd, 201, O_CLOEXEC) == 201);
  int d4 = (int)CHECK_SYS(fcntl(fd, F_DUPFD, 300));
  int d5 = (int)CHECK_SYS(fcntl(fd, F_DUPFD_CLOEXEC, 400));
  CHECK(d4 >= 300 && d5 >= 400);
  same_view(d1, &l, &p, "dup");
  same_view(200, &l, &p, "dup2");
  same_view(201, &l, &p, "dup3");
  same_view(d4, &l, &p, "F_DUPFD");
  same_view(d5, &l, &p, "F_DUPFD_CLOEXEC");
  CHECK((fcntl(200, F_GETFD) & FD_CLOEXEC) == 0);
  CHECK(fcntl(201, F_GETFD) & FD_CLOEXEC);
  CHECK(fcntl(d5, F_GETFD) & FD_CLOEXEC);
  CHECK_SYS(close(fd));
  fx_echo_check(200, "through a dup2 copy\n");
  same_view(d1, &l, &p, "dup after closing the original");
  close(d1), close(201), close(d4), close(d5);

  /* a dup'ed listener */
  const char *self = getenv("SF_TEST_SELF_IP");
  if (self) {
    uint32_t ip = fx_self_ip();
    int lfd = fx_listen(INADDR_ANY, 0, 0);
    struct sockaddr_in la = fx_sockname(lfd);
    int ldup = (int)CHECK_SYS(dup(lfd));
    struct sockaddr_in lb = fx_sockname(ldup);
    CHECK(fx_same_addr(&la, &lb));
    int v = 0;
    socklen_t vl = sizeof v;
    CHECK_SYS(getsockopt(ldup, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl));
    CHECK(v == 1);
    struct sockaddr_in ld = fx_mkaddr(ip, ntohs(la.sin_port));
    int c1 = fx_connect(&ld);
    int a1 = (int)CHECK_SYS(accept(ldup, NULL, NULL));
    CHECK_SYS(close(lfd));
    int c2 = fx_connect(&ld);
    int a2 = (int)CHECK_SYS(accept(ldup, NULL, NULL));
    CHECK(write(c2, "x", 1) == 1);
    char ch;
    CHECK(read(a2, &ch, 1) == 1 && ch == 'x');
    close(c1), close(a1), close(c2), close(a2), close(ldup);
  }

  /* dup2 onto a tracked fd: the target now describes the new socket */
  int t = fx_connect(&dst);
  int u = (int)CHECK_SYS(socket(AF_INET, SOCK_DGRAM, 0));
  struct sockaddr_in lo = fx_mkaddr(htonl(INADDR_LOOPBACK), 0);
  CHECK_SYS(bind(u, (struct sockaddr *)&lo, sizeof lo));
  CHECK(dup2(u, t) == t);
  struct sockaddr_in tl = fx_sockname(t);
  CHECKF(tl.sin_addr.s_addr == htonl(INADDR_LOOPBACK), "dup2 target still reports %s", fx_fmt(&tl));
  CHECK(getpeername(t, (struct sockaddr *)&tl, &(socklen_t){sizeof tl}) == -1 && errno == ENOTCONN);
  close(t), close(u), close(200);
  fx_pass();
}
