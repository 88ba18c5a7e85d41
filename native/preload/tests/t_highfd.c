/* fd numbers above 65535: a socket dup'ed to fd 70000 first (options and epoll registration made
 * there) connects through SlimFast; a listener at a high fd accepts. When RLIMIT_NOFILE cannot be
 * raised that far (hard limit 20000 on some machines), the same checks run at the highest fd the
 * limit allows and the test then exits 77 (skipped) saying so. */
#include "fixture.h"

#include <sys/resource.h>

#define WANT_FD 70000
#define WANT (WANT_FD + 64)
static int HIGH = WANT_FD;

int main(int argc, char **argv) {
  fx_init(argc, argv);
  struct rlimit rl;
  CHECK_SYS(getrlimit(RLIMIT_NOFILE, &rl));
  if (rl.rlim_cur < WANT) {
    struct rlimit want = {WANT, rl.rlim_max > WANT ? rl.rlim_max : WANT};
    if (setrlimit(RLIMIT_NOFILE, &want) != 0) { /* raising the hard limit needs privilege */
      want.rlim_cur = want.rlim_max = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &want);
    }
    CHECK_SYS(getrlimit(RLIMIT_NOFILE, &rl));
  }
  if (rl.rlim_cur < WANT) {
    if (rl.rlim_cur < 2048) SKIP("RLIMIT_NOFILE is %llu", (unsigned long long)rl.rlim_cur);
    HIGH = (int)rl.rlim_cur - 64;
  }
  struct sockaddr_in dst = fx_echo_target();

  int s = (int)CHECK_SYS(socket(AF_INET, SOCK_STREAM, 0));
  CHECK(dup2(s, HIGH) == HIGH);
  CHECK_SYS(close(s));
  int one = 1;
  CHECK_SYS(setsockopt(HIGH, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
  int ep = (int)CHECK_SYS(epoll_create1(0));
  struct epoll_event ev = {EPOLLIN | EPOLLOUT, {.u64 = (uint64_t)HIGH}}, out;
  CHECK_SYS(epoll_ctl(ep, EPOLL_CTL_ADD, HIGH, &ev));
  CHECK_SYS(connect(HIGH, (struct sockaddr *)&dst, sizeof dst));
  fx_expect_slimfast(HIGH, "connect on fd 70000");
  CHECK(epoll_wait(ep, &out, 1, 5000) == 1 && out.data.u64 == (uint64_t)HIGH && (out.events & EPOLLOUT));
  int v = 0;
  socklen_t vl = sizeof v;
  CHECK_SYS(getsockopt(HIGH, IPPROTO_TCP, TCP_NODELAY, &v, &vl));
  CHECK(v == 1);
  struct sockaddr_in p = fx_peername(HIGH);
  CHECK(fx_same_addr(&p, &dst));
  fx_echo_check(HIGH, "from a high fd\n");
  CHECK(dup3(HIGH, HIGH + 10, O_CLOEXEC) == HIGH + 10);
  struct sockaddr_in p2 = fx_peername(HIGH + 10);
  CHECK(fx_same_addr(&p2, &dst));
  close(HIGH + 10);
  close(HIGH);

  if (getenv("SF_TEST_SELF_IP")) {
    uint32_t self = fx_self_ip();
    int l = (int)CHECK_SYS(socket(AF_INET, SOCK_STREAM, 0));
    CHECK(dup2(l, HIGH + 1) == HIGH + 1);
    close(l);
    struct sockaddr_in any = fx_mkaddr(INADDR_ANY, 0);
    CHECK_SYS(bind(HIGH + 1, (struct sockaddr *)&any, sizeof any));
    CHECK_SYS(listen(HIGH + 1, 16));
    fx_expect_slimfast(HIGH + 1, "listener on a high fd");
    struct sockaddr_in ld = fx_mkaddr(self, fx_port(HIGH + 1));
    int c = fx_connect(&ld);
    int a = (int)CHECK_SYS(accept(HIGH + 1, NULL, NULL));
    CHECK(write(c, "z", 1) == 1);
    char ch;
    CHECK(read(a, &ch, 1) == 1 && ch == 'z');
    close(a), close(c), close(HIGH + 1);
  }
  close(ep);
  if (HIGH < 65536)
    SKIP("checks passed at fd %d only; RLIMIT_NOFILE (hard %llu) does not allow fd %d", HIGH,
         (unsigned long long)rl.rlim_max, WANT_FD);
  fx_pass();
}
