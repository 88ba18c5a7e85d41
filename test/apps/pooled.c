/* pooled: what an application sees of sockets socket() hands out from a SlimFast pool.
 *
 *   pooled IP PORT     (an echo server at IP:PORT, reached through SlimFast; run under the preload)
 *
 * Warms up (connects until socket() hands out pooled host sockets: the raw getsockname syscall,
 * which the preload does not see, then names a host address instead of nothing), then runs each
 * case and prints one JSON object per case: {"case", "ok", "pooled", "detail"}. "pooled" tells
 * whether the fd was a pooled host socket right after socket(). Every case must echo. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in dst;

/* The kernel's local address of fd, past the preload: a pooled socket is a host socket already
   connected to the peer host's reserved port; a fresh one has no address yet. */
static int raw_port(int fd) {
  struct sockaddr_in a;
  socklen_t l = sizeof a;
  memset(&a, 0, sizeof a);
  if (syscall(SYS_getsockname, fd, &a, &l) != 0) return -1;
  return ntohs(a.sin_port);
}
static int is_pooled(int fd) { return raw_port(fd) > 0; }

/* socket(), again until it is a pooled one (the pool refills behind us; bounded): each case is
   about a pooled socket. */
static int psocket(int type) {
  int fd = -1;
  for (int i = 0; i < 200; i++) {
    fd = socket(AF_INET, type, 0);
    if (fd < 0 || is_pooled(fd)) return fd;
    close(fd);
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return socket(AF_INET, type, 0);
}

static int echo(int fd, const char *msg) {
  size_t n = strlen(msg);
  if (send(fd, msg, n, MSG_NOSIGNAL) != (ssize_t)n) return -1;
  char buf[256];
  size_t got = 0;
  while (got < n) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 5000) != 1) return -1;
    ssize_t r = recv(fd, buf + got, sizeof buf - got, 0);
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  return memcmp(buf, msg, n) == 0 ? 0 : -1;
}

static int wait_out(int fd) {
  struct pollfd p = {fd, POLLOUT, 0};
  if (poll(&p, 1, 5000) != 1) return -1;
  int err = 0;
  socklen_t l = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) != 0 || err) return -1;
  return 0;
}

static void emit(const char *name, int ok, int pooled, const char *detail) {
  printf("{\"case\":\"%s\",\"ok\":%s,\"pooled\":%s,\"detail\":\"%s\"}\n", name, ok ? "true" : "false",
         pooled ? "true" : "false", detail);
  fflush(stdout);
}

#define FAIL(...)                                 \
  do {                                            \
    snprintf(detail, sizeof detail, __VA_ARGS__); \
    goto out;                                     \
  } while (0)

/* A plain blocking connect and echo: the basic case, and the warm-up. */
static int plain_case(const char *name, int report) {
  char detail[160] = "";
  int ok = 0, fd = report ? psocket(SOCK_STREAM) : socket(AF_INET, SOCK_STREAM, 0), pooled = is_pooled(fd);
  struct sockaddr_in a;
  socklen_t l = sizeof a;
  if (getsockname(fd, (struct sockaddr *)&a, &l) != 0 || a.sin_port || a.sin_addr.s_addr)
    FAIL("getsockname before connect is not 0.0.0.0:0");
  l = sizeof a;
  if (getpeername(fd, (struct sockaddr *)&a, &l) == 0 || errno != ENOTCONN)
    FAIL("getpeername before connect: %s", strerror(errno));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0) FAIL("connect: %s", strerror(errno));
  l = sizeof a;
  if (getpeername(fd, (struct sockaddr *)&a, &l) != 0 || a.sin_addr.s_addr != dst.sin_addr.s_addr ||
      a.sin_port != dst.sin_port)
    FAIL("getpeername is not the destination");
  if (connect(fd, (struct sockaddr *)&dst, sizeof dst) == 0 || errno != EISCONN)
    FAIL("second connect: %s", strerror(errno));
  if (echo(fd, "blocking\n") != 0) FAIL("echo");
  ok = 1;
out:
  close(fd);
  if (report) emit(name, ok, pooled, detail);
  return pooled;
}

