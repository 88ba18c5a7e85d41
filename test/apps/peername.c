/* peername: connect to IP PORT, print what getsockname and getpeername say, echo one message.
 *
 *   peername IP PORT     (built with gcc -static by test/seccomp.test.ts)
 *
 * Prints one line: "local=A.B.C.D:P peer=A.B.C.D:P short=A.B.C.D len=N echo=ok", where short is
 * getpeername's answer into a 6-byte buffer (truncated, full length reported in len). Exit 0 on
 * success, 1 with the failing call on stderr otherwise.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int fail(const char *what) {
  perror(what);
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: peername IP PORT\n");
    return 2;
  }
  struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[2]))};
  if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) return fail("inet_pton");
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return fail("socket");
  if (connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0) return fail("connect");
  struct sockaddr_in l, p;
  socklen_t ll = sizeof l, pl = sizeof p;
  if (getsockname(fd, (struct sockaddr *)&l, &ll) != 0) return fail("getsockname");
  if (getpeername(fd, (struct sockaddr *)&p, &pl) != 0) return fail("getpeername");
  struct sockaddr_in s;
  memset(&s, 0xff, sizeof s);
  socklen_t sl = 6; /* family, port, two bytes of the address */
  if (getpeername(fd, (struct sockaddr *)&s, &sl) != 0) return fail("getpeername (short)");
  char lb[32], pb[32], sb[32];
  inet_ntop(AF_INET, &l.sin_addr, lb, sizeof lb);
  inet_ntop(AF_INET, &p.sin_addr, pb, sizeof pb);
  inet_ntop(AF_INET, &s.sin_addr, sb, sizeof sb);
  const char msg[] = "peername\n";
  char buf[sizeof msg];
  if (write(fd, msg, sizeof msg) != (ssize_t)sizeof msg) return fail("write");
  size_t got = 0;
  while (got < sizeof msg) {
    ssize_t n = read(fd, buf + got, sizeof msg - got);
    if (n <= 0) return fail("read");
    got += (size_t)n;
  }
  printf("local=%s:%u peer=%s:%u short=%s len=%u echo=%s\n", lb, ntohs(l.sin_port), pb, ntohs(p.sin_port), sb,
         (unsigned)sl, memcmp(buf, msg, sizeof msg) == 0 ? "ok" : "bad");
  close(fd);
  return 0;
}
