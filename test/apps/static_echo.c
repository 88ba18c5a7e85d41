/* static_echo: an echo server to build statically (the seccomp agent's server-side test program).
 *
 *   static_echo PORT block|poll|block6|poll6 [CLOSE_AFTER]
 *
 * Listens on 0.0.0.0:PORT (block6/poll6: an AF_INET6 dual-stack socket on [::]:PORT, as Go's
 * net.Listen makes it); block: a blocking accept() loop; poll: a non-blocking listener, poll()
 * and accept4(SOCK_NONBLOCK | SOCK_CLOEXEC) until EAGAIN. Addresses print as IP:PORT, IPv6 ones
 * as [IP]:PORT. Every connection gets a thread that
 * echoes until EOF. It prints (flushed) one line for the listener
 *   listening PORT local=IP:PORT peer=ERRNO-NAME pid=PID
 * and one for each connection
 *   accept from=IP:PORT len=N peer=IP:PORT local=IP:PORT
 * (from: what accept wrote into its address argument; peer/local: getpeername/getsockname).
 * With CLOSE_AFTER, it closes the listener after that many connections ("closed"), keeps echoing
 * and waits to be killed. SIGUSR1 interrupts a blocking accept, which restarts (SA_RESTART). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

static void on_usr1(int sig) { (void)sig; }

static const char *fmt(const struct sockaddr_storage *ss, char *buf, size_t n) {
  char ip[INET6_ADDRSTRLEN];
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
    snprintf(buf, n, "[%s]:%u", ip, ntohs(a->sin6_port));
  } else {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    snprintf(buf, n, "%s:%u", ip, ntohs(a->sin_port));
  }
  return buf;
}

static void *echo(void *arg) {
  int c = (int)(long)arg;
  char buf[65536];
  for (;;) {
    ssize_t n = read(c, buf, sizeof buf);
    if (n <= 0) break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(c, buf + off, (size_t)(n - off));
      if (w <= 0) goto out;
      off += w;
    }
  }
out:
  close(c);
  return NULL;
}

static void serve(int c, const struct sockaddr_storage *from, socklen_t len) {
  struct sockaddr_storage p, l;
  socklen_t pl = sizeof p, ll = sizeof l;
  char a[80], b[80], d[80];
  memset(&p, 0, sizeof p);
  memset(&l, 0, sizeof l);
  getpeername(c, (struct sockaddr *)&p, &pl);
  getsockname(c, (struct sockaddr *)&l, &ll);
  pthread_mutex_lock(&out_mu);
  printf("accept from=%s len=%u peer=%s local=%s\n", fmt(from, a, sizeof a), (unsigned)len, fmt(&p, b, sizeof b),
         fmt(&l, d, sizeof d));
  fflush(stdout);
  pthread_mutex_unlock(&out_mu);
  int fl = fcntl(c, F_GETFL);
  if (fl >= 0) fcntl(c, F_SETFL, fl & ~O_NONBLOCK);
  pthread_t t;
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&t, &at, echo, (void *)(long)c) != 0) close(c);
  pthread_attr_destroy(&at);
}

int main(int argc, char **argv) {
  if (argc < 3 ||
      (strcmp(argv[2], "block") && strcmp(argv[2], "poll") && strcmp(argv[2], "block6") && strcmp(argv[2], "poll6"))) {
    fprintf(stderr, "usage: %s PORT block|poll|block6|poll6 [CLOSE_AFTER]\n", argv[0]);
    return 2;
  }
  int nonblock = !strncmp(argv[2], "poll", 4);
  int v6 = argv[2][strlen(argv[2]) - 1] == '6';
  /* SIGUSR1 interrupts a blocking accept (restarted: SA_RESTART). */
  struct sigaction sg;
  memset(&sg, 0, sizeof sg);
  sg.sa_handler = on_usr1;
  sg.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sg, NULL);
  long close_after = argc > 3 ? atol(argv[3]) : 0;
  int ls = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
  int one = 1, zero = 0;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_storage sa;
  memset(&sa, 0, sizeof sa);
  socklen_t salen;
  if (v6) {
    setsockopt(ls, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&sa;
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)atoi(argv[1]));
    salen = sizeof *a6;
  } else {
    struct sockaddr_in *a4 = (struct sockaddr_in *)&sa;
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)atoi(argv[1]));
    salen = sizeof *a4;
  }
  if (bind(ls, (struct sockaddr *)&sa, salen) < 0 || listen(ls, 128) < 0) {
    perror("bind/listen");
    return 1;
  }
  struct sockaddr_storage l, p;
  socklen_t ll = sizeof l, pl = sizeof p;
  char a[80];
  memset(&l, 0, sizeof l);
  getsockname(ls, (struct sockaddr *)&l, &ll);
  int perr = getpeername(ls, (struct sockaddr *)&p, &pl) == 0 ? 0 : errno;
  printf("listening %s local=%s peer=%s pid=%d\n", argv[1], fmt(&l, a, sizeof a),
         perr == ENOTCONN ? "ENOTCONN"
         : perr           ? strerror(perr)
                          : "connected?",
         (int)getpid());
  fflush(stdout);
  long count = 0;
  for (;;) {
    if (nonblock) {
      struct pollfd pf = {ls, POLLIN, 0};
      if (poll(&pf, 1, -1) < 0 && errno != EINTR) {
        perror("poll");
        return 1;
      }
    }
    for (;;) {
      struct sockaddr_storage from;
      memset(&from, 0, sizeof from);
      socklen_t len = sizeof from;
      int c = nonblock ? accept4(ls, (struct sockaddr *)&from, &len, SOCK_NONBLOCK | SOCK_CLOEXEC)
                       : accept(ls, (struct sockaddr *)&from, &len);
      if (c < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) break;
        perror("accept");
        return 1;
      }
      serve(c, &from, len);
      if (close_after && ++count == close_after) {
        close(ls);
        pthread_mutex_lock(&out_mu);
        printf("closed\n");
        fflush(stdout);
        pthread_mutex_unlock(&out_mu);
        for (;;) pause();
      }
      if (!nonblock) break;
    }
  }
}
