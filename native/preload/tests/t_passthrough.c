/* What SlimFast never touches behaves exactly like libc: loopback TCP, UDP, AF_UNIX, AF_INET6 —
 * and, without SLIMFAST_SOCKET, everything. */
#include "fixture.h"

static void untouched(void) {
  /* loopback TCP */
  int l = fx_listen(htonl(INADDR_LOOPBACK), 0, 0);
  CHECK(fx_raw_sockopt_int(l, SOL_SOCKET, SO_DOMAIN) == AF_INET);
  CHECK(!fx_is_swapped(l));
  struct sockaddr_in ld = fx_mkaddr(htonl(INADDR_LOOPBACK), fx_port(l));
  int c = fx_connect(&ld);
  int a = (int)CHECK_SYS(accept(l, NULL, NULL));
  CHECK(!fx_is_swapped(c) && !fx_is_swapped(a));
  CHECK(write(c, "l", 1) == 1);
  char ch;
  CHECK(read(a, &ch, 1) == 1 && ch == 'l');
  close(a), close(c), close(l);

  /* UDP */
  int u1 = (int)CHECK_SYS(socket(AF_INET, SOCK_DGRAM, 0));
  int u2 = (int)CHECK_SYS(socket(AF_INET, SOCK_DGRAM, 0));
  struct sockaddr_in lo = fx_mkaddr(htonl(INADDR_LOOPBACK), 0);
  CHECK_SYS(bind(u1, (struct sockaddr *)&lo, sizeof lo));
  struct sockaddr_in u1a = fx_sockname(u1);
  CHECK_SYS(connect(u2, (struct sockaddr *)&u1a, sizeof u1a));
  CHECK(send(u2, "u", 1, 0) == 1);
  CHECK(recv(u1, &ch, 1, 0) == 1 && ch == 'u');
  CHECK(!fx_is_swapped(u2));
  if (getenv("SF_TEST_SELF_IP")) {
    struct sockaddr_in o = fx_mkaddr(fx_self_ip(), 9);
    int u3 = (int)CHECK_SYS(socket(AF_INET, SOCK_DGRAM, 0));
    CHECK_SYS(connect(u3, (struct sockaddr *)&o, sizeof o));
    CHECK(!fx_is_swapped(u3));
    struct sockaddr_in p = fx_peername(u3);
    CHECK(fx_same_addr(&p, &o));
    close(u3);
  }
  close(u1), close(u2);

  /* AF_UNIX */
  int sv[2];
  CHECK_SYS(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv));
  CHECK(write(sv[0], "x", 1) == 1 && read(sv[1], &ch, 1) == 1 && ch == 'x');
  int v = 0;
  socklen_t vl = sizeof v;
  CHECK_SYS(getsockopt(sv[0], SOL_SOCKET, SO_DOMAIN, &v, &vl));
  CHECK(v == AF_UNIX);
  close(sv[0]), close(sv[1]);

  /* AF_INET6 when the kernel has it */
  int s6 = socket(AF_INET6, SOCK_STREAM, 0);
  if (s6 >= 0) {
    struct sockaddr_in6 a6;
    memset(&a6, 0, sizeof a6);
    a6.sin6_family = AF_INET6;
    a6.sin6_addr = in6addr_loopback;
    if (bind(s6, (struct sockaddr *)&a6, sizeof a6) == 0) {
      CHECK_SYS(listen(s6, 4));
      socklen_t al = sizeof a6;
      CHECK_SYS(getsockname(s6, (struct sockaddr *)&a6, &al));
      CHECK(fx_raw_sockopt_int(s6, SOL_SOCKET, SO_DOMAIN) == AF_INET6);
      int c6 = (int)CHECK_SYS(socket(AF_INET6, SOCK_STREAM, 0));
      CHECK_SYS(connect(c6, (struct sockaddr *)&a6, sizeof a6));
      int x6 = (int)CHECK_SYS(accept(s6, NULL, NULL));
      CHECK(write(c6, "6", 1) == 1 && read(x6, &ch, 1) == 1 && ch == '6');
      close(c6), close(x6);
    }
    close(s6);
  }
}

int main(int argc, char **argv) {
  fx_init(argc, argv);
  if (argc >= 2 && !strcmp(argv[1], "--child")) {
    untouched();
    if (getenv("SF_TEST_SELF_IP")) { /* without SLIMFAST_SOCKET even the overlay is plain */
      int l = fx_listen(INADDR_ANY, 0, 0);
      CHECK(fx_raw_sockopt_int(l, SOL_SOCKET, SO_DOMAIN) == AF_INET);
      struct sockaddr_in d = fx_mkaddr(fx_self_ip(), fx_port(l));
      int c = fx_connect(&d);
      int a = (int)CHECK_SYS(accept(l, NULL, NULL));
      CHECK(!fx_is_swapped(c) && !fx_is_swapped(a));
      close(a), close(c), close(l);
    }
    fx_pass();
  }
  const char *unset[] = {"SLIMFAST_SOCKET", NULL};
  int rc = fx_run_self((char *const[]){"--child", NULL}, unset);
  CHECKF(rc == 0, "run without SLIMFAST_SOCKET failed (%d)", rc);
  untouched();
  fx_pass();
}
