/* An AF_INET6 socket connected to ::ffff:<overlay address> goes through SlimFast like an IPv4 one:
 * it echoes, its addresses read back v4-mapped, SO_DOMAIN stays AF_INET6, options set before
 * connect (IPV6_TCLASS too) survive, non-blocking connect completes. IPv6-only sockets and mapped
 * loopback are left alone. */
#include "fixture.h"

static int sockopt_int(int fd, int level, int name) {
  int v = -12345;
  socklen_t l = sizeof v;
  CHECKF(getsockopt(fd, level, name, &v, &l) == 0 && l == sizeof v, "getsockopt %d/%d: %s", level, name,
         strerror(errno));
  return v;
}

static void check_addrs(int fd, const struct sockaddr_in6 *dst) {
  struct sockaddr_in6 p = fx_peername6(fd), l = fx_sockname6(fd);
  uint32_t dip;
  memcpy(&dip, &dst->sin6_addr.s6_addr[12], 4);
  CHECKF(fx_is_mapped(&p, dip, dst->sin6_port), "peer %s, wanted %s", fx_fmt6(&p), fx_fmt6(dst));
  uint32_t lip;
  memcpy(&lip, &l.sin6_addr.s6_addr[12], 4);
  CHECKF(fx_is_mapped(&l, lip, l.sin6_port) && lip != 0 && l.sin6_port != 0, "local %s", fx_fmt6(&l));
  const char *self = getenv("SF_TEST_SELF_IP");
  if (self) CHECKF(lip == fx_self_ip(), "local %s is not the own vIP %s", fx_fmt6(&l), self);
  /* truncated getpeername: 28 reported, only the asked bytes written */
  unsigned char raw[sizeof(struct sockaddr_in6)];
  memset(raw, 0xaa, sizeof raw);
  socklen_t rl = 4;
  CHECK_SYS(getpeername(fd, (struct sockaddr *)raw, &rl));
  CHECK(rl == sizeof(struct sockaddr_in6) && raw[4] == 0xaa);
  CHECK(sockopt_int(fd, SOL_SOCKET, SO_DOMAIN) == AF_INET6);
  CHECK(sockopt_int(fd, IPPROTO_IPV6, IPV6_V6ONLY) == 0);
}

int main(int argc, char **argv) {
  fx_init(argc, argv);
  struct sockaddr_in t4 = fx_echo_target();
  struct sockaddr_in6 dst = fx_mk6(t4.sin_addr.s_addr, ntohs(t4.sin_port));

  /* blocking, with options set before connect */
  int fd = fx_socket6(0);
  int one = 1, tc = 0x28;
  CHECK_SYS(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
  CHECK_SYS(setsockopt(fd, IPPROTO_IPV6, IPV6_TCLASS, &tc, sizeof tc));
  CHECKF(connect(fd, (struct sockaddr *)&dst, sizeof dst) == 0, "connect %s: %s", fx_fmt6(&dst), strerror(errno));
  fx_expect_slimfast(fd, "AF_INET6 connect to a mapped overlay address");
  check_addrs(fd, &dst);
  CHECK(sockopt_int(fd, IPPROTO_TCP, TCP_NODELAY) == 1);
  CHECKF(sockopt_int(fd, IPPROTO_IPV6, IPV6_TCLASS) == 0x28, "IPV6_TCLASS reads %d",
         sockopt_int(fd, IPPROTO_IPV6, IPV6_TCLASS));
  CHECK(connect(fd, (struct sockaddr *)&dst, sizeof dst) == -1 && errno == EISCONN);
  fx_echo_check(fd, "ipv6 mapped, blocking\n");
  /* the harmless IPv6 options after connect */
  tc = 0x10;
  CHECK_SYS(setsockopt(fd, IPPROTO_IPV6, IPV6_TCLASS, &tc, sizeof tc));
  CHECK(sockopt_int(fd, IPPROTO_IPV6, IPV6_TCLASS) == 0x10);
  int hops = 33;
  CHECK_SYS(setsockopt(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &hops, sizeof hops));
  CHECK(sockopt_int(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS) == 33);
  int zero = 0;
  CHECK(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero) == -1 && errno == EINVAL);
  fx_echo_check(fd, "ipv6 mapped, after options\n");
  close(fd);

  /* non-blocking */
  int nb = fx_socket6(SOCK_NONBLOCK);
  int r = connect(nb, (struct sockaddr *)&dst, sizeof dst);
  CHECKF(r == 0 || errno == EINPROGRESS, "non-blocking connect: %s", strerror(errno));
  CHECK(fx_wait_fd(nb, POLLOUT, 5000) & POLLOUT);
  int err = -1;
  socklen_t el = sizeof err;
  CHECK_SYS(getsockopt(nb, SOL_SOCKET, SO_ERROR, &err, &el));
  CHECK(err == 0);
  fx_expect_slimfast(nb, "non-blocking AF_INET6 connect");
  check_addrs(nb, &dst);
  fx_echo_check(nb, "ipv6 mapped, non-blocking\n");
  close(nb);

  /* IPv6-only: the kernel refuses a mapped destination, SlimFast does not step in */
  int o = fx_socket6(0);
  CHECK_SYS(setsockopt(o, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one));
  CHECKF(connect(o, (struct sockaddr *)&dst, sizeof dst) == -1 && errno == ENETUNREACH,
         "IPv6-only connect to a mapped address: %s", strerror(errno));
  close(o);

  /* mapped loopback: an ordinary connection */
  int l = fx_listen(htonl(INADDR_LOOPBACK), 0, 0);
  struct sockaddr_in6 ld = fx_mk6(htonl(INADDR_LOOPBACK), fx_port(l));
  int lc = fx_socket6(0);
  CHECK_SYS(connect(lc, (struct sockaddr *)&ld, sizeof ld));
  CHECK(!fx_is_swapped(lc));
  CHECK(fx_raw_sockopt_int(lc, SOL_SOCKET, SO_DOMAIN) == AF_INET6);
  int la = (int)CHECK_SYS(accept(l, NULL, NULL));
  CHECK(write(lc, "6", 1) == 1);
  char ch;
  CHECK(read(la, &ch, 1) == 1 && ch == '6');
  close(la), close(lc), close(l);

  /* a closed overlay port: refused, as over IPv4 */
  struct sockaddr_in closed;
  if (fx_env_addr("SF_TEST_CLOSED", &closed)) {
    struct sockaddr_in6 cd = fx_mk6(closed.sin_addr.s_addr, ntohs(closed.sin_port));
    int cf = fx_socket6(0);
    CHECKF(connect(cf, (struct sockaddr *)&cd, sizeof cd) == -1 && errno == ECONNREFUSED, "connect to closed %s: %s",
           fx_fmt6(&cd), strerror(errno));
    close(cf);
  }
  fx_pass();
}
