/* A listening socket inherited across execve keeps accepting: the new image adopts the channel
 * (through epoll_ctl here) and reports the listening address and options as before. */
#include "fixture.h"

static int serve(int fd, uint16_t port) {
  int ep = (int)CHECK_SYS(epoll_create1(0));
  struct epoll_event ev = {EPOLLIN, {.u64 = 5}}, out;
  CHECK_SYS(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev));
  CHECK(epoll_wait(ep, &out, 1, 10000) == 1 && out.data.u64 == 5);
  struct sockaddr_in l = fx_sockname(fd);
  CHECKF(ntohs(l.sin_port) == port, "inherited listener reports %s, want port %u", fx_fmt(&l), port);
  int v = 0;
  socklen_t vl = sizeof v;
  CHECK_SYS(getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl));
  CHECK(v == 1);
  CHECK_SYS(getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &vl));
  CHECK(v == SOCK_STREAM);
  CHECK_SYS(getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &vl));
  CHECK(v == AF_INET);
  struct sockaddr_in from;
  socklen_t fl = sizeof from;
  int a = (int)CHECK_SYS(accept(fd, (struct sockaddr *)&from, &fl));
  CHECK(fl == sizeof from && from.sin_family == AF_INET);
  char buf[64];
  ssize_t n = read(a, buf, sizeof buf);
  CHECK(n > 0);
  CHECK(write(a, buf, (size_t)n) == n);
  close(a);
  return 0;
}

int main(int argc, char **argv) {
  fx_init(argc, argv);
  if (argc == 4 && !strcmp(argv[1], "--serve")) {
    serve(atoi(argv[2]), (uint16_t)atoi(argv[3]));
    fx_pass();
  }
  uint32_t self = fx_self_ip();
  int lfd = fx_listen(INADDR_ANY, 0, 0);
  fx_expect_slimfast(lfd, "listener before exec");
  uint16_t port = fx_port(lfd);
  CHECK((fcntl(lfd, F_GETFD) & FD_CLOEXEC) == 0);
  char sfd[16], sport[16];
  snprintf(sfd, sizeof sfd, "%d", lfd);
  snprintf(sport, sizeof sport, "%u", port);
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    char *args[] = {argv[0], "--serve", sfd, sport, NULL};
    execv(fx_self_exe(), args);
    _exit(127);
  }
  CHECK_SYS(close(lfd)); /* only the exec'ed image holds the listener now */
  struct sockaddr_in dst = fx_mkaddr(self, port);
  int c = fx_connect(&dst);
  fx_echo_check(c, "across exec\n");
  int st;
  CHECK(waitpid(pid, &st, 0) == pid);
  CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exec'ed server failed (status 0x%x)", st);
  close(c);
  fx_pass();
}
