/* close_range clears entries (a reused number is a fresh socket), CLOSE_RANGE_CLOEXEC only marks,
 * and closing everything (close_range(3, ~0U), closefrom) leaves the library working. */
#include "fixture.h"

#include <linux/close_range.h>

static struct sockaddr_in target(void) {
  struct sockaddr_in sa;
  if (fx_env_addr("SF_TEST_ECHO", &sa)) return sa;
  return fx_echo_target(); /* a fresh in-process echo server */
}

int main(int argc, char **argv) {
  fx_init(argc, argv);
  if (syscall(SYS_close_range, 1000000U, 1000001U, 0) != 0 && errno == ENOSYS)
    SKIP("close_range is not supported by this kernel");
  struct sockaddr_in dst = target();
  int a = fx_connect(&dst), b = fx_connect(&dst);
  struct sockaddr_in pa = fx_peername(a);
  CHECK(dup2(a, 500) == 500 && dup2(b, 501) == 501);
  close(a), close(b);

  CHECK_SYS(close_range(500, 501, CLOSE_RANGE_CLOEXEC));
  CHECK(fcntl(500, F_GETFD) & FD_CLOEXEC);
  struct sockaddr_in p500 = fx_peername(500);
  CHECKF(fx_same_addr(&p500, &pa), "CLOSE_RANGE_CLOEXEC changed the peer to %s", fx_fmt(&p500));
  fx_echo_check(501, "still open\n");

  CHECK_SYS(close_range(500, 501, 0));
  CHECK(fcntl(500, F_GETFD) == -1 && errno == EBADF);
  int u = (int)CHECK_SYS(socket(AF_INET, SOCK_DGRAM, 0));
  struct sockaddr_in lo = fx_mkaddr(htonl(INADDR_LOOPBACK), 0);
  CHECK_SYS(bind(u, (struct sockaddr *)&lo, sizeof lo));
  CHECK(dup2(u, 500) == 500);
  struct sockaddr_in s500 = fx_sockname(500);
  CHECKF(s500.sin_addr.s_addr == htonl(INADDR_LOOPBACK), "stale entry: %s", fx_fmt(&s500));
  close(u), close(500);

  /* close everything above stderr, then keep using SlimFast */
  CHECK_SYS(close_range(3, ~0U, 0));
  dst = target();
  int c = fx_connect(&dst);
  fx_expect_slimfast(c, "connect after close_range(3, ~0U)");
  fx_echo_check(c, "after close_range\n");
  close(c);
  closefrom(3);
  dst = target();
  c = fx_connect(&dst);
  fx_expect_slimfast(c, "connect after closefrom(3)");
  fx_echo_check(c, "after closefrom\n");
  close(c);
  fx_pass();
}
