/* 8 threads connect and echo in a loop while the broker first hangs (SIGSTOP, longer than
 * SLIMFAST_TIMEOUT_MS), then resumes, then dies (SIGKILL): every connection still works (SlimFast,
 * or the ordinary path after a timeout or the broker's death), nothing hangs, the listener falls
 * back to its real socket. The one exception: a connection the broker had accepted but not yet
 * handed down when it was killed is reset, as by any process that dies holding a socket; at most
 * one per thread, and only across the kill. Uses its own tests/bin/fakebroker. */
#include "fixture.h"

#define NTHREADS 8

static struct sockaddr_in dst;
static volatile int stop, killing;
static int lost[NTHREADS];
static int done[NTHREADS], swapped[NTHREADS];

static void *worker(void *arg) {
  int id = (int)(intptr_t)arg;
  while (!stop) {
    int fd = (int)CHECK_SYS(socket(AF_INET, SOCK_STREAM | (done[id] % 2 ? SOCK_NONBLOCK : 0), 0));
    int r = connect(fd, (struct sockaddr *)&dst, sizeof dst);
    CHECKF(r == 0 || errno == EINPROGRESS, "thread %d: connect: %s", id, strerror(errno));
    if (r != 0) CHECK(fx_wait_fd(fd, POLLOUT, 5000) & POLLOUT);
    int err = -1;
    socklen_t l = sizeof err;
    CHECK_SYS(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l));
    CHECKF(err == 0, "thread %d: SO_ERROR %d", id, err);
    if (fx_is_swapped(fd)) swapped[id]++;
    const char *why = fx_echo_try(fd, "through hang and death\n");
    if (why) { /* reset, or EOF: the broker died with this connection in hand */
      CHECKF(killing && (errno == ECONNRESET || errno == 0) && !strstr(why, "within"), "thread %d: %s (broker %s)", id,
             why, killing ? "killed" : "alive");
      lost[id]++;
    } else {
      done[id]++;
    }
    close(fd);
  }
  return NULL;
}

static int child(pid_t broker) {
  uint32_t self = fx_self_ip();
  int lfd = fx_listen(INADDR_ANY, 0, 0);
  CHECK(fx_is_swapped(lfd));
  fx_echo_thread(lfd);
  dst = fx_mkaddr(self, fx_port(lfd));
  pthread_t th[NTHREADS];
  for (int i = 0; i < NTHREADS; i++) CHECK(pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i) == 0);
  usleep(500000);
  CHECK_SYS(kill(broker, SIGSTOP));
  usleep(1000000);
  CHECK_SYS(kill(broker, SIGCONT));
  usleep(700000);
  killing = 1;
  CHECK_SYS(kill(broker, SIGKILL));
  usleep(1500000);
  stop = 1;
  int total = 0, sw = 0, nlost = 0;
  for (int i = 0; i < NTHREADS; i++) {
    pthread_join(th[i], NULL);
    total += done[i];
    sw += swapped[i];
    nlost += lost[i];
    CHECKF(lost[i] <= 1, "thread %d lost %d connections to the broker's death", i, lost[i]);
  }
  printf("%d connections, %d through SlimFast, %d reset by the broker's death\n", total, sw, nlost);
  CHECK(sw > 0 && total > sw);
  CHECK(!fx_is_swapped(lfd)); /* the listener is its real socket again */
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
  const char *env[] = {env_sock, "SLIMFAST_TIMEOUT_MS=300", NULL};
  int rc = fx_run_self((char *const[]){"--child", spid, NULL}, env);
  kill(fb, SIGKILL);
  waitpid(fb, NULL, 0);
  unlink(path);
  CHECKF(rc == 0, "child failed (%d)", rc);
  fx_pass();
}
