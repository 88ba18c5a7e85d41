/* fork() while other threads are busy in the library (connect/dup/close loops and listeners coming
 * and going: at any moment one of them may hold an fd-table slot, the broker client's or the
 * pool's lock, or be reading a broker reply): every child can create sockets, connect over
 * SlimFast, listen and accept, and exits within a bounded time; the parent keeps working. */
#include "fixture.h"

#define NTHREADS 3
#define NFORKS 24
#define CHILD_SECONDS 10

static struct sockaddr_in dst;
static volatile int stop;
static long iters[NTHREADS];

static void *busy(void *arg) {
  int id = (int)(intptr_t)arg;
  while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) continue;
    CHECKF(connect(s, (struct sockaddr *)&dst, sizeof dst) == 0, "thread %d: connect to %s: %s", id, fx_fmt(&dst),
           strerror(errno));
    fx_expect_slimfast(s, "parent thread connect");
    int d = dup(s);
    close(s);
    if (iters[id] % 8 == 0 && d >= 0) fx_echo_check(d, "parent thread\n");
    if (d >= 0) close(d);
    if (id == 0 && iters[id] % 4 == 0) close(fx_listen(INADDR_ANY, 0, 0)); /* broker LISTEN round trips */
    iters[id]++;
  }
  return NULL;
}

/* What a child does: new sockets over SlimFast, a listener of its own, its own broker connection. */
static void child(int k) {
  alarm(CHILD_SECONDS); /* alarms are not inherited: the fixture's handler fails a hung child */
  for (int i = 0; i < 3; i++) {
    int fd = fx_connect(&dst);
    fx_expect_slimfast(fd, "child connect");
    char msg[64];
    snprintf(msg, sizeof msg, "child %d connection %d\n", k, i);
    fx_echo_check(fd, msg);
    struct sockaddr_in p = fx_peername(fd);
    CHECKF(fx_same_addr(&p, &dst), "child: peer %s", fx_fmt(&p));
    CHECK_SYS(close(fd));
  }
  int l = fx_listen(INADDR_ANY, 0, 0);
  fx_expect_slimfast(l, "child listener");
  struct sockaddr_in self = fx_mkaddr(fx_self_ip(), fx_port(l));
  int c = fx_connect(&self);
  int a = (int)CHECK_SYS(accept(l, NULL, NULL));
  struct sockaddr_in ap = fx_peername(a);
  CHECKF(ap.sin_addr.s_addr == self.sin_addr.s_addr, "child: accepted from %s", fx_fmt(&ap));
  char buf[8];
  CHECK(write(c, "ping", 4) == 4);
  CHECK((fx_wait_fd(a, POLLIN, 5000) & POLLIN) && read(a, buf, sizeof buf) == 4 && !memcmp(buf, "ping", 4));
  CHECK_SYS(close(a));
  CHECK_SYS(close(c));
  CHECK_SYS(close(l));
  _exit(0);
}

int main(int argc, char **argv) {
  fx_init(argc, argv);
  (void)fx_self_ip(); /* skips without it: the children listen on their vIP */
  dst = fx_echo_target();
  int warm = fx_connect(&dst); /* the broker connection is up before the threads start */
  close(warm);
  pthread_t th[NTHREADS];
  for (int i = 0; i < NTHREADS; i++) CHECK(pthread_create(&th[i], NULL, busy, (void *)(intptr_t)i) == 0);
  usleep(50000);

  int failed = 0;
  double t0 = fx_now();
  for (int k = 0; k < NFORKS; k++) {
    usleep((useconds_t)(rand() % 3000)); /* fork at a random point of the threads' loops */
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) child(k);
    double deadline = fx_now() + CHILD_SECONDS + 2;
    int st = 0;
    pid_t r;
    while ((r = waitpid(pid, &st, WNOHANG)) == 0 && fx_now() < deadline) usleep(2000);
    if (r == 0) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      fprintf(stderr, "child %d hung\n", k);
      failed++;
    } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      fprintf(stderr, "child %d failed (status 0x%x)\n", k, st);
      failed++;
    }
  }
  double dt = fx_now() - t0;
  __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
  for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
  printf("%d forks in %.2f s; parent threads: %ld %ld %ld iterations\n", NFORKS, dt, iters[0], iters[1], iters[2]);
  CHECKF(!failed, "%d of %d children failed", failed, NFORKS);
  CHECK(iters[0] > 0 && iters[1] > 0 && iters[2] > 0);
  int c = fx_connect(&dst);
  fx_expect_slimfast(c, "parent after the forks");
  fx_echo_check(c, "parent after the forks\n");
  close(c);
  fx_pass();
}
