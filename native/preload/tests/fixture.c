/* Shared fixture for the preload behaviour tests: see fixture.h. */
#include "fixture.h"

#include <sys/prctl.h>

#include <dirent.h>
#include <dlfcn.h>
#include <libgen.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

static const char *prog = "test";

void fx_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "FAIL %s: %s:%d: ", prog, file, line);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  fflush(NULL);
  _exit(1);
}

void fx_skip(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("SKIP %s: ", prog);
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  fflush(NULL);
  _exit(FX_SKIP);
}

/* Under the sanitizer build (README.md, "Sanitizers") LeakSanitizer runs at exit(), which a test's
   _exit() skips: ask it here. Without the sanitizer runtimes (or with detect_leaks=0) a no-op. */
static void leak_check(void) {
  int (*check)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "__lsan_do_recoverable_leak_check");
  if (!check || !check()) return;
  fprintf(stderr, "FAIL %s: leaks (LeakSanitizer report above)\n", prog);
  fflush(NULL);
  _exit(1);
}

void fx_pass(void) {
  leak_check();
  printf("PASS %s\n", prog);
  fflush(NULL);
  _exit(0);
}

static void on_alarm(int sig) {
  (void)sig;
  static const char m[] = "FAIL: timed out (alarm)\n";
  ssize_t w = write(2, m, sizeof m - 1);
  (void)w;
  _exit(1);
}

const char *fx_self_exe(void) {
  static char exe[4096];
  if (!exe[0]) {
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return "/proc/self/exe";
    exe[n] = 0;
  }
  return exe;
}

const char *fx_self_dir(void) {
  static char dir[4096];
  if (!dir[0]) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", fx_self_exe());
    snprintf(dir, sizeof dir, "%s", dirname(buf));
  }
  return dir;
}

int fx_preloaded(void) {
  const char *p = getenv("LD_PRELOAD");
  return p && strstr(p, "libslimfast") != NULL;
}

int fx_slimfast_on(void) {
  const char *s = getenv("SLIMFAST_SOCKET");
  return fx_preloaded() && s && *s;
}

void fx_init(int argc, char **argv) {
  (void)argc;
  const char *b = strrchr(argv[0], '/');
  prog = b ? b + 1 : argv[0];
  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGALRM, on_alarm);
  alarm(20);
  if (!fx_preloaded() && !getenv("SF_TEST_NO_REEXEC")) {
    char lib[4200];
    snprintf(lib, sizeof lib, "%s/../../libslimfast.so", fx_self_dir());
    char *real = realpath(lib, NULL);
    if (real) {
      setenv("LD_PRELOAD", real, 1);
      setenv("SF_TEST_NO_REEXEC", "1", 1);
      execv(fx_self_exe(), argv);
    }
  }
}

double fx_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int fx_parse_addr(const char *s, struct sockaddr_in *out) {
  char buf[64];
  if (!s || strlen(s) >= sizeof buf) return 0;
  strcpy(buf, s);
  char *colon = strrchr(buf, ':');
  if (!colon) return 0;
  *colon = 0;
  memset(out, 0, sizeof *out);
  out->sin_family = AF_INET;
  if (inet_pton(AF_INET, buf, &out->sin_addr) != 1) return 0;
  int port = atoi(colon + 1);
  if (port <= 0 || port > 65535) return 0;
  out->sin_port = htons((uint16_t)port);
  return 1;
}

int fx_env_addr(const char *name, struct sockaddr_in *out) {
  const char *v = getenv(name);
  return v && *v && fx_parse_addr(v, out);
}

struct sockaddr_in fx_need_addr(const char *name) {
  struct sockaddr_in sa;
  if (!fx_env_addr(name, &sa)) SKIP("%s is not set (want vip:port)", name);
  return sa;
}

uint32_t fx_self_ip(void) {
  const char *v = getenv("SF_TEST_SELF_IP");
  struct in_addr a;
  if (!v || inet_pton(AF_INET, v, &a) != 1) SKIP("SF_TEST_SELF_IP is not set");
  return a.s_addr;
}