static void nonblock_case(const char *name, int how) {
  char detail[160] = "";
  int ok = 0, fd = psocket(SOCK_STREAM | (how == 0 ? SOCK_NONBLOCK : 0)), pooled = is_pooled(fd);
  if (how == 1) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  if (how == 2) {
    int on = 1;
    ioctl(fd, FIONBIO, &on);
  }
  int r = connect(fd, (struct sockaddr *)&dst, sizeof dst);
  if (r == 0 || errno != EINPROGRESS)
    FAIL("non-blocking connect returned %d (%s), not EINPROGRESS", r, strerror(errno));
  if (wait_out(fd) != 0) FAIL("never became writable without error");
  if (echo(fd, "nonblocking\n") != 0) FAIL("echo");
  ok = 1;
out:
  close(fd);
  emit(name, ok, pooled, detail);
}

/* TCP_FASTOPEN_CONNECT before connect (curl --tcp-fastopen does this): accepted, and the request
   still arrives. A pooled socket has had its own deferred connect, where the kernel says EINVAL. */
static void fastopen_case(void) {
  char detail[160] = "";
  int ok = 0, fd = psocket(SOCK_STREAM), pooled = is_pooled(fd), one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof one) != 0)
    FAIL("TCP_FASTOPEN_CONNECT: %s", strerror(errno));
  if (connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0) FAIL("connect: %s", strerror(errno));
  if (echo(fd, "fastopen\n") != 0) FAIL("echo");
  ok = 1;
out:
  close(fd);
  emit("fastopen", ok, pooled, detail);
}

/* Set non-blocking, then blocking again before connect: connect must block and succeed. */
static void reblock_case(void) {
  char detail[160] = "";
  int ok = 0, fd = psocket(SOCK_STREAM | SOCK_NONBLOCK), pooled = is_pooled(fd);
  int off = 0;
  ioctl(fd, FIONBIO, &off);
  if (connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0) FAIL("connect: %s", strerror(errno));
  if (fcntl(fd, F_GETFL) & O_NONBLOCK) FAIL("O_NONBLOCK is set");
  if (echo(fd, "reblocked\n") != 0) FAIL("echo");
  ok = 1;
out:
  close(fd);
  emit("reblock", ok, pooled, detail);
}

/* bind() first: an ordinary socket of the container takes the pooled one's place. */
static void bind_case(void) {
  char detail[160] = "";
  int ok = 0, fd = psocket(SOCK_STREAM), pooled = is_pooled(fd);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in any = {.sin_family = AF_INET};
  if (bind(fd, (struct sockaddr *)&any, sizeof any) != 0) FAIL("bind: %s", strerror(errno));
  if (connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0) FAIL("connect: %s", strerror(errno));
  int v = 0;
  socklen_t l = sizeof v;
  if (getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &l) != 0 || !v) FAIL("TCP_NODELAY was not carried over");
  if (echo(fd, "bound\n") != 0) FAIL("echo");
  ok = 1;
out:
  close(fd);
  emit("bind", ok, pooled, detail);
}

/* A connect somewhere the pool does not go (a listener of our own on loopback). */
static void miss_case(void) {
  char detail[160] = "";
  int ok = 0, ls = socket(AF_INET, SOCK_STREAM, 0), fd = -1, a = -1, pooled = 0;
  struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t l = sizeof lo;
  if (bind(ls, (struct sockaddr *)&lo, sizeof lo) != 0 || listen(ls, 4) != 0 ||
      getsockname(ls, (struct sockaddr *)&lo, &l) != 0)
    FAIL("loopback listener: %s", strerror(errno));
  fd = psocket(SOCK_STREAM);
  pooled = is_pooled(fd);
  if (connect(fd, (struct sockaddr *)&lo, sizeof lo) != 0) FAIL("loopback connect: %s", strerror(errno));
  a = accept(ls, NULL, NULL);
  if (a < 0 || send(fd, "x", 1, 0) != 1) FAIL("accept/send: %s", strerror(errno));
  char c;
  if (recv(a, &c, 1, 0) != 1 || c != 'x') FAIL("loopback data");
  ok = 1;
out:
  close(fd), close(a), close(ls);
  emit("miss", ok, pooled, detail);
}

