/* The broker dies under a SlimFast listener and a new one starts on the same socket path: without
 * the application doing anything, the listener is registered with the new broker on the same fd
 * (same epoll registration), and an accept() that was blocked across the restart returns the
 * first SlimFast connection made through the new broker. Uses its own tests/bin/fakebroker. */
#include "fixture.h"

#include <pthread.h>
#include <time.h>

static int lfd;
static volatile int accepted_fd = -1;

static void *blocked_accept(void *arg) {
  (void)arg;
  accepted_fd = accept(lfd, NULL, NULL);
  return NULL;
}

static int child(pid_t broker, const char *path, uint32_t self, const char *cidr) {
  lfd = fx_listen(INADDR_ANY, 0, 0);
  CHECKF(fx_raw_sockopt_int(lfd, SOL_SOCKET, SO_DOMAIN) == AF_UNIX, "listener is not a channel");
  uint16_t port = fx_port(lfd);
  struct sockaddr_in dst = fx_mkaddr(self, port);
  int ep = (int)CHECK_SYS(epoll_create1(0));
  struct epoll_event ev = {EPOLLIN, {.u64 = 77}}, out;
  CHECK_SYS(epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev));

  int c1 = fx_connect(&dst);
  CHECK(fx_is_swapped(c1));
  int a1 = (int)CHECK_SYS(accept(lfd, NULL, NULL));
  CHECK(write(c1, "1", 1) == 1);
  char ch;
  CHECK(read(a1, &ch, 1) == 1 && ch == '1');

  pthread_t t;
  CHECK(pthread_create(&t, NULL, blocked_accept, NULL) == 0);
  CHECK_SYS(kill(broker, SIGKILL));
  usleep(300 * 1000);
  /* the connection made through the dead broker is a host socket: it does not care */
  CHECK(write(a1, "2", 1) == 1);
  CHECK(read(c1, &ch, 1) == 1 && ch == '2');

  double t0 = fx_now();
  pid_t nb = fx_fakebroker_at(path, self, cidr);
  double back = -1;
  while (fx_now() - t0 < 3.0) {
    if (fx_raw_sockopt_int(lfd, SOL_SOCKET, SO_DOMAIN) == AF_UNIX) {
      back = fx_now() - t0;
      break;
    }
    usleep(10 * 1000);
  }
  CHECKF(back >= 0, "the listener was not registered again within 3 s of the new broker");
  fprintf(stderr, "t_broker_restart: listener registered again %.0f ms after the new broker started\n", back * 1000);
  CHECK(fx_port(lfd) == port);

  /* the accept() blocked since before the crash gets the first connection through the new broker */
  int c2 = fx_connect(&dst);
  CHECK(fx_is_swapped(c2));
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += 5;
  CHECKF(pthread_timedjoin_np(t, NULL, &dl) == 0, "the blocked accept() did not return");
  CHECKF(accepted_fd >= 0, "accept failed: %s", strerror(errno));
  CHECK(write(c2, "3", 1) == 1);
  CHECK(read(accepted_fd, &ch, 1) == 1 && ch == '3');

  /* still in the epoll set, with the same data, and accepting SlimFast connections */
  while (epoll_wait(ep, &out, 1, 0) == 1) usleep(1000); /* level-triggered leftovers: none expected */
  int c3 = fx_connect(&dst);
  CHECK(fx_is_swapped(c3));
  CHECK(epoll_wait(ep, &out, 1, 5000) == 1 && out.data.u64 == 77);
  int a3 = (int)CHECK_SYS(accept4(lfd, NULL, NULL, SOCK_NONBLOCK));
  CHECK(write(c3, "4", 1) == 1);
  CHECK(fx_wait_fd(a3, POLLIN, 5000) & POLLIN);
  CHECK(read(a3, &ch, 1) == 1 && ch == '4');

  close(a1), close(c1), close(c2), close(accepted_fd), close(c3), close(a3), close(lfd), close(ep);
  kill(nb, SIGKILL);
  return 0;
}

int main(int argc, char **argv) {
  fx_init(argc, argv);
  uint32_t self;
  char path[108], cidr[32];
  if (argc == 5 && !strcmp(argv[1], "--child")) {
    self = fx_self_ip();
    child((pid_t)atoi(argv[2]), argv[3], self, argv[4]);
    fx_pass();
  }
  if (!fx_preloaded()) SKIP("libslimfast is not preloaded");
  self = fx_self_ip();
  inet_ntop(AF_INET, &self, cidr, sizeof cidr);
  strcat(cidr, "/32");
  pid_t fb = fx_fakebroker(path, sizeof path, self, cidr);
  char env_sock[160], spid[16];
  snprintf(env_sock, sizeof env_sock, "SLIMFAST_SOCKET=%s", path);
  snprintf(spid, sizeof spid, "%d", (int)fb);
  const char *env[] = {env_sock, NULL};
  int rc = fx_run_self((char *const[]){"--child", spid, path, cidr, NULL}, env);
  kill(fb, SIGKILL);
  waitpid(fb, NULL, 0);
  unlink(path);
  CHECKF(rc == 0, "child failed (%d)", rc);
  fx_pass();
}
