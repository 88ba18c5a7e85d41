// SPDX-License-Identifier: Apache-2.0
/* escape: tries to take a host socket SlimFast handed to a container somewhere else in the host's
 * network (test/confinement.test.ts builds it with gcc, dynamic and -static).
 *
 *   escape client VIP PORT N TARGET...  N times: socket() + connect() to VIP:PORT through libc (on
 *                                       SlimFast: a handed host socket, the first from the broker,
 *                                       later ones from the pool), a 4-byte echo, then the attack
 *   escape server PORT TARGET...        listen on 0.0.0.0:PORT through libc, "listening" on stderr,
 *                                       accept one connection (20 s), echo 4 bytes, the attack on it;
 *                                       then the listener attack on the listening socket
 *   escape control TARGET...            a socket of its own connected (libc) to the first target,
 *                                       then the attack: here the re-connects must work
 *
 * TARGET is IP:PORT of an echo server. The attack makes every call through syscall(2), so no
 * library sees it: getsockname (a host address proves a host socket); connect(AF_UNSPEC) to
 * disconnect; per target a connect (3 s bound), then "PING" and a reply within 2 s ("reached") and
 * another disconnect; bind to 0.0.0.0:0; listen (if it worked, a disconnect to stop listening, so
 * that the next call starts from a closed socket, not from EISCONN); sendto(MSG_FASTOPEN) to the
 * first target. The listener attack: getsockname, disconnect, the per-target connects, listen; if
 * listening again worked, a connection to its own address and whether the listener got it.
 *
 * Prints one JSON object per socket on stdout: errno names, null where the call succeeded. Exit 0
 * when it ran, 1 when a libc setup call failed (a line with "error"), 2 on usage errors.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#ifndef MSG_FASTOPEN
#define MSG_FASTOPEN 0x20000000
#endif
#define MAX_TARGETS 8

static struct sockaddr_in targets[MAX_TARGETS];
static const char *target_names[MAX_TARGETS];
static int ntargets;

static const struct {
  int e;
  const char *name;
} ERRNAMES[] = {
    {EPERM, "EPERM"},
    {EINVAL, "EINVAL"},
    {EISCONN, "EISCONN"},
    {ECONNREFUSED, "ECONNREFUSED"},
    {EINPROGRESS, "EINPROGRESS"},
    {EALREADY, "EALREADY"},
    {EADDRINUSE, "EADDRINUSE"},
    {EAFNOSUPPORT, "EAFNOSUPPORT"},
    {EOPNOTSUPP, "EOPNOTSUPP"},
    {ETIMEDOUT, "ETIMEDOUT"},
    {ENOTCONN, "ENOTCONN"},
    {EAGAIN, "EAGAIN"},
    {ECONNRESET, "ECONNRESET"},
    {ENETUNREACH, "ENETUNREACH"},
    {EACCES, "EACCES"},
};

/* A syscall's outcome as JSON: null, or the errno's name in quotes. */
static const char *res(long r, int e) {
  static char ring[16][24];
  static unsigned next;
  if (r >= 0) return "null";
  char *b = ring[next++ % 16];
  for (size_t i = 0; i < sizeof ERRNAMES / sizeof ERRNAMES[0]; i++) {
    if (ERRNAMES[i].e == e) {
      snprintf(b, sizeof ring[0], "\"%s\"", ERRNAMES[i].name);
      return b;
    }
  }
  snprintf(b, sizeof ring[0], "\"E%d\"", e);
  return b;
}

static char out[16384];
static size_t outlen;

static void put(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(out + outlen, sizeof out - outlen, fmt, ap);
  va_end(ap);
  if (n > 0) outlen = outlen + n < sizeof out ? outlen + n : sizeof out - 1;
}

static void flush_line(void) {
  printf("%s}\n", out);
  fflush(stdout);
  outlen = 0;
  out[0] = 0;
}

static long raw_disconnect(int fd) {
  struct sockaddr_in a = {.sin_family = AF_UNSPEC};
  return syscall(SYS_connect, fd, &a, sizeof a);
}

/* getsockname through the kernel (the preload would answer a virtual address). */
static void put_local(int fd) {
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  char ip[INET_ADDRSTRLEN] = "?";
  if (syscall(SYS_getsockname, fd, &a, &len) < 0 || a.sin_family != AF_INET) {
    put(",\"local\":null");
    return;
  }
  inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip);
  put(",\"local\":\"%s:%u\"", ip, ntohs(a.sin_port));
}

