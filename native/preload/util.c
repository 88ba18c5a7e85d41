/* Configuration, debug log, clock, this process's cached pid, internal fd placement, and
 * SCM_RIGHTS receives with libc's close() for descriptors we do not keep. */
#include "sf.h"

#include "fdpass.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct sf_conf sf_conf;
static int conf_done;

static int env_int(const char *name, int def, int lo, int hi) {
  const char *s = getenv(name);
  if (!s || !*s) return def;
  char *end;
  long v = strtol(s, &end, 10);
  if (*end || v < lo || v > hi) return def;
  return (int)v;
}

/* The broker socket as a SlimFast container sees it. A process loaded through the container's
   /etc/ld.so.preload without SlimFast's environment (e.g. `podman exec` with Podman's hooks directory
   alone) uses it when it is there; outside a SlimFast container there is no such path. SLIMFAST_SOCKET
   set, even empty, wins. */
#define SF_DEFAULT_SOCKET "/.slimfast/run/sf.sock"

static int sf_default_socket_exists(void) {
  int saved = errno;
  struct stat st;
  int ok = stat(SF_DEFAULT_SOCKET, &st) == 0 && S_ISSOCK(st.st_mode);
  errno = saved;
  return ok;
}

void sf_conf_init(void) {
  if (__atomic_load_n(&conf_done, __ATOMIC_ACQUIRE)) return;
  const char *d = getenv("SLIMFAST_DEBUG");
  sf_conf.debug = d && d[0] == '1';
  sf_conf.timeout_ms = env_int("SLIMFAST_TIMEOUT_MS", 3000, 1, 600000);
  sf_conf.spin_max_us = env_int("SLIMFAST_SPIN_US", 20, 0, 1000);
  sf_conf.pool_at_socket = env_int("SLIMFAST_POOL_AT_SOCKET", 1, 0, 1);
  const char *p = getenv("SLIMFAST_SOCKET");
  if (!p && sf_default_socket_exists()) p = SF_DEFAULT_SOCKET;
  if (p && *p && strlen(p) < sizeof sf_conf.sock_path) {
    strcpy(sf_conf.sock_path, p);
    sf_conf.enabled = 1;
  }
  __atomic_store_n(&conf_done, 1, __ATOMIC_RELEASE);
}

static void vlog_line(const char *fmt, va_list ap) {
  int saved = errno;
  char buf[512];
  int n = snprintf(buf, sizeof buf, "[slimfast %d] ", (int)getpid());
  int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
  if (m < 0) m = 0;
  n += m;
  if (n > (int)sizeof buf - 2) n = (int)sizeof buf - 2;
  buf[n++] = '\n';
  ssize_t w = write(2, buf, (size_t)n);
  (void)w;
  errno = saved;
}

void sf_log(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog_line(fmt, ap);
  va_end(ap);
}

static int stderr_is_a_log(void) {
  struct stat st;
  if (fstat(2, &st) != 0) return 0;
  if (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode) || S_ISREG(st.st_mode)) return 1;
  if (!S_ISSOCK(st.st_mode)) return 0;
  int v = 0;
  socklen_t l = sizeof v;
  if (REAL(getsockopt)(2, SOL_SOCKET, SO_DOMAIN, &v, &l) != 0 || v != AF_UNIX) return 0;
  l = sizeof v;
  return REAL(getsockopt)(2, SOL_SOCKET, SO_TYPE, &v, &l) == 0 && (v == SOCK_STREAM || v == SOCK_DGRAM);
}

void sf_warn(const char *fmt, ...) {
  int saved = errno;
  if (stderr_is_a_log()) {
    va_list ap;
    va_start(ap, fmt);
    vlog_line(fmt, ap);
    va_end(ap);
  }
  errno = saved;
}

int64_t sf_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static pid_t owner_pid;

void sf_pid_reset(void) { __atomic_store_n(&owner_pid, getpid(), __ATOMIC_RELAXED); }

/* The pid changes only in a child, and every child made through libc's fork() runs the atfork
   child handler (forkexec.c) before it returns to the program; vfork() is fork() there. So the
   cached pid is right wherever the table is used, without a getpid() per call. */
pid_t sf_pid(void) {
  pid_t p = __atomic_load_n(&owner_pid, __ATOMIC_RELAXED);
  return p ? p : getpid();
}

int sf_table_owner(void) { return __atomic_load_n(&owner_pid, __ATOMIC_RELAXED) != 0; }

/* Lowest fd number for our own fds: above select()'s range when the limit allows, else in the
   top quarter of the limit, so they stay out of the numbers an application usually sees. */
static int high_base(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 3;
  rlim_t soft = rl.rlim_cur;
  if (soft > 1100) return 1024;
  int b = (int)(soft * 3 / 4);
  return b < 3 ? 3 : b;
}

int sf_fd_dup_high(int fd) {
  int n = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, high_base());
  if (n < 0) n = REAL(fcntl)(fd, F_DUPFD_CLOEXEC, 3);
  return n;
}

int sf_fd_move_high(int fd) {
  int saved = errno;
  int n = sf_fd_dup_high(fd);
  if (n < 0) {
    REAL(fcntl)(fd, F_SETFD, FD_CLOEXEC);
    errno = saved;
    return fd;
  }
  REAL(close)(fd);
  errno = saved;
  return n;
}

uint64_t sf_fd_ino(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return 0;
  return (uint64_t)st.st_ino;
}

int sf_fd_nonblock(int fd, int on) {
  int fl = REAL(fcntl)(fd, F_GETFL);
  if (fl < 0) return -1;
  int nf = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
  if (nf == fl) return 0;
  return REAL(fcntl)(fd, F_SETFL, nf);
}

/* Receives one packet of at most `len` bytes with its SCM_RIGHTS fds: keeps the first fd in *rfd
   (-1 when none) and closes any extra ones (libc's close: the table never had them). Returns
   recvmsg's result; *trunc (may be NULL) tells whether the data did not fit (MSG_TRUNC) or the
   kernel had to drop fds (MSG_CTRUNC: out of descriptors). */
ssize_t sf_recv_fd(int fd, void *buf, size_t len, int flags, int *rfd, int *trunc) {
  int n;
  ssize_t r = sf_fdpass_recv(fd, buf, len, flags, rfd, 1, &n, trunc, REAL(close));
  if (trunc) *trunc &= MSG_CTRUNC | MSG_TRUNC;
  if (n == 0) *rfd = -1;
  return r;
}
