/* memcrate: memcached client with short connections for the SlimFast benchmarks.
 *
 *   memcrate HOST PORT [-n MAX_OPS] [-t SECONDS] [-s VALUE_BYTES] [-c THREADS] [-k]
 *
 * Each operation: socket, connect, one text-protocol command (set and get alternate; every get asks
 * for a key this thread set just before, so it must hit), read the whole reply, close. With -k every
 * thread keeps one connection open and only repeats the command. Bounded by -n (total) and -t.
 * A reply that is not exactly the expected one counts as an error. Prints one JSON object like
 * connrate: counts, rate, connect and request latency percentiles in microseconds.
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
static long max_ops = 1000000;
static double max_seconds = 5;
static int value_bytes = 16;
static int keep_open;
static atomic_long issued;
static double t_start;

struct worker {
  pthread_t tid;
  int index;
  double *connect_us, *rtt_us;
  long n, cap, errors, sets, hits;
  char first_error[128];
};

static void note_error(struct worker *w, const char *what, const char *detail) {
  if (w->errors++ == 0) snprintf(w->first_error, sizeof w->first_error, "%s: %s", what, detail);
}

static int send_all(int fd, const char *p, size_t len) {
  while (len > 0) {
    ssize_t r = send(fd, p, len, MSG_NOSIGNAL);
    if (r <= 0) return -1;
    p += r;
    len -= (size_t)r;
  }
  return 0;
}

/* Reads until the reply is exactly `want` bytes long (replies are fixed-size here). */
static int read_reply(int fd, char *buf, size_t want) {
  size_t got = 0;
  while (got < want) {
    ssize_t r = recv(fd, buf + got, want - got, 0);
    if (r <= 0) return -1;
    got += (size_t)r;
    /* short error replies ("ERROR\r\n", "SERVER_ERROR …\r\n") end early */
    if (got >= 2 && buf[got - 2] == '\r' && buf[got - 1] == '\n' &&
        (!strncmp(buf, "ERROR", 5) || !strncmp(buf, "SERVER_ERROR", 12) || !strncmp(buf, "CLIENT_ERROR", 12) ||
         !strncmp(buf, "NOT_STORED", 10)))
      return -2;
  }
  return 0;
}