const char *fx_fmt(const struct sockaddr_in *sa) {
  static char bufs[8][32];
  static int i;
  char *b = bufs[i++ & 7];
  char ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof ip);
  snprintf(b, 32, "%s:%u", ip, ntohs(sa->sin_port));
  return b;
}

struct sockaddr_in fx_mkaddr(uint32_t ip_net, uint16_t port_host) {
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = ip_net;
  sa.sin_port = htons(port_host);
  return sa;
}

int fx_listen(uint32_t ip_net, uint16_t port_host, int type_flags) {
  int fd = (int)CHECK_SYS(socket(AF_INET, SOCK_STREAM | type_flags, 0));
  int one = 1;
  CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
  struct sockaddr_in sa = fx_mkaddr(ip_net, port_host);
  CHECK_SYS(bind(fd, (struct sockaddr *)&sa, sizeof sa));
  CHECK_SYS(listen(fd, 128));
  return fd;
}

uint16_t fx_port(int fd) {
  struct sockaddr_in sa = fx_sockname(fd);
  return ntohs(sa.sin_port);
}

static void *echo_conn(void *arg) {
  int fd = (int)(intptr_t)arg;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(fd, buf + off, (size_t)(n - off));
      if (w <= 0) goto out;
      off += w;
    }
  }
out:
  close(fd);
  return NULL;
}

static void *echo_accept(void *arg) {
  int lfd = (int)(intptr_t)arg;
  for (;;) {
    int c = accept(lfd, NULL, NULL);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN) {
        if (errno == EAGAIN) fx_wait_fd(lfd, POLLIN, 1000);
        continue;
      }
      return NULL;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, echo_conn, (void *)(intptr_t)c) != 0) {
      close(c);
      continue;
    }
    pthread_detach(t);
  }
}

void fx_echo_thread(int listen_fd) {
  pthread_t t;
  CHECK(pthread_create(&t, NULL, echo_accept, (void *)(intptr_t)listen_fd) == 0);
  pthread_detach(t);
}

struct sockaddr_in fx_echo_target(void) {
  struct sockaddr_in sa;
  if (fx_env_addr("SF_TEST_ECHO", &sa)) return sa;
  uint32_t self = fx_self_ip();
  int lfd = fx_listen(INADDR_ANY, 0, 0);
  fx_echo_thread(lfd);
  return fx_mkaddr(self, fx_port(lfd));
}

int fx_connect(const struct sockaddr_in *sa) {
  int fd = (int)CHECK_SYS(socket(AF_INET, SOCK_STREAM, 0));
  if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) != 0)
    fx_fail(__FILE__, __LINE__, "connect to %s: %s", fx_fmt(sa), strerror(errno));
  return fd;
}

int fx_wait_fd(int fd, short events, int ms) {
  struct pollfd p = {fd, events, 0};
  for (;;) {
    int r = poll(&p, 1, ms);
    if (r < 0 && errno == EINTR) continue;
    return r > 0 ? p.revents : 0;
  }
}

/* Write msg and read it back (5 s bound). NULL on success, else what went wrong; errno is the
   read's or write's error, 0 for EOF, a timeout or a mismatch. */
const char *fx_echo_try(int fd, const char *msg) {
  static __thread char why[96];
  size_t len = strlen(msg);
  ssize_t w = write(fd, msg, len);
  if (w != (ssize_t)len) {
    snprintf(why, sizeof why, "write: %s", w < 0 ? strerror(errno) : "short");
    if (w >= 0) errno = 0;
    return why;
  }
  char buf[4096];
  size_t got = 0;
  double end = fx_now() + 5;
  while (got < len) {
    int left = (int)((end - fx_now()) * 1000);
    if (left <= 0) {
      snprintf(why, sizeof why, "no echo within 5 s (got %zu of %zu bytes)", got, len);
      errno = 0;
      return why;
    }
    if (!(fx_wait_fd(fd, POLLIN, left) & (POLLIN | POLLHUP | POLLERR))) continue;
    ssize_t n = read(fd, buf + got, sizeof buf - got);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) {
      snprintf(why, sizeof why, "echo read: %s", n == 0 ? "EOF" : strerror(errno));
      if (n == 0) errno = 0;
      return why;
    }
    got += (size_t)n;
  }
  if (got != len || memcmp(buf, msg, len) != 0) {
    errno = 0;
    return "echo mismatch";
  }
  return NULL;
}

