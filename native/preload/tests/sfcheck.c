/* sfcheck: a tiny tool for end-to-end checks.
 *   sfcheck connect IP PORT [MESSAGE]  connect, print the addresses the app sees (and the
 *                                      kernel's), send one line and check the echo
 *   sfcheck listen PORT                accept one connection on 0.0.0.0:PORT, print addresses,
 *                                      echo one line back
 * Output is one line of key=value pairs; exit 0 on success. */
#include "fixture.h"

static void print_addrs(const char *what, int fd, const char *extra) {
  struct sockaddr_in l, p, rl, rp;
  socklen_t a = sizeof l, b = sizeof p;
  memset(&l, 0, sizeof l);
  memset(&p, 0, sizeof p);
  getsockname(fd, (struct sockaddr *)&l, &a);
  getpeername(fd, (struct sockaddr *)&p, &b);
  fx_raw_sockname(fd, &rl);
  fx_raw_peername(fd, &rp);
  printf("%s local=%s peer=%s kernel_local=%s kernel_peer=%s slimfast=%s%s\n", what, fx_fmt(&l), fx_fmt(&p),
         fx_fmt(&rl), fx_fmt(&rp), fx_same_addr(&l, &rl) ? "no" : "yes", extra ? extra : "");
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);
  alarm(30);
  if (argc >= 4 && !strcmp(argv[1], "connect")) {
    struct sockaddr_in sa;
    char hp[80];
    snprintf(hp, sizeof hp, "%s:%s", argv[2], argv[3]);
    if (!fx_parse_addr(hp, &sa)) {
      fprintf(stderr, "sfcheck: bad address %s\n", hp);
      return 2;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
      printf("connect error=%s\n", strerror(errno));
      return 1;
    }
    const char *msg = argc > 4 ? argv[4] : "hello slimfast";
    char line[512];
    snprintf(line, sizeof line, "%s\n", msg);
    fx_echo_check(fd, line);
    print_addrs("connect", fd, " echo=ok");
    close(fd);
    return 0;
  }
  if (argc >= 3 && !strcmp(argv[1], "listen")) {
    int lfd = fx_listen(INADDR_ANY, (uint16_t)atoi(argv[2]), 0);
    struct sockaddr_in ls = fx_sockname(lfd);
    printf("listening %s\n", fx_fmt(&ls));
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    int c = accept(lfd, (struct sockaddr *)&from, &fl);
    if (c < 0) {
      printf("accept error=%s\n", strerror(errno));
      return 1;
    }
    char extra[80];
    snprintf(extra, sizeof extra, " accepted_from=%s", fx_fmt(&from));
    print_addrs("accept", c, extra);
    char buf[512];
    ssize_t n = read(c, buf, sizeof buf);
    if (n > 0 && write(c, buf, (size_t)n) != n) return 1;
    close(c);
    return n > 0 ? 0 : 1;
  }
  fprintf(stderr, "usage: sfcheck connect IP PORT [MESSAGE] | sfcheck listen PORT\n");
  return 2;
}