/* dup2 before connect, the original closed (what a spawner does): the new number connects. */
static void dup_case(void) {
  char detail[160] = "";
  int ok = 0, fd = psocket(SOCK_STREAM), pooled = is_pooled(fd), d = 100;
  if (dup2(fd, d) != d) FAIL("dup2: %s", strerror(errno));
  close(fd);
  if (connect(d, (struct sockaddr *)&dst, sizeof dst) != 0) FAIL("connect: %s", strerror(errno));
  if (connect(d, (struct sockaddr *)&dst, sizeof dst) == 0 || (errno != EISCONN && errno != EALREADY))
    FAIL("second connect: %s", strerror(errno));
  if (echo(d, "dup\n") != 0) FAIL("echo on the dup");
  ok = 1;
out:
  close(d);
  emit("dup", ok, pooled, detail);
}

/* fork between socket() and connect(): the child connects its copy, the parent its own. */
static void fork_case(void) {
  char detail[160] = "";
  int ok = 0, fd = psocket(SOCK_STREAM), pooled = is_pooled(fd);
  pid_t pid = fork();
  if (pid == 0) {
    int r = connect(fd, (struct sockaddr *)&dst, sizeof dst) == 0 && echo(fd, "child\n") == 0;
    _exit(r ? 0 : 1);
  }
  int st = 0;
  if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
    FAIL("the child's connect failed");
  if (connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0) FAIL("the parent's connect: %s", strerror(errno));
  if (echo(fd, "parent\n") != 0) FAIL("echo");
  ok = 1;
out:
  close(fd);
  emit("fork", ok, pooled, detail);
}

/* Held a while before connect (the pool channel is checked then), and one closed unused. */
static void held_case(void) {
  char detail[160] = "";
  int spare = socket(AF_INET, SOCK_STREAM, 0);
  close(spare);
  int ok = 0, fd = psocket(SOCK_STREAM), pooled = is_pooled(fd);
  struct timespec ts = {0, 60 * 1000 * 1000};
  nanosleep(&ts, NULL);
  if (shutdown(fd, SHUT_RDWR) == 0 || errno != ENOTCONN) FAIL("shutdown before connect: %s", strerror(errno));
  if (connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0) FAIL("connect: %s", strerror(errno));
  if (echo(fd, "held\n") != 0) FAIL("echo");
  ok = 1;
out:
  close(fd);
  emit("held", ok, pooled, detail);
}

/* --watch N MS: N connects MS apart, each echoing once; prints when (wall clock, ms), whether it
   connected and echoed, and the kernel's local address (a host address: it went over SlimFast). */
static int watch(int n, int ms) {
  for (int i = 0; i < n; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok = 0, connected = 0;
    char local[64] = "";
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (connect(fd, (struct sockaddr *)&dst, sizeof dst) == 0) {
      connected = 1;
      struct sockaddr_in a;
      socklen_t l = sizeof a;
      if (syscall(SYS_getsockname, fd, &a, &l) == 0) inet_ntop(AF_INET, &a.sin_addr, local, sizeof local);
      ok = echo(fd, "watch\n") == 0;
    }
    close(fd);
    printf("{\"i\":%d,\"t\":%lld,\"connected\":%s,\"ok\":%s,\"local\":\"%s\"}\n", i,
           (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000, connected ? "true" : "false", ok ? "true" : "false",
           local);
    fflush(stdout);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: pooled IP PORT [--watch N MS]\n");
    return 2;
  }
  dst.sin_family = AF_INET;
  dst.sin_port = htons((uint16_t)atoi(argv[2]));
  if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) return 2;
  if (argc >= 6 && !strcmp(argv[3], "--watch")) return watch(atoi(argv[4]), atoi(argv[5]));
  int warm = 0;
  for (int i = 0; i < 50 && !warm; i++) warm = plain_case("warm", 0);
  printf("{\"case\":\"warmup\",\"ok\":%s,\"pooled\":%s,\"detail\":\"\"}\n", warm ? "true" : "false",
         warm ? "true" : "false");
  plain_case("blocking", 1);
  nonblock_case("sock_nonblock", 0);
  nonblock_case("fcntl_nonblock", 1);
  nonblock_case("fionbio", 2);
  reblock_case();
  fastopen_case();
  bind_case();
  miss_case();
  dup_case();
  fork_case();
  held_case();
  plain_case("after", 1);
  return 0;
}
