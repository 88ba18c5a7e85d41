/* accept(fd, NULL, NULL) on a SlimFast listener; addresses filled and truncated like the kernel
 * does when a buffer is given. */
#include "fixture.h"

int main(int argc, char **argv) {
  fx_init(argc, argv);
  uint32_t self = fx_self_ip();
  int lfd = fx_listen(INADDR_ANY, 0, 0);
  fx_expect_slimfast(lfd, "listener");
  struct sockaddr_in dst = fx_mkaddr(self, fx_port(lfd));

  int c1 = fx_connect(&dst);
  int a1 = (int)CHECK_SYS(accept(lfd, NULL, NULL));
  CHECK(write(c1, "abc", 3) == 3);
  char buf[8];
  CHECK(read(a1, buf, sizeof buf) == 3 && memcmp(buf, "abc", 3) == 0);
  CHECK(write(a1, "xyz", 3) == 3);
  CHECK(read(c1, buf, sizeof buf) == 3 && memcmp(buf, "xyz", 3) == 0);
  struct sockaddr_in al = fx_sockname(a1);
  CHECKF(fx_same_addr(&al, &dst), "accepted local %s, want %s", fx_fmt(&al), fx_fmt(&dst));

  /* short buffer: 4 bytes written, the rest untouched, full length reported */
  int c2 = fx_connect(&dst);
  unsigned char raw[sizeof(struct sockaddr_in)];
  memset(raw, 0xaa, sizeof raw);
  socklen_t len = 4;
  int a2 = (int)CHECK_SYS(accept(lfd, (struct sockaddr *)raw, &len));
  CHECKF(len == sizeof(struct sockaddr_in), "addrlen %u", (unsigned)len);
  sa_family_t fam;
  memcpy(&fam, raw, sizeof fam);
  CHECK(fam == AF_INET);
  for (size_t i = 4; i < sizeof raw; i++) CHECKF(raw[i] == 0xaa, "byte %zu overwritten", i);

  /* addrlen given, addr NULL: ignored */
  int c3 = fx_connect(&dst);
  len = sizeof(struct sockaddr_in);
  int a3 = (int)CHECK_SYS(accept(lfd, NULL, &len));

  /* full buffer: the client's address as the client sees it */
  int c4 = fx_connect(&dst);
  struct sockaddr_in from;
  len = sizeof from;
  int a4 = (int)CHECK_SYS(accept(lfd, (struct sockaddr *)&from, &len));
  struct sockaddr_in cl = fx_sockname(c4);
  CHECKF(fx_same_addr(&from, &cl), "accept says %s, client says %s", fx_fmt(&from), fx_fmt(&cl));
  fx_expect_slimfast(a4, "accepted socket");
  close(a1), close(a2), close(a3), close(a4), close(c1), close(c2), close(c3), close(c4);
  close(lfd);
  fx_pass();
}
