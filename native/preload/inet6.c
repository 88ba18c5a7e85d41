/* AF_INET6 sockets on the IPv4 overlay.
 *
 * A dual-stack server (AF_INET6 bound to :: with IPV6_V6ONLY off) or a client connecting an
 * AF_INET6 socket to ::ffff:<overlay address> is served like its IPv4 twin: the wire carries the
 * IPv4 address. The socket the app ends up with is then an AF_INET host socket (or, for an ordinary
 * client of a dual-stack listener, the real AF_INET6 one): its entry carries SF_F_V6 and every
 * address the app reads is a v4-mapped sockaddr_in6. Options at IPPROTO_IPV6 on an AF_INET host
 * socket are emulated here (small on purpose):
 *   set IPV6_TCLASS       -> IP_TOS        get IPV6_TCLASS       <- IP_TOS
 *   set IPV6_UNICAST_HOPS -> IP_TTL        get IPV6_UNICAST_HOPS <- IP_TTL
 *   set IPV6_V6ONLY       -> EINVAL (as the kernel says for any bound socket)
 *                                          get IPV6_V6ONLY       -> 0
 *                                          get IPV6_MTU          <- IP_MTU
 *   set anything else     -> 0 (ignored)   get anything else     -> the kernel's ENOPROTOOPT
 */
#include "sf.h"

#include <stddef.h>
#include <string.h>

int sf_v6_to_v4(const struct sockaddr *addr, socklen_t len, uint32_t *ip, uint16_t *port) {
  /* the kernel takes the RFC 2133 size (no sin6_scope_id) as well */
  if (!addr || len < (socklen_t)offsetof(struct sockaddr_in6, sin6_scope_id) || addr->sa_family != AF_INET6) return 0;
  struct sockaddr_in6 s6;
  memset(&s6, 0, sizeof s6);
  memcpy(&s6, addr, len < (socklen_t)sizeof s6 ? len : sizeof s6);
  const struct in6_addr *a = &s6.sin6_addr;
  if (IN6_IS_ADDR_UNSPECIFIED(a)) {
    *ip = 0;
  } else if (IN6_IS_ADDR_V4MAPPED(a)) {
    memcpy(ip, &a->s6_addr[12], 4);
  } else {
    return 0;
  }
  *port = s6.sin6_port;
  return 1;
}

int sf_v6only(int fd) {
  int v = 1;
  socklen_t l = sizeof v;
  if (REAL(getsockopt)(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v, &l) != 0) return 1;
  return v != 0;
}

int sf_v6_opt_v4(int name, int *name4) {
  switch (name) {
    case IPV6_TCLASS:
      *name4 = IP_TOS;
      return 1;
    case IPV6_UNICAST_HOPS:
      *name4 = IP_TTL;
      return 1;
    default:
      return 0;
  }
}

static int put_int(void *val, socklen_t *len, int v) {
  if (!val || !len || (int)*len < 0) {
    errno = !val || !len ? EFAULT : EINVAL;
    return -1;
  }
  socklen_t n = *len < (socklen_t)sizeof v ? *len : (socklen_t)sizeof v;
  memcpy(val, &v, n);
  *len = n;
  return 0;
}

int sf_v6_setsockopt(int fd, int name, const void *val, socklen_t len) {
  int name4;
  if (name == IPV6_V6ONLY) {
    errno = EINVAL;
    return -1;
  }
  if (!sf_v6_opt_v4(name, &name4)) return 0;
  int v;
  if (!val || len < (socklen_t)sizeof v) {
    errno = val ? EINVAL : EFAULT;
    return -1;
  }
  memcpy(&v, val, sizeof v);
  if (v < -1 || v > 255) {
    errno = EINVAL;
    return -1;
  }
  if (name4 == IP_TOS && v == -1) v = 0; /* IPV6_TCLASS -1 = the default class */
  if (name4 == IP_TTL && v == 0) v = 1;  /* IP_TTL has no 0 */
  return REAL(setsockopt)(fd, IPPROTO_IP, name4, &v, sizeof v);
}

int sf_v6_getsockopt(int fd, int name, void *val, socklen_t *len) {
  int name4, v = 0;
  socklen_t l = sizeof v;
  if (name == IPV6_V6ONLY) return put_int(val, len, 0);
  if (name == IPV6_MTU)
    name4 = IP_MTU;
  else if (!sf_v6_opt_v4(name, &name4))
    return REAL(getsockopt)(fd, IPPROTO_IPV6, name, val, len);
  if (REAL(getsockopt)(fd, IPPROTO_IP, name4, &v, &l) != 0) return -1;
  return put_int(val, len, v);
}
