/* A dual-stack server (AF_INET6 on :: with IPV6_V6ONLY off, as iperf3, nginx [::], Go and Java
 * listen) is a SlimFast listener: IPv4 clients and AF_INET6 clients of ::ffff:<vIP> reach it over
 * SlimFast, every address it sees is a v4-mapped sockaddr_in6, SO_DOMAIN says AF_INET6 and the
 * harmless IPPROTO_IPV6 options work. A listener bound to ::ffff:<vIP> is one too; an IPv6-only
 * socket is left alone. */
#include "fixture.h"

static int v6_listen(const struct sockaddr_in6 *a, int v6only) {
  int fd = fx_socket6(0);
  int one = 1;
  CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
  CHECK_SYS(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only));
  CHECKF(bind(fd, (const struct sockaddr *)a, sizeof *a) == 0, "bind %s: %s", fx_fmt6(a), strerror(errno));
  CHECK_SYS(listen(fd, 64));
  return fd;
}

static int sockopt_int(int fd, int level, int name) {
  int v = -12345;
  socklen_t l = sizeof v;
  CHECKF(getsockopt(fd, level, name, &v, &l) == 0 && l == sizeof v, "getsockopt %d/%d: %s", level, name,
         strerror(errno));
  return v;
}

/* accept one connection, checking the address accept() reports against the client's own view */
static int accept6(int lfd, const struct sockaddr_in6 *client_local) {
  struct sockaddr_in6 from;
  memset(&from, 0x55, sizeof from);
  socklen_t fl = sizeof from;
  int a = (int)CHECK_SYS(accept(lfd, (struct sockaddr *)&from, &fl));
  CHECKF(fl == sizeof from, "accept() address length %u", (unsigned)fl);
  uint32_t ip;
  memcpy(&ip, &client_local->sin6_addr.s6_addr[12], 4);
  CHECKF(fx_is_mapped(&from, ip, client_local->sin6_port), "accept() says %s, client is %s", fx_fmt6(&from),
         fx_fmt6(client_local));
  return a;
}

