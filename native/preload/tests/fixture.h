/* Shared fixture for the preload behaviour tests.
 *
 * Every test program: exits 0 on pass, 77 on skip, 1 on failure; is bounded by alarm(20).
 * Environment (set by the harness): SF_TEST_SELF_IP (own container vIP), SF_TEST_ECHO (vip:port of
 * a SlimFast echo server elsewhere), SF_TEST_CLOSED (vip:port where nothing listens),
 * SF_TEST_PLAIN (vip:port of an echo server that is not on SlimFast). SLIMFAST_SOCKET and
 * LD_PRELOAD come from the container's environment; when LD_PRELOAD does not name libslimfast the
 * fixture re-executes the program with ../../libslimfast.so (relative to the binary) preloaded.
 * SF_TEST_ALLOW_FALLBACK=1 accepts ordinary connections where SlimFast ones are expected.
 */
#ifndef SF_TEST_FIXTURE_H
#define SF_TEST_FIXTURE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define FX_SKIP 77

void fx_fail(const char *file, int line, const char *fmt, ...) __attribute__((noreturn, format(printf, 3, 4)));
void fx_skip(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

#define CHECK(c)                                                                                          \
  do {                                                                                                    \
    if (!(c)) fx_fail(__FILE__, __LINE__, "check failed: %s (errno %d: %s)", #c, errno, strerror(errno)); \
  } while (0)
#define CHECKF(c, ...)                                  \
  do {                                                  \
    if (!(c)) fx_fail(__FILE__, __LINE__, __VA_ARGS__); \
  } while (0)
/* Evaluates to expr's value; fails when it is negative. */
#define CHECK_SYS(expr)                                                                                 \
  ({                                                                                                    \
    long r_ = (long)(expr);                                                                             \
    if (r_ < 0) fx_fail(__FILE__, __LINE__, "%s failed: %s (errno %d)", #expr, strerror(errno), errno); \
    r_;                                                                                                 \
  })
#define SKIP(...) fx_skip(__VA_ARGS__)

/* alarm(20), SIGPIPE ignored, line-buffered stdout, preload ensured. */
void fx_init(int argc, char **argv);
void fx_pass(void) __attribute__((noreturn));

int fx_preloaded(void);        /* libslimfast is in LD_PRELOAD */
int fx_slimfast_on(void);      /* preloaded and SLIMFAST_SOCKET set */
const char *fx_self_dir(void); /* directory of this binary */
const char *fx_self_exe(void); /* path of this binary */
double fx_now(void);

int fx_parse_addr(const char *s, struct sockaddr_in *out);
int fx_env_addr(const char *name, struct sockaddr_in *out); /* 1 if set and valid */
struct sockaddr_in fx_need_addr(const char *name);          /* skips when missing */
uint32_t fx_self_ip(void);                                  /* SF_TEST_SELF_IP, skips */
const char *fx_fmt(const struct sockaddr_in *sa);           /* "a.b.c.d:port", rotating bufs */
struct sockaddr_in fx_mkaddr(uint32_t ip_net, uint16_t port_host);

int fx_listen(uint32_t ip_net, uint16_t port_host, int type_flags); /* bound + listening */
uint16_t fx_port(int fd);                                           /* host order */
void fx_echo_thread(int listen_fd);                                 /* detached: accept and echo every connection */
/* SF_TEST_ECHO when set, else an in-process echo listener reached at SF_TEST_SELF_IP. */
struct sockaddr_in fx_echo_target(void);
int fx_connect(const struct sockaddr_in *sa);     /* blocking, checked */
void fx_echo_check(int fd, const char *msg);      /* write msg, read it back (5 s bound) */
const char *fx_echo_try(int fd, const char *msg); /* the same; NULL, or what failed */
int fx_wait_fd(int fd, short events, int ms);     /* poll; returns revents (0 on timeout) */

struct sockaddr_in fx_sockname(int fd);
struct sockaddr_in fx_peername(int fd);
/* The kernel's view, bypassing the preload (raw syscalls). */
int fx_raw_sockname(int fd, struct sockaddr_in *sa);
int fx_raw_peername(int fd, struct sockaddr_in *sa);
int fx_raw_sockopt_int(int fd, int level, int name);
/* True when fd is a socket SlimFast handed over (the app's and the kernel's views differ). */
int fx_is_swapped(int fd);
/* Fail unless fd went through SlimFast (when SlimFast is on and fallback is not allowed). */
void fx_expect_slimfast(int fd, const char *what);
int fx_same_addr(const struct sockaddr_in *a, const struct sockaddr_in *b);

/* AF_INET6 on the IPv4 overlay: ::ffff:ip (:: for ip 0), "[addr]:port", and whether sa is exactly
   the sockaddr_in6 the kernel gives for ::ffff:ip:port (flowinfo 0, scope 0; :: for ip 0). */
struct sockaddr_in6 fx_mk6(uint32_t ip_net, uint16_t port_host);
const char *fx_fmt6(const struct sockaddr_in6 *sa);
int fx_is_mapped(const struct sockaddr_in6 *sa, uint32_t ip_net, uint16_t port_net);
/* An AF_INET6 TCP socket, or a skip when the kernel has no IPv6. */
int fx_socket6(int type_flags);
struct sockaddr_in6 fx_sockname6(int fd); /* checked: AF_INET6, full length */
struct sockaddr_in6 fx_peername6(int fd);

int fx_count_fds(void);
/* Run this binary again with argv[1..] = args, after applying env changes ("K=V" sets, "K" unsets).
   Returns the child's exit code (128+sig when killed). */
int fx_run_self(char *const args[], const char *const env[]);
/* Start tests/bin/fakebroker on a private socket path; returns its pid and fills path. */
pid_t fx_fakebroker(char *path, size_t pathlen, uint32_t vip_net, const char *cidr);
/* The same at a given path (a broker started again where one died). */
pid_t fx_fakebroker_at(const char *path, uint32_t vip_net, const char *cidr);

#endif
