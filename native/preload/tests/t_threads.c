/* 8 threads connecting concurrently over the one broker connection: every connect succeeds with
 * its own socket, in bounded time, and no fds are left behind. */
#include "fixture.h"

#define NTHREADS 8
#define PER_THREAD 40

static struct sockaddr_in dst;

static void *worker(void *arg) {
  int id = (int)(intptr_t)arg;
  for (int i = 0; i < PER_THREAD; i++) {
    int fd = (int)CHECK_SYS(socket(AF_INET, SOCK_STREAM | (i % 2 ? SOCK_NONBLOCK : 0), 0));
    int r = connect(fd, (struct sockaddr *)&dst, sizeof dst);
    CHECKF(r == 0 || errno == EINPROGRESS, "thread %d: connect: %s", id, strerror(errno));
    if (r != 0) CHECK(fx_wait_fd(fd, POLLOUT, 5000) & POLLOUT);
    fx_expect_slimfast(fd, "threaded connect");
    char msg[64];
    snprintf(msg, sizeof msg, "thread %d connection %d\n", id, i);
    fx_echo_check(fd, msg);
    struct sockaddr_in p = fx_peername(fd);
    CHECK(fx_same_addr(&p, &dst));
    CHECK_SYS(close(fd));
  }
  return NULL;
}

int main(int argc, char **argv) {
  fx_init(argc, argv);
  dst = fx_echo_target();
  int warm = fx_connect(&dst); /* opens the broker connection */
  close(warm);
  usleep(100000);
  int before = fx_count_fds();
  double t0 = fx_now();
  pthread_t th[NTHREADS];
  for (int i = 0; i < NTHREADS; i++) CHECK(pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i) == 0);
  for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
  double dt = fx_now() - t0;
  printf("%d connections in %.3f s\n", NTHREADS * PER_THREAD, dt);
  CHECKF(dt < 15, "too slow: %.1f s", dt);
  int after = before;
  for (int i = 0; i < 50; i++) { /* in-process echo threads close their ends asynchronously */
    after = fx_count_fds();
    if (after <= before) break;
    usleep(20000);
  }
  CHECKF(after <= before, "fd leak: %d open before, %d after", before, after);
  fx_pass();
}
