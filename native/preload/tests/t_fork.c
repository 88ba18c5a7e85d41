/* fork: the child uses inherited SlimFast sockets and opens its own broker connection for new
 * ones; parent and children connecting at the same time all get their own replies. */
#include "fixture.h"

static int connect_many(const struct sockaddr_in *dst, int n, const char *who) {
  for (int i = 0; i < n; i++) {
    int fd = fx_connect(dst);
    fx_expect_slimfast(fd, who);
    char msg[64];
    snprintf(msg, sizeof msg, "%s %d %d\n", who, (int)getpid(), i);
    fx_echo_check(fd, msg);
    struct sockaddr_in p = fx_peername(fd);
    CHECKF(fx_same_addr(&p, dst), "%s: peer %s", who, fx_fmt(&p));
    close(fd);
  }
  return 0;
}

int main(int argc, char **argv) {
  fx_init(argc, argv);
  struct sockaddr_in dst = fx_echo_target();
  int fd = fx_connect(&dst);
  fx_expect_slimfast(fd, "parent connect");
  struct sockaddr_in l = fx_sockname(fd), p = fx_peername(fd);

  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    struct sockaddr_in cl = fx_sockname(fd), cp = fx_peername(fd);
    CHECK(fx_same_addr(&cl, &l) && fx_same_addr(&cp, &p));
    fx_echo_check(fd, "child on the inherited socket\n");
    connect_many(&dst, 10, "child");
    _exit(0);
  }
  int st;
  CHECK(waitpid(pid, &st, 0) == pid);
  CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed (status 0x%x)", st);
  fx_echo_check(fd, "parent after the child\n");
  connect_many(&dst, 3, "parent");

  /* concurrently: parent and three children */
  pid_t kids[3];
  for (int k = 0; k < 3; k++) {
    kids[k] = fork();
    CHECK(kids[k] >= 0);
    if (kids[k] == 0) {
      connect_many(&dst, 30, "concurrent child");
      _exit(0);
    }
  }
  connect_many(&dst, 30, "concurrent parent");
  for (int k = 0; k < 3; k++) {
    CHECK(waitpid(kids[k], &st, 0) == kids[k]);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d failed (status 0x%x)", k, st);
  }
  close(fd);
  fx_pass();
}
