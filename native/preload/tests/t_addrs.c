/* getsockname/getpeername are virtual and consistent on both ends of a SlimFast connection; a
 * listener reports its address and ENOTCONN for the peer. */
#include "fixture.h"

int main(int argc, char **argv) {
  fx_init(argc, argv);
  uint32_t self = fx_self_ip();
  int lfd = fx_listen(INADDR_ANY, 0, 0);
  fx_expect_slimfast(lfd, "listener");
  struct sockaddr_in ls = fx_sockname(lfd);
  CHECKF(
      ls.sin_family == AF_INET && ls.sin_port != 0 && (ls.sin_addr.s_addr == INADDR_ANY || ls.sin_addr.s_addr == self),
      "listener address %s", fx_fmt(&ls));
  struct sockaddr_in tmp;
  socklen_t tl = sizeof tmp;
  CHECK(getpeername(lfd, (struct sockaddr *)&tmp, &tl) == -1 && errno == ENOTCONN);

  struct sockaddr_in dst = fx_mkaddr(self, ntohs(ls.sin_port));
  int c = fx_connect(&dst);
  struct sockaddr_in from;
  socklen_t fl = sizeof from;
  int a = (int)CHECK_SYS(accept(lfd, (struct sockaddr *)&from, &fl));
  fx_expect_slimfast(c, "client");
  fx_expect_slimfast(a, "accepted");
  struct sockaddr_in cl = fx_sockname(c), cp = fx_peername(c);
  struct sockaddr_in al = fx_sockname(a), ap = fx_peername(a);
  printf("client %s -> %s, server %s <- %s, accept() said %s\n", fx_fmt(&cl), fx_fmt(&cp), fx_fmt(&al), fx_fmt(&ap),
         fx_fmt(&from));
  CHECKF(fx_same_addr(&cp, &dst), "client peer %s", fx_fmt(&cp));
  CHECKF(fx_same_addr(&al, &dst), "server local %s", fx_fmt(&al));
  CHECKF(fx_same_addr(&ap, &cl), "server peer %s, client local %s", fx_fmt(&ap), fx_fmt(&cl));
  CHECKF(fx_same_addr(&from, &cl), "accept() %s, client local %s", fx_fmt(&from), fx_fmt(&cl));
  CHECKF(cl.sin_addr.s_addr == self && cl.sin_port != 0, "client local %s", fx_fmt(&cl));
  /* truncated getsockname */
  unsigned char raw[sizeof(struct sockaddr_in)];
  memset(raw, 0xaa, sizeof raw);
  socklen_t rl = 2;
  CHECK_SYS(getsockname(c, (struct sockaddr *)raw, &rl));
  CHECK(rl == sizeof(struct sockaddr_in) && raw[2] == 0xaa);
  close(a), close(c);

  struct sockaddr_in echo;
  if (fx_env_addr("SF_TEST_ECHO", &echo)) {
    int e = fx_connect(&echo);
    fx_expect_slimfast(e, "connect to SF_TEST_ECHO");
    struct sockaddr_in el = fx_sockname(e), ep = fx_peername(e);
    CHECKF(fx_same_addr(&ep, &echo), "peer %s", fx_fmt(&ep));
    CHECKF(el.sin_addr.s_addr == self, "local %s", fx_fmt(&el));
    fx_echo_check(e, "addresses\n");
    close(e);
  }
  close(lfd);
  fx_pass();
}
