/* A vfork() child shares the parent's memory but has its own fds: its close()/dup2() calls before
 * exec must not change what the parent's table says about the parent's sockets. */
#include "fixture.h"

int main(int argc, char **argv) {
  fx_init(argc, argv);
  uint32_t self = fx_self_ip();
  struct sockaddr_in echo = fx_echo_target();
  int c = fx_connect(&echo);
  struct sockaddr_in cp = fx_peername(c);
  int lfd = fx_listen(INADDR_ANY, 0, 0);
  struct sockaddr_in ls = fx_sockname(lfd);
  pid_t pid = vfork();
  CHECK(pid >= 0);
  if (pid == 0) {
    /* what a shell-like spawner does between vfork and exec */
    dup2(c, 0);
    close(c);
    close(lfd);
    execl("/bin/true", "true", (char *)NULL);
    _exit(127);
  }
  int st;
  CHECK(waitpid(pid, &st, 0) == pid);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  struct sockaddr_in cp2 = fx_peername(c), ls2 = fx_sockname(lfd);
  CHECKF(fx_same_addr(&cp, &cp2), "peer changed to %s", fx_fmt(&cp2));
  CHECKF(fx_same_addr(&ls, &ls2), "listener changed to %s", fx_fmt(&ls2));
  fx_echo_check(c, "after vfork\n");
  struct sockaddr_in d = fx_mkaddr(self, ntohs(ls.sin_port));
  int c2 = fx_connect(&d);
  int a = (int)CHECK_SYS(accept(lfd, NULL, NULL));
  CHECK(write(c2, "v", 1) == 1);
  char ch;
  CHECK(read(a, &ch, 1) == 1 && ch == 'v');
  struct sockaddr_in s0;
  socklen_t l0 = sizeof s0;
  if (fx_raw_sockname(0, &s0) == -1 && errno == ENOTSOCK) /* fd 0 of the parent is untouched */
    CHECK(getsockname(0, (struct sockaddr *)&s0, &l0) == -1 && errno == ENOTSOCK);
  close(a), close(c2), close(c), close(lfd);
  fx_pass();
}