void fx_echo_check(int fd, const char *msg) {
  const char *why = fx_echo_try(fd, msg);
  CHECKF(!why, "%s", why);
}

struct sockaddr_in fx_sockname(int fd) {
  struct sockaddr_in sa;
  socklen_t l = sizeof sa;
  memset(&sa, 0, sizeof sa);
  CHECK_SYS(getsockname(fd, (struct sockaddr *)&sa, &l));
  return sa;
}

struct sockaddr_in fx_peername(int fd) {
  struct sockaddr_in sa;
  socklen_t l = sizeof sa;
  memset(&sa, 0, sizeof sa);
  CHECK_SYS(getpeername(fd, (struct sockaddr *)&sa, &l));
  return sa;
}

int fx_raw_sockname(int fd, struct sockaddr_in *sa) {
  socklen_t l = sizeof *sa;
  memset(sa, 0, sizeof *sa);
  return (int)syscall(SYS_getsockname, fd, sa, &l);
}

int fx_raw_peername(int fd, struct sockaddr_in *sa) {
  socklen_t l = sizeof *sa;
  memset(sa, 0, sizeof *sa);
  return (int)syscall(SYS_getpeername, fd, sa, &l);
}

int fx_raw_sockopt_int(int fd, int level, int name) {
  int v = -1;
  socklen_t l = sizeof v;
  if (syscall(SYS_getsockopt, fd, level, name, &v, &l) != 0) return -1;
  return v;
}

int fx_same_addr(const struct sockaddr_in *a, const struct sockaddr_in *b) {
  return a->sin_family == b->sin_family && a->sin_addr.s_addr == b->sin_addr.s_addr && a->sin_port == b->sin_port;
}

int fx_is_swapped(int fd) {
  if (fx_raw_sockopt_int(fd, SOL_SOCKET, SO_DOMAIN) == AF_UNIX) return 1; /* a channel */
  struct sockaddr_in raw, app;
  socklen_t l = sizeof app;
  if (fx_raw_sockname(fd, &raw) != 0 || getsockname(fd, (struct sockaddr *)&app, &l) != 0) return 0;
  return !fx_same_addr(&raw, &app);
}

void fx_expect_slimfast(int fd, const char *what) {
  if (!fx_slimfast_on()) return;
  const char *a = getenv("SF_TEST_ALLOW_FALLBACK");
  if (a && *a == '1') return;
  struct sockaddr_in raw;
  fx_raw_sockname(fd, &raw);
  CHECKF(fx_is_swapped(fd), "%s: expected a SlimFast socket, got an ordinary one (%s)", what, fx_fmt(&raw));
}

struct sockaddr_in6 fx_mk6(uint32_t ip_net, uint16_t port_host) {
  struct sockaddr_in6 sa;
  memset(&sa, 0, sizeof sa);
  sa.sin6_family = AF_INET6;
  sa.sin6_port = htons(port_host);
  if (ip_net) {
    sa.sin6_addr.s6_addr[10] = 0xff;
    sa.sin6_addr.s6_addr[11] = 0xff;
    memcpy(&sa.sin6_addr.s6_addr[12], &ip_net, 4);
  }
  return sa;
}