static int open_conn(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

static void *run(void *arg) {
  struct worker *w = arg;
  char value[4096], req[4352], reply[4352], expect[4352], key[64];
  for (int i = 0; i < value_bytes; i++) value[i] = 'a' + (w->index + i) % 26;
  value[value_bytes] = 0;
  int kept = -1;
  long seq = 0;
  while (atomic_fetch_add(&issued, 1) < max_ops && now() - t_start < max_seconds && w->n < w->cap) {
    int is_set = (seq % 2) == 0;
    snprintf(key, sizeof key, "sfbench:%d:%ld", w->index, (seq / 2) % 1000);
    int rl, el;
    if (is_set) {
      rl = snprintf(req, sizeof req, "set %s 0 0 %d\r\n%s\r\n", key, value_bytes, value);
      el = snprintf(expect, sizeof expect, "STORED\r\n");
    } else {
      rl = snprintf(req, sizeof req, "get %s\r\n", key);
      el = snprintf(expect, sizeof expect, "VALUE %s 0 %d\r\n%s\r\nEND\r\n", key, value_bytes, value);
    }
    seq++;
    double t0 = now();
    int fd = kept;
    if (fd < 0) {
      fd = open_conn();
      if (fd < 0) {
        note_error(w, "connect", strerror(errno));
        if (w->errors > 1000) break;
        continue;
      }
    }
    double t1 = now();
    int r = send_all(fd, req, (size_t)rl);
    if (r == 0) r = read_reply(fd, reply, (size_t)el);
    if (r < 0 || memcmp(reply, expect, (size_t)el) != 0) {
      if (r == -1)
        note_error(w, "request", errno ? strerror(errno) : "connection closed");
      else
        note_error(w, "reply", is_set ? "set not stored" : "get did not return the value just set");
      close(fd);
      kept = -1;
      if (w->errors > 1000) break;
      continue;
    }
    double t2 = now();
    if (keep_open)
      kept = fd;
    else
      close(fd);
    if (is_set)
      w->sets++;
    else
      w->hits++;
    w->connect_us[w->n] = (t1 - t0) * 1e6;
    w->rtt_us[w->n] = (t2 - t1) * 1e6;
    w->n++;
  }
  if (kept >= 0) close(kept);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s HOST PORT [-n MAX_OPS] [-t SECONDS] [-s VALUE_BYTES] [-c THREADS] [-k]\n", argv[0]);
    return 2;
  }
  dst.sin_family = AF_INET;
  dst.sin_port = htons(atoi(argv[2]));
  if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) {
    fprintf(stderr, "memcrate: %s is not an IPv4 address\n", argv[1]);
    return 2;
  }
  int threads = 1;
  for (int i = 3; i < argc; i++) {
    if (!strcmp(argv[i], "-n") && i + 1 < argc)
      max_ops = atol(argv[++i]);
    else if (!strcmp(argv[i], "-t") && i + 1 < argc)
      max_seconds = atof(argv[++i]);
    else if (!strcmp(argv[i], "-s") && i + 1 < argc)
      value_bytes = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-c") && i + 1 < argc)
      threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-k"))
      keep_open = 1;
    else {
      fprintf(stderr, "memcrate: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  if (value_bytes < 1 || value_bytes > 4000 || threads < 1 || threads > 256 || max_ops < 1 || max_seconds <= 0) {
    fprintf(stderr, "memcrate: -s 1..4000, -c 1..256, -n >= 1, -t > 0\n");
    return 2;
  }
  long cap = max_ops < 2000000 ? max_ops : 2000000;
  struct worker *w = calloc(threads, sizeof *w);
  for (int i = 0; i < threads; i++) {
    w[i].index = i;
    w[i].cap = cap;
    w[i].connect_us = malloc(sizeof(double) * cap);
    w[i].rtt_us = malloc(sizeof(double) * cap);
    if (!w[i].connect_us || !w[i].rtt_us) {
      fprintf(stderr, "memcrate: out of memory\n");
      return 1;
    }
  }
  t_start = now();
  for (int i = 0; i < threads; i++) pthread_create(&w[i].tid, NULL, run, &w[i]);
  for (int i = 0; i < threads; i++) pthread_join(w[i].tid, NULL);
  double elapsed = now() - t_start;

  long n = 0, errors = 0, sets = 0, hits = 0;
  const char *first_error = "";
  for (int i = 0; i < threads; i++) {
    n += w[i].n;
    errors += w[i].errors;
    sets += w[i].sets;
    hits += w[i].hits;
    if (!*first_error && w[i].errors) first_error = w[i].first_error;
  }
  double *c = malloc(sizeof(double) * (n ? n : 1)), *r = malloc(sizeof(double) * (n ? n : 1));
  long k = 0;
  for (int i = 0; i < threads; i++) {
    memcpy(c + k, w[i].connect_us, sizeof(double) * w[i].n);
    memcpy(r + k, w[i].rtt_us, sizeof(double) * w[i].n);
    k += w[i].n;
  }
  qsort(c, n, sizeof(double), cmp);
  qsort(r, n, sizeof(double), cmp);
  printf(
      "{\"conns\":%ld,\"ops\":%ld,\"sets\":%ld,\"hits\":%ld,\"errors\":%ld,\"seconds\":%.4f,\"rate\":%.1f,"
      "\"connect_p50_us\":%.2f,\"connect_p99_us\":%.2f,\"rtt_p50_us\":%.2f,\"rtt_p99_us\":%.2f,\"threads\":%d,"
      "\"keep_open\":%s,\"first_error\":\"%s\"}\n",
      keep_open ? (long)threads : n, n, sets, hits, errors, elapsed, n / elapsed, pct(c, n, 0.5), pct(c, n, 0.99),
      pct(r, n, 0.5), pct(r, n, 0.99), threads, keep_open ? "true" : "false", first_error);
  return n > 0 ? 0 : 1;
}
