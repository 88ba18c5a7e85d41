/* Blocking connect to a SlimFast echo server: returns 0, the socket is a SlimFast one, addresses
 * are the virtual ones, data flows, a second connect() gets the kernel's EISCONN. */
#include "fixture.h"

int main(int argc, char **argv) {
  fx_init(argc, argv);
  struct sockaddr_in dst = fx_echo_target();
  int fd = fx_connect(&dst);
  fx_expect_slimfast(fd, "blocking connect");
  struct sockaddr_in peer = fx_peername(fd), local = fx_sockname(fd);
  CHECKF(fx_same_addr(&peer, &dst), "peer %s, want %s", fx_fmt(&peer), fx_fmt(&dst));
  CHECK(local.sin_port != 0);
  const char *self = getenv("SF_TEST_SELF_IP");
  if (self) CHECKF(local.sin_addr.s_addr == fx_self_ip(), "local %s, want %s", fx_fmt(&local), self);
  int v = -1;
  socklen_t l = sizeof v;
  CHECK_SYS(getsockopt(fd, SOL_SOCKET, SO_ERROR, &v, &l));
  CHECK(v == 0);
  CHECK_SYS(getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &l));
  CHECK(v == SOCK_STREAM);
  CHECK((fcntl(fd, F_GETFL) & O_NONBLOCK) == 0);
  for (int i = 0; i < 5; i++) fx_echo_check(fd, "hello blocking connect\n");
  CHECK(connect(fd, (struct sockaddr *)&dst, sizeof dst) == -1 && errno == EISCONN);
  CHECK_SYS(close(fd));
  fx_pass();
}