const char *fx_fmt6(const struct sockaddr_in6 *sa) {
  static char bufs[8][72];
  static int i;
  char *b = bufs[i++ & 7];
  char ip[INET6_ADDRSTRLEN];
  if (sa->sin6_family != AF_INET6) {
    snprintf(b, 72, "(family %d)", sa->sin6_family);
    return b;
  }
  inet_ntop(AF_INET6, &sa->sin6_addr, ip, sizeof ip);
  snprintf(b, 72, "[%s]:%u", ip, ntohs(sa->sin6_port));
  return b;
}

int fx_is_mapped(const struct sockaddr_in6 *sa, uint32_t ip_net, uint16_t port_net) {
  struct sockaddr_in6 want = fx_mk6(ip_net, 0);
  return sa->sin6_family == AF_INET6 && sa->sin6_port == port_net && sa->sin6_flowinfo == 0 && sa->sin6_scope_id == 0 &&
         memcmp(&sa->sin6_addr, &want.sin6_addr, 16) == 0;
}

int fx_socket6(int type_flags) {
  int fd = socket(AF_INET6, SOCK_STREAM | type_flags, 0);
  if (fd < 0 && errno == EAFNOSUPPORT) SKIP("no IPv6 in this kernel");
  CHECKF(fd >= 0, "socket(AF_INET6): %s", strerror(errno));
  return fd;
}

struct sockaddr_in6 fx_sockname6(int fd) {
  struct sockaddr_in6 sa;
  socklen_t l = sizeof sa;
  memset(&sa, 0, sizeof sa);
  CHECK_SYS(getsockname(fd, (struct sockaddr *)&sa, &l));
  CHECKF(l == sizeof sa && sa.sin6_family == AF_INET6, "getsockname: family %d, length %u", sa.sin6_family,
         (unsigned)l);
  return sa;
}

struct sockaddr_in6 fx_peername6(int fd) {
  struct sockaddr_in6 sa;
  socklen_t l = sizeof sa;
  memset(&sa, 0, sizeof sa);
  CHECK_SYS(getpeername(fd, (struct sockaddr *)&sa, &l));
  CHECKF(l == sizeof sa && sa.sin6_family == AF_INET6, "getpeername: family %d, length %u", sa.sin6_family,
         (unsigned)l);
  return sa;
}

int fx_count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1; /* the directory's own fd */
}

int fx_run_self(char *const args[], const char *const env[]) {
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    for (int i = 0; env && env[i]; i++) {
      const char *eq = strchr(env[i], '=');
      if (eq) {
        char k[256];
        snprintf(k, sizeof k, "%.*s", (int)(eq - env[i]), env[i]);
        setenv(k, eq + 1, 1);
      } else {
        unsetenv(env[i]);
      }
    }
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)prog;
    for (int i = 0; args && args[i] && n < 31; i++) argv[n++] = args[i];
    argv[n] = NULL;
    execv(fx_self_exe(), argv);
    _exit(127);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

pid_t fx_fakebroker(char *path, size_t pathlen, uint32_t vip_net, const char *cidr) {
  static int counter;
  snprintf(path, pathlen, "/tmp/sfpre-fb-%d-%d.sock", (int)getpid(), counter++);
  return fx_fakebroker_at(path, vip_net, cidr);
}

pid_t fx_fakebroker_at(const char *path, uint32_t vip_net, const char *cidr) {
  unlink(path); /* a dead one's */
  char exe[4200], vip[INET_ADDRSTRLEN];
  snprintf(exe, sizeof exe, "%s/fakebroker", fx_self_dir());
  if (access(exe, X_OK) != 0) SKIP("%s not built", exe);
  inet_ntop(AF_INET, &vip_net, vip, sizeof vip);
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives the test that started it */
    unsetenv("LD_PRELOAD");
    execl(exe, "fakebroker", "--socket", path, "--vip", vip, "--net", cidr, (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 200; i++) {
    struct stat st;
    if (stat(path, &st) == 0) return pid;
    usleep(10000);
  }
  kill(pid, SIGKILL);
  fx_fail(__FILE__, __LINE__, "fakebroker did not start");
}