/* Per target: a raw connect, "PING" and a reply if it worked, a disconnect after. */
static void put_connects(int fd) {
  char reached[MAX_TARGETS] = {0};
  put(",\"connect\":{");
  for (int i = 0; i < ntargets; i++) {
    long r = syscall(SYS_connect, fd, &targets[i], sizeof targets[i]);
    int e = errno;
    put("%s\"%s\":%s", i ? "," : "", target_names[i], res(r, e));
    if (r == 0) {
      char buf[16];
      if (syscall(SYS_sendto, fd, "PING", 4, MSG_NOSIGNAL, NULL, 0) == 4)
        reached[i] = syscall(SYS_recvfrom, fd, buf, sizeof buf, 0, NULL, NULL) > 0; /* SO_RCVTIMEO 2 s */
    }
    if (r == 0 || e == EINPROGRESS || e == EALREADY) raw_disconnect(fd);
  }
  put("},\"reached\":{");
  for (int i = 0; i < ntargets; i++) put("%s\"%s\":%s", i ? "," : "", target_names[i], reached[i] ? "true" : "false");
  put("}");
}

/* Blocking, with every wait bounded: connect by SO_SNDTIMEO (3 s), reads by SO_RCVTIMEO (2 s). */
static void bound(int fd) {
  long fl = syscall(SYS_fcntl, fd, F_GETFL);
  if (fl >= 0) syscall(SYS_fcntl, fd, F_SETFL, fl & ~O_NONBLOCK);
  struct timeval snd = {.tv_sec = 3}, rcv = {.tv_sec = 2};
  syscall(SYS_setsockopt, fd, SOL_SOCKET, SO_SNDTIMEO, &snd, sizeof snd);
  syscall(SYS_setsockopt, fd, SOL_SOCKET, SO_RCVTIMEO, &rcv, sizeof rcv);
}

/* The attack on a connected socket; the line so far has "kind" (and "i"). */
static void attack(int fd, int echo) {
  bound(fd);
  put_local(fd);
  if (echo >= 0) put(",\"echo\":%s", echo ? "true" : "false");
  long r = raw_disconnect(fd);
  put(",\"disconnect\":%s", res(r, errno));
  put_connects(fd);
  struct sockaddr_in any = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
  r = syscall(SYS_bind, fd, &any, sizeof any);
  put(",\"bind\":%s", res(r, errno));
  r = syscall(SYS_listen, fd, 1);
  put(",\"listen\":%s", res(r, errno));
  if (r == 0) raw_disconnect(fd);
  r = syscall(SYS_sendto, fd, "x", 1, MSG_FASTOPEN | MSG_DONTWAIT | MSG_NOSIGNAL, &targets[0], sizeof targets[0]);
  put(",\"fastopen\":%s", res(r, errno));
  if (r >= 0 || errno == EINPROGRESS) raw_disconnect(fd);
  flush_line();
}

/* A listener that listens again (a steered one keeps its bind to the reserved port): does anything
   reach it? A connection of our own to its very address (raw, from the container's network), then
   up to 1.5 s for the listener to have one. */
static void relisten_probe(int ls) {
  struct sockaddr_in a;
  socklen_t al = sizeof a;
  int accepted = 0;
  long r = syscall(SYS_getsockname, ls, &a, &al);
  int c = (int)syscall(SYS_socket, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (r == 0 && c >= 0) {
    r = syscall(SYS_connect, c, &a, sizeof a);
    put(",\"relisten_probe\":%s", res(r, errno));
    struct pollfd p = {.fd = ls, .events = POLLIN};
    if (poll(&p, 1, 1500) == 1) {
      int x = (int)syscall(SYS_accept4, ls, NULL, NULL, SOCK_NONBLOCK);
      accepted = x >= 0;
      if (x >= 0) close(x);
    }
  }
  if (c >= 0) close(c);
  put(",\"relisten_accepted\":%s", accepted ? "true" : "false");
}

static int setup_error(const char *what) {
  put(",\"error\":\"%s: %s\"", what, res(-1, errno));
  flush_line();
  return 1;
}

/* Writes 4 bytes and reads them back within 5 s (libc: the application's own use of the socket). */
static int echo4(int fd, int first_write) {
  char got[4];
  size_t n = 0;
  if (first_write && write(fd, "abcd", 4) != 4) return 0;
  while (n < 4) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 5000) != 1) return 0;
    ssize_t k = read(fd, got + n, 4 - n);
    if (k <= 0) return 0;
    n += k;
  }
  if (!first_write) return write(fd, got, 4) == 4;
  return memcmp(got, "abcd", 4) == 0;
}

static int parse_addr(const char *s, struct sockaddr_in *a) {
  char ip[INET_ADDRSTRLEN];
  const char *colon = strrchr(s, ':');
  if (!colon || (size_t)(colon - s) >= sizeof ip) return -1;
  memcpy(ip, s, colon - s);
  ip[colon - s] = 0;
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || port <= 0 || port > 65535) return -1;
  *a = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(port)};
  return inet_pton(AF_INET, ip, &a->sin_addr) == 1 ? 0 : -1;
}

