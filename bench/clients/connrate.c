/* connrate: connection-rate and latency client for SlimFast benchmarks and the demo.
 *
 *   connrate HOST PORT [-n MAX_CONNS] [-t SECONDS] [-s MSG_BYTES] [-c THREADS] [-k] [-F]
 *
 * Each connection: socket, connect, write MSG_BYTES, read them back, close. With -k, one connection
 * per thread is kept open and only the request/response is repeated. With -F, the socket has
 * TCP_FASTOPEN_CONNECT, so the request rides in the SYN (once the server's cookie is known). Bounded by
 * -n (total) and -t.
 * Prints one JSON object: counts, rate, connect, round-trip and close latency percentiles in
 * microseconds ("connect" is socket + TCP_NODELAY + connect; close is 0 with -k).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "benchclock.h"

static struct sockaddr_in dst;
static long max_conns = 1000000;
static double max_seconds = 5;
static int msg_bytes = 16;
static int keep_open;
static int fast_open;
static atomic_long issued;
static double t_start;

struct worker {
  pthread_t tid;
  double *connect_us, *rtt_us, *close_us;
  long n, cap, errors;
  char first_error[96];
};

static int xfer(int fd, char *buf) {
  if (send(fd, buf, msg_bytes, MSG_NOSIGNAL) != msg_bytes) return -1;
  int got = 0;
  while (got < msg_bytes) {
    ssize_t r = recv(fd, buf + got, msg_bytes - got, 0);
    if (r <= 0) return -1;
    got += r;
  }
  return 0;
}

static int open_conn(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (fast_open && setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof one) < 0) {
    close(fd);
    return -1;
  }
  if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

static void note_error(struct worker *w, const char *what) {
  if (w->errors++ == 0) snprintf(w->first_error, sizeof w->first_error, "%s: %s", what, strerror(errno));
}

static void *run(void *arg) {
  struct worker *w = arg;
  char buf[65536];
  memset(buf, 'x', sizeof buf);
  int kept = -1;
  while (atomic_fetch_add(&issued, 1) < max_conns && now() - t_start < max_seconds && w->n < w->cap) {
    double t0 = now();
    int fd = kept;
    if (fd < 0) {
      fd = open_conn();
      if (fd < 0) {
        note_error(w, "connect");
        if (w->errors > 1000) break;
        continue;
      }
    }
    double t1 = now();
    if (xfer(fd, buf) < 0) {
      note_error(w, "echo");
      close(fd);
      kept = -1;
      if (w->errors > 1000) break;
      continue;
    }
    double t2 = now(), t3 = t2;
    if (keep_open) {
      kept = fd;
    } else {
      close(fd);
      t3 = now();
    }
    w->connect_us[w->n] = (t1 - t0) * 1e6;
    w->rtt_us[w->n] = (t2 - t1) * 1e6;
    w->close_us[w->n] = (t3 - t2) * 1e6;
    w->n++;
  }
  if (kept >= 0) close(kept);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s HOST PORT [-n MAX_CONNS] [-t SECONDS] [-s MSG_BYTES] [-c THREADS] [-k] [-F]\n", argv[0]);
    return 2;
  }
  dst.sin_family = AF_INET;
  dst.sin_port = htons(atoi(argv[2]));
  if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) {
    fprintf(stderr, "connrate: %s is not an IPv4 address\n", argv[1]);
    return 2;
  }
  int threads = 1;
  for (int i = 3; i < argc; i++) {
    if (!strcmp(argv[i], "-n") && i + 1 < argc)
      max_conns = atol(argv[++i]);
    else if (!strcmp(argv[i], "-t") && i + 1 < argc)
      max_seconds = atof(argv[++i]);
    else if (!strcmp(argv[i], "-s") && i + 1 < argc)
      msg_bytes = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-c") && i + 1 < argc)
      threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-k"))
      keep_open = 1;
    else if (!strcmp(argv[i], "-F"))
      fast_open = 1;
    else {
      fprintf(stderr, "connrate: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  if (msg_bytes < 1 || msg_bytes > 65536 || threads < 1 || threads > 256 || max_conns < 1 || max_seconds <= 0) {
    fprintf(stderr, "connrate: -s 1..65536, -c 1..256, -n >= 1, -t > 0\n");
    return 2;
  }
  long cap = max_conns < 2000000 ? max_conns : 2000000;
  struct worker *w = calloc(threads, sizeof *w);
  for (int i = 0; i < threads; i++) {
    w[i].cap = cap;
    w[i].connect_us = malloc(sizeof(double) * cap);
    w[i].rtt_us = malloc(sizeof(double) * cap);
    w[i].close_us = malloc(sizeof(double) * cap);
    if (!w[i].connect_us || !w[i].rtt_us || !w[i].close_us) {
      fprintf(stderr, "connrate: out of memory\n");
      return 1;
    }
  }
  t_start = now();
  for (int i = 0; i < threads; i++) pthread_create(&w[i].tid, NULL, run, &w[i]);
  for (int i = 0; i < threads; i++) pthread_join(w[i].tid, NULL);
  double elapsed = now() - t_start;

  long n = 0, errors = 0;
  const char *first_error = "";
  for (int i = 0; i < threads; i++) {
    n += w[i].n;
    errors += w[i].errors;
    if (!*first_error && w[i].errors) first_error = w[i].first_error;
  }
  double *c = malloc(sizeof(double) * (n ? n : 1)), *r = malloc(sizeof(double) * (n ? n : 1)),
         *x = malloc(sizeof(double) * (n ? n : 1));
  long k = 0;
  for (int i = 0; i < threads; i++) {
    memcpy(c + k, w[i].connect_us, sizeof(double) * w[i].n);
    memcpy(r + k, w[i].rtt_us, sizeof(double) * w[i].n);
    memcpy(x + k, w[i].close_us, sizeof(double) * w[i].n);
    k += w[i].n;
  }
  qsort(c, n, sizeof(double), cmp);
  qsort(r, n, sizeof(double), cmp);
  qsort(x, n, sizeof(double), cmp);
  printf(
      "{\"conns\":%ld,\"errors\":%ld,\"seconds\":%.4f,\"rate\":%.1f,\"connect_p50_us\":%.2f,\"connect_p99_us\":%.2f,"
      "\"rtt_p50_us\":%.2f,\"rtt_p99_us\":%.2f,\"close_p50_us\":%.2f,\"close_p99_us\":%.2f,\"threads\":%d,\"keep_"
      "open\":%s,"
      "\"first_error\":\"%s\"}\n",
      n, errors, elapsed, n / elapsed, pct(c, n, 0.5), pct(c, n, 0.99), pct(r, n, 0.5), pct(r, n, 0.99), pct(x, n, 0.5),
      pct(x, n, 0.99), threads, keep_open ? "true" : "false", first_error);
  return n > 0 ? 0 : 1;
}