/* both ends of one connection agree, in the mapped form on the server side */
static void check_pair(int a, uint32_t self, uint16_t port_net, const struct sockaddr_in6 *cl6) {
  uint32_t cip;
  memcpy(&cip, &cl6->sin6_addr.s6_addr[12], 4);
  struct sockaddr_in6 al = fx_sockname6(a), ap = fx_peername6(a);
  CHECKF(fx_is_mapped(&al, self, port_net), "server local %s", fx_fmt6(&al));
  CHECKF(fx_is_mapped(&ap, cip, cl6->sin6_port), "server peer %s, client local %s", fx_fmt6(&ap), fx_fmt6(cl6));
  CHECK(sockopt_int(a, SOL_SOCKET, SO_DOMAIN) == AF_INET6);
  CHECK(sockopt_int(a, SOL_SOCKET, SO_TYPE) == SOCK_STREAM);
  CHECK(sockopt_int(a, IPPROTO_IPV6, IPV6_V6ONLY) == 0);
  int tc = 0x20;
  CHECK_SYS(setsockopt(a, IPPROTO_IPV6, IPV6_TCLASS, &tc, sizeof tc));
  CHECKF(sockopt_int(a, IPPROTO_IPV6, IPV6_TCLASS) == 0x20, "IPV6_TCLASS reads %d",
         sockopt_int(a, IPPROTO_IPV6, IPV6_TCLASS));
  int hops = sockopt_int(a, IPPROTO_IPV6, IPV6_UNICAST_HOPS);
  CHECKF(hops > 0 && hops <= 255, "IPV6_UNICAST_HOPS reads %d", hops);
  int one = 1;
  CHECK_SYS(setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
}

static void echo_pair(int c, int a, const char *msg) {
  size_t n = strlen(msg);
  CHECK(write(c, msg, n) == (ssize_t)n);
  char buf[128];
  size_t got = 0;
  while (got < n) {
    CHECKF(fx_wait_fd(a, POLLIN, 5000) & POLLIN, "server side: nothing to read");
    ssize_t r = read(a, buf + got, sizeof buf - got);
    CHECKF(r > 0, "server read: %s", r == 0 ? "EOF" : strerror(errno));
    got += (size_t)r;
  }
  CHECK(memcmp(buf, msg, n) == 0);
  CHECK(write(a, buf, n) == (ssize_t)n);
  got = 0;
  while (got < n) {
    CHECKF(fx_wait_fd(c, POLLIN, 5000) & POLLIN, "client side: nothing to read");
    ssize_t r = read(c, buf + got, sizeof buf - got);
    CHECKF(r > 0, "client read: %s", r == 0 ? "EOF" : strerror(errno));
    got += (size_t)r;
  }
  CHECK(memcmp(buf, msg, n) == 0);
}

static struct sockaddr_in6 as6(const struct sockaddr_in *sa) {
  return fx_mk6(sa->sin_addr.s_addr, ntohs(sa->sin_port));
}

int main(int argc, char **argv) {
  fx_init(argc, argv);
  uint32_t self = fx_self_ip();
  struct sockaddr_in6 any = fx_mk6(0, 0);
  int lfd = v6_listen(&any, 0);
  fx_expect_slimfast(lfd, "dual-stack listener");
  struct sockaddr_in6 ls = fx_sockname6(lfd);
  CHECKF(fx_is_mapped(&ls, 0, ls.sin6_port) && ls.sin6_port != 0, "listener address %s", fx_fmt6(&ls));
  uint16_t port = ls.sin6_port;
  CHECK(sockopt_int(lfd, SOL_SOCKET, SO_DOMAIN) == AF_INET6);
  CHECK(sockopt_int(lfd, SOL_SOCKET, SO_ACCEPTCONN) == 1);
  CHECK(sockopt_int(lfd, SOL_SOCKET, SO_TYPE) == SOCK_STREAM);
  CHECK(sockopt_int(lfd, IPPROTO_IPV6, IPV6_V6ONLY) == 0);
  struct sockaddr_in6 tmp;
  socklen_t tl = sizeof tmp;
  CHECK(getpeername(lfd, (struct sockaddr *)&tmp, &tl) == -1 && errno == ENOTCONN);

  /* an IPv4 client of the own vIP (same-host path) */
  struct sockaddr_in dst4 = fx_mkaddr(self, ntohs(port));
  int c4 = fx_connect(&dst4);
  fx_expect_slimfast(c4, "IPv4 client");
  struct sockaddr_in c4l = fx_sockname(c4), c4p = fx_peername(c4);
  CHECKF(fx_same_addr(&c4p, &dst4), "IPv4 client peer %s", fx_fmt(&c4p));
  struct sockaddr_in6 c4l6 = as6(&c4l);
  int a4 = accept6(lfd, &c4l6);
  fx_expect_slimfast(a4, "accepted from the IPv4 client");
  check_pair(a4, self, port, &c4l6);
  echo_pair(c4, a4, "dual-stack, IPv4 client\n");

  /* an AF_INET6 client of ::ffff:<vIP> */
  struct sockaddr_in6 dst6 = fx_mk6(self, ntohs(port));
  int c6 = fx_socket6(0);
  CHECKF(connect(c6, (struct sockaddr *)&dst6, sizeof dst6) == 0, "connect %s: %s", fx_fmt6(&dst6), strerror(errno));
  fx_expect_slimfast(c6, "AF_INET6 client");
  struct sockaddr_in6 c6l = fx_sockname6(c6), c6p = fx_peername6(c6);
  CHECKF(fx_is_mapped(&c6p, self, port), "AF_INET6 client peer %s", fx_fmt6(&c6p));
  CHECKF(fx_is_mapped(&c6l, self, c6l.sin6_port) && c6l.sin6_port != 0, "AF_INET6 client local %s", fx_fmt6(&c6l));
  CHECK(sockopt_int(c6, SOL_SOCKET, SO_DOMAIN) == AF_INET6);
  int a6 = accept6(lfd, &c6l);
  fx_expect_slimfast(a6, "accepted from the AF_INET6 client");
  check_pair(a6, self, port, &c6l);
  echo_pair(c6, a6, "dual-stack, AF_INET6 client\n");

  /* a short address buffer is truncated like the kernel does it, the length says 28 */
  int c3 = fx_connect(&dst4);
  unsigned char raw[sizeof(struct sockaddr_in6)];
  memset(raw, 0xaa, sizeof raw);
  socklen_t rl = 8;
  int a3 = (int)CHECK_SYS(accept4(lfd, (struct sockaddr *)raw, &rl, SOCK_NONBLOCK));
  CHECKF(rl == sizeof(struct sockaddr_in6), "truncated accept() length %u", (unsigned)rl);
  sa_family_t fam;
  memcpy(&fam, raw, sizeof fam);
  CHECK(fam == AF_INET6 && raw[8] == 0xaa);
  CHECK(fcntl(a3, F_GETFL) & O_NONBLOCK);
  struct sockaddr_in c3l = fx_sockname(c3);
  struct sockaddr_in6 a3p = fx_peername6(a3);
  CHECK(fx_is_mapped(&a3p, c3l.sin_addr.s_addr, c3l.sin_port));
  close(a3), close(c3);

  /* an ordinary client (socket and connect bypass the preload) reaches the real AF_INET6 socket
     the broker keeps; it is accepted on the same channel with the same address form */
  int pc = (int)CHECK_SYS(syscall(SYS_socket, AF_INET, SOCK_STREAM, 0));
  CHECKF(syscall(SYS_connect, pc, (struct sockaddr *)&dst4, sizeof dst4) == 0, "plain connect: %s", strerror(errno));
  struct sockaddr_in pcl;
  CHECK(fx_raw_sockname(pc, &pcl) == 0);
  struct sockaddr_in6 pcl6 = as6(&pcl);
  int pa = accept6(lfd, &pcl6);
  check_pair(pa, self, port, &pcl6);
  echo_pair(pc, pa, "dual-stack, ordinary client\n");
  close(pa), close(pc);

  /* bound to ::ffff:<vIP>: a SlimFast listener on the vIP */
  struct sockaddr_in6 mine = fx_mk6(self, 0);
  int mfd = v6_listen(&mine, 0);
  fx_expect_slimfast(mfd, "listener on ::ffff:<vIP>");
  struct sockaddr_in6 ms = fx_sockname6(mfd);
  CHECKF(fx_is_mapped(&ms, self, ms.sin6_port) && ms.sin6_port != 0, "listener address %s", fx_fmt6(&ms));
  struct sockaddr_in mdst = fx_mkaddr(self, ntohs(ms.sin6_port));
  int mc = fx_connect(&mdst);
  struct sockaddr_in mcl = fx_sockname(mc);
  struct sockaddr_in6 mcl6 = as6(&mcl);
  int ma = accept6(mfd, &mcl6);
  fx_expect_slimfast(ma, "accepted on ::ffff:<vIP>");
  check_pair(ma, self, ms.sin6_port, &mcl6);
  echo_pair(mc, ma, "mapped vIP listener\n");
  close(ma), close(mc), close(mfd);

  /* IPv6-only: an ordinary listening socket, which IPv4 clients do not reach */
  int ofd = v6_listen(&any, 1);
  CHECK(fx_raw_sockopt_int(ofd, SOL_SOCKET, SO_DOMAIN) == AF_INET6);
  CHECK(fx_raw_sockopt_int(ofd, SOL_SOCKET, SO_ACCEPTCONN) == 1);
  CHECK(!fx_is_swapped(ofd));
  CHECK(sockopt_int(ofd, IPPROTO_IPV6, IPV6_V6ONLY) == 1);
  struct sockaddr_in6 os = fx_sockname6(ofd);
  struct sockaddr_in odst = fx_mkaddr(self, ntohs(os.sin6_port));
  int oc = (int)CHECK_SYS(socket(AF_INET, SOCK_STREAM, 0));
  CHECKF(connect(oc, (struct sockaddr *)&odst, sizeof odst) == -1 && errno == ECONNREFUSED,
         "IPv4 connect to an IPv6-only listener: %s", strerror(errno));
  close(oc), close(ofd);

  /* ::1 (when the kernel has IPv6 on loopback): untouched */
  int lo6 = fx_socket6(0);
  struct sockaddr_in6 lo = fx_mk6(0, 0);
  lo.sin6_addr = in6addr_loopback;
  if (bind(lo6, (struct sockaddr *)&lo, sizeof lo) == 0) {
    CHECK_SYS(listen(lo6, 4));
    CHECK(fx_raw_sockopt_int(lo6, SOL_SOCKET, SO_DOMAIN) == AF_INET6);
    CHECK(!fx_is_swapped(lo6));
  }
  close(lo6);

  close(a4), close(c4), close(a6), close(c6), close(lfd);
  fx_pass();
}