static int usage(void) {
  fprintf(stderr,
          "usage: escape client VIP PORT N TARGET... | escape server PORT TARGET... | escape control TARGET...\n"
          "       (TARGET is IP:PORT, at most %d)\n",
          MAX_TARGETS);
  return 2;
}

/* ESCAPE_HOLD=FILE: connect (and echo) all N first, say "held" on stderr, wait until FILE exists
   (at most 60 s), then attack them (the test restarts a broker in between). */
static int client(const char *vip, const char *port, int n) {
  struct sockaddr_in dst;
  char spec[64];
  snprintf(spec, sizeof spec, "%s:%s", vip, port);
  if (parse_addr(spec, &dst) < 0 || n > 64) return usage();
  const char *hold = getenv("ESCAPE_HOLD");
  int rc = 0, fds[64], echoes[64];
  for (int i = 0; i < n; i++) {
    fds[i] = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {.tv_sec = 5};
    if (fds[i] < 0) return setup_error("socket");
    setsockopt(fds[i], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fds[i], (struct sockaddr *)&dst, sizeof dst) < 0) {
      put("{\"kind\":\"client\",\"i\":%d", i);
      rc = setup_error("connect");
      close(fds[i]);
      fds[i] = -1;
      continue;
    }
    echoes[i] = echo4(fds[i], 1);
    if (!hold) {
      put("{\"kind\":\"client\",\"i\":%d", i);
      attack(fds[i], echoes[i]);
      close(fds[i]);
      fds[i] = -1;
    }
  }
  if (!hold) return rc;
  fprintf(stderr, "held\n");
  for (int k = 0; k < 600 && access(hold, F_OK) < 0; k++) usleep(100000);
  for (int i = 0; i < n; i++) {
    if (fds[i] < 0) continue;
    put("{\"kind\":\"client\",\"i\":%d", i);
    attack(fds[i], echoes[i]);
    close(fds[i]);
  }
  return rc;
}

static int server(const char *port) {
  struct sockaddr_in a;
  char spec[64];
  snprintf(spec, sizeof spec, "0.0.0.0:%s", port);
  if (parse_addr(spec, &a) < 0) return usage();
  int one = 1, rc = 0, ls = socket(AF_INET, SOCK_STREAM, 0);
  put("{\"kind\":\"listener\"");
  if (ls < 0) return setup_error("socket");
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0) return setup_error("bind");
  if (listen(ls, 16) < 0) return setup_error("listen");
  outlen = 0;
  fprintf(stderr, "listening\n");
  put("{\"kind\":\"server\"");
  struct pollfd p = {.fd = ls, .events = POLLIN};
  int ready = poll(&p, 1, 20000), c = ready == 1 ? accept(ls, NULL, NULL) : -1;
  if (c < 0) {
    if (ready == 0) errno = ETIMEDOUT;
    rc = setup_error("accept");
  } else {
    attack(c, echo4(c, 0));
    close(c);
  }
  /* The listener: out of the reserved port's group and onto the host's network, then listening again. */
  put("{\"kind\":\"listener\"");
  bound(ls);
  put_local(ls);
  long r = raw_disconnect(ls);
  put(",\"disconnect\":%s", res(r, errno));
  put_connects(ls);
  r = syscall(SYS_listen, ls, 16);
  put(",\"listen\":%s", res(r, errno));
  if (r == 0) relisten_probe(ls);
  flush_line();
  close(ls);
  return rc;
}

static int control(void) {
  put("{\"kind\":\"control\"");
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct timeval tv = {.tv_sec = 3};
  if (fd < 0) return setup_error("socket");
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&targets[0], sizeof targets[0]) < 0) return setup_error("connect");
  attack(fd, echo4(fd, 1));
  close(fd);
  return 0;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  alarm(120); /* a backstop: every wait is bounded anyway */
  if (argc < 3) return usage();
  const char *mode = argv[1];
  int first = !strcmp(mode, "client") ? 5 : !strcmp(mode, "server") ? 3 : !strcmp(mode, "control") ? 2 : -1;
  if (first < 0 || argc <= first || argc - first > MAX_TARGETS) return usage();
  for (int i = first; i < argc; i++) {
    if (parse_addr(argv[i], &targets[ntargets]) < 0) return usage();
    target_names[ntargets++] = argv[i];
  }
  if (first == 5) {
    int n = atoi(argv[4]);
    return n > 0 ? client(argv[2], argv[3], n) : usage();
  }
  return first == 3 ? server(argv[2]) : control();
}
