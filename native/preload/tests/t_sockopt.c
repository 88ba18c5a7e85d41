/* Socket options set before connect() survive the swap to the SlimFast socket. */
#include "fixture.h"

struct opt {
  int level, name;
  const char *label;
};

int main(int argc, char **argv) {
  fx_init(argc, argv);
  struct sockaddr_in dst = fx_echo_target();
  int fd = (int)CHECK_SYS(socket(AF_INET, SOCK_STREAM, 0));
  int one = 1, zero = 0, snd = 131072, rcv = 98304, idle = 33, intvl = 7, cnt = 4, tos = 0x10;
  struct linger lg = {1, 7};
  CHECK_SYS(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
  CHECK_SYS(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &zero, sizeof zero));
  CHECK_SYS(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one)); /* last one wins */
  CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one));
  CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd));
  CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv));
  CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg));
  CHECK_SYS(setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle));
  CHECK_SYS(setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl));
  CHECK_SYS(setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt));
  CHECK_SYS(setsockopt(fd, IPPROTO_IP, IP_TOS, &tos, sizeof tos));
  struct timeval tv = {7, 0};
  CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
  static const struct opt opts[] = {
      {IPPROTO_TCP, TCP_NODELAY, "TCP_NODELAY"},
      {SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE"},
      {SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF"},
      {SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF"},
      {SOL_SOCKET, SO_LINGER, "SO_LINGER"},
      {IPPROTO_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE"},
      {IPPROTO_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL"},
      {IPPROTO_TCP, TCP_KEEPCNT, "TCP_KEEPCNT"},
      {IPPROTO_IP, IP_TOS, "IP_TOS"},
      {SOL_SOCKET, SO_RCVTIMEO, "SO_RCVTIMEO"},
  };
  enum { N = sizeof opts / sizeof opts[0] };
  unsigned char before[N][32], after[N][32];
  socklen_t bl[N], al[N];
  for (int i = 0; i < N; i++) {
    bl[i] = sizeof before[i];
    memset(before[i], 0, sizeof before[i]);
    CHECK_SYS(getsockopt(fd, opts[i].level, opts[i].name, before[i], &bl[i]));
  }
  CHECK_SYS(connect(fd, (struct sockaddr *)&dst, sizeof dst));
  fx_expect_slimfast(fd, "connect");
  for (int i = 0; i < N; i++) {
    al[i] = sizeof after[i];
    memset(after[i], 0, sizeof after[i]);
    CHECK_SYS(getsockopt(fd, opts[i].level, opts[i].name, after[i], &al[i]));
    CHECKF(al[i] == bl[i] && memcmp(before[i], after[i], al[i]) == 0, "%s changed by connect()", opts[i].label);
  }
  /* options set after connect() go to the connected socket */
  CHECK_SYS(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &zero, sizeof zero));
  int v = -1;
  socklen_t vl = sizeof v;
  CHECK_SYS(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &vl));
  CHECK(v == 0);
  fx_echo_check(fd, "options\n");
  close(fd);
  fx_pass();
}
