/* The broker dies under a SlimFast listener: the channel reads EOF, accept() (or the watcher
 * thread, whichever comes first) puts the real listening socket back (same fd, same epoll
 * registration), and it accepts ordinary connections.
 * Uses its own tests/bin/fakebroker so that it can kill it. */
#include "fixture.h"

static int child(pid_t broker) {
  uint32_t self = fx_self_ip();
  int lfd = fx_listen(INADDR_ANY, 0, 0);
  CHECKF(fx_raw_sockopt_int(lfd, SOL_SOCKET, SO_DOMAIN) == AF_UNIX, "listener is not a channel");
  uint16_t port = fx_port(lfd);
  struct sockaddr_in dst = fx_mkaddr(self, port);
  int ep = (int)CHECK_SYS(epoll_create1(0));
  struct epoll_event ev = {EPOLLIN, {.u64 = 77}}, out;
  CHECK_SYS(epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev));

  int c1 = fx_connect(&dst);
  CHECK(fx_is_swapped(c1));
  CHECK(epoll_wait(ep, &out, 1, 5000) == 1 && out.data.u64 == 77);
  int a1 = (int)CHECK_SYS(accept(lfd, NULL, NULL));
  CHECK(write(c1, "1", 1) == 1);
  char ch;
  CHECK(read(a1, &ch, 1) == 1 && ch == '1');

  CHECK_SYS(kill(broker, SIGKILL));
  /* EOF is readable, unless the watcher thread put the real socket back first (then the epoll
     registration moved with it and nothing is pending) */
  int woke = 0;
  for (int i = 0; i < 500 && !woke; i++) {
    int n = epoll_wait(ep, &out, 1, 10);
    CHECK(n == 0 || out.data.u64 == 77);
    woke = n == 1 || fx_raw_sockopt_int(lfd, SOL_SOCKET, SO_DOMAIN) == AF_INET;
  }
  CHECKF(woke, "the dead channel neither woke epoll nor was replaced within 5 s");

  int c2 = fx_connect(&dst); /* broker gone: an ordinary connection to the real socket */
  CHECK(!fx_is_swapped(c2));
  struct sockaddr_in from;
  socklen_t fl = sizeof from;
  int a2 = (int)CHECK_SYS(accept(lfd, (struct sockaddr *)&from, &fl));
  struct sockaddr_in c2l = fx_sockname(c2);
  CHECKF(fx_same_addr(&from, &c2l), "accept says %s, client %s", fx_fmt(&from), fx_fmt(&c2l));
  CHECK(write(c2, "2", 1) == 1);
  CHECK(read(a2, &ch, 1) == 1 && ch == '2');
  CHECK(fx_raw_sockopt_int(lfd, SOL_SOCKET, SO_DOMAIN) == AF_INET);
  CHECK(fx_raw_sockopt_int(lfd, SOL_SOCKET, SO_ACCEPTCONN) == 1);
  CHECK(fx_port(lfd) == port);

  /* still in the epoll set, with the same data */
  CHECK(epoll_wait(ep, &out, 1, 0) == 0);
  int c3 = fx_connect(&dst);
  CHECK(epoll_wait(ep, &out, 1, 5000) == 1 && out.data.u64 == 77);
  int a3 = (int)CHECK_SYS(accept4(lfd, NULL, NULL, SOCK_NONBLOCK));
  CHECK(fcntl(a3, F_GETFL) & O_NONBLOCK);
  close(a1), close(a2), close(a3), close(c1), close(c2), close(c3), close(lfd), close(ep);
  return 0;
}

int main(int argc, char **argv) {
  fx_init(argc, argv);
  if (argc == 3 && !strcmp(argv[1], "--child")) {
    child((pid_t)atoi(argv[2]));
    fx_pass();
  }
  if (!fx_preloaded()) SKIP("libslimfast is not preloaded");
  uint32_t self = fx_self_ip();
  char path[108], cidr[32], env_sock[160], spid[16];
  inet_ntop(AF_INET, &self, cidr, sizeof cidr);
  strcat(cidr, "/32");
  pid_t fb = fx_fakebroker(path, sizeof path, self, cidr);
  snprintf(env_sock, sizeof env_sock, "SLIMFAST_SOCKET=%s", path);
  snprintf(spid, sizeof spid, "%d", (int)fb);
  const char *env[] = {env_sock, NULL};
  int rc = fx_run_self((char *const[]){"--child", spid, NULL}, env);
  kill(fb, SIGKILL);
  waitpid(fb, NULL, 0);
  unlink(path);
  CHECKF(rc == 0, "child failed (%d)", rc);
  fx_pass();
}
