/* close() of a listener and an immediate listen() on the same port, as iperf3 does after every
 * test: the bind must succeed at once (the broker has let go of its copy of the old listening
 * socket when close() returns), the new listener is SlimFast's, and connections reach it. */
#include "fixture.h"

static int listen_on(uint16_t port) {
  int fd = (int)CHECK_SYS(socket(AF_INET, SOCK_STREAM, 0));
  int one = 1;
  CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
  struct sockaddr_in sa = fx_mkaddr(INADDR_ANY, port);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
    fx_fail(__FILE__, __LINE__, "bind to port %u right after closing its listener: %s", port, strerror(errno));
  CHECK_SYS(listen(fd, 128));
  return fd;
}

static void serve_one(int lfd, uint32_t self, int round) {
  struct sockaddr_in d = fx_mkaddr(self, fx_port(lfd));
  int c = fx_connect(&d);
  int a = (int)CHECK_SYS(accept(lfd, NULL, NULL));
  char msg[32], got[32];
  int n = snprintf(msg, sizeof msg, "round %d", round);
  CHECK(write(c, msg, (size_t)n) == n);
  ssize_t r = read(a, got, sizeof got);
  CHECKF(r == n && memcmp(got, msg, (size_t)n) == 0, "round %d: the new listener got %zd bytes", round, r);
  close(a);
  close(c);
}

int main(int argc, char **argv) {
  fx_init(argc, argv);
  uint32_t self = fx_self_ip();
  int lfd = fx_listen(INADDR_ANY, 0, 0);
  uint16_t port = fx_port(lfd);
  for (int round = 1; round <= 20; round++) {
    fx_expect_slimfast(lfd, "listener");
    serve_one(lfd, self, round);
    CHECK_SYS(close(lfd));
    lfd = listen_on(port);
  }
  fx_expect_slimfast(lfd, "listener after 20 re-listens");
  serve_one(lfd, self, 21);
  close(lfd);
  fx_pass();
}
