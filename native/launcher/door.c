// door.c: one request to the broker's runtime service and its reply (wire format in
// runtime-service/protocol.ts). Every failure returns -1 before anything is written, so the caller
// can still run its Node.js program instead.
#define _GNU_SOURCE
#include "door.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define REPLY_MAX (16u << 20)

extern char **environ;

// n bytes, which may hold NULs (a hook's stdin)
static void json_escape_n(FILE *f, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\')
      fprintf(f, "\\%c", c);
    else if (c == '\n')
      fputs("\\n", f);
    else if (c < 0x20)
      fprintf(f, "\\u%04x", c);
    else
      fputc(c, f);
  }
}

void json_escape(FILE *f, const char *s) { json_escape_n(f, s, strlen(s)); }

static void json_bytes(FILE *f, const char *s, size_t n) {
  fputc('"', f);
  json_escape_n(f, s, n);
  fputc('"', f);
}

static void json_str(FILE *f, const char *s) { json_bytes(f, s, strlen(s)); }

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// Waits for fd to be ready for events until deadline; 1 ready, 0 timed out or failed.
static int wait_fd(int fd, short events, long long deadline) {
  for (;;) {
    long long left = deadline - now_ms();
    if (left <= 0) return 0;
    struct pollfd p = {fd, events, 0};
    int n = poll(&p, 1, (int)left);
    if (n > 0) return 1;
    if (n < 0 && errno != EINTR) return 0;
  }
}

static char *build_request(const struct door_req *r, size_t *len) {
  char *text = NULL;
  FILE *f = open_memstream(&text, len);
  if (!f) return NULL;
  char cwd[4096], netns[64] = "";
  if (!getcwd(cwd, sizeof cwd)) {
    fclose(f);
    free(text);
    return NULL;
  }
  struct stat st;
  if (stat("/proc/self/ns/net", &st) == 0)
    snprintf(netns, sizeof netns, "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
  fputs("{\"v\":1,\"prog\":", f);
  json_str(f, r->prog);
  fputs(",\"root\":", f);
  json_str(f, r->root);
  fputs(",\"config\":", f);
  json_str(f, r->config);
  fputs(",\"netns\":", f);
  json_str(f, netns);
  fputs(",\"cwd\":", f);
  json_str(f, cwd);
  fputs(",\"argv\":[", f);
  for (int i = 0; i < r->argc; i++) {
    if (i) fputc(',', f);
    json_str(f, r->argv[i]);
  }
  fputs("],\"env\":[", f);
  for (char **e = environ; e && *e; e++) {
    if (e != environ) fputc(',', f);
    json_str(f, *e);
  }
  fputs("],\"stdin\":", f);
  json_bytes(f, r->input ? r->input : "", r->input ? r->input_len : 0);
  if (r->input_timed_out) fputs(",\"stdinTimedOut\":true", f);
  fputs("}\n", f);
  if (fclose(f) != 0) {
    free(text);
    return NULL;
  }
  return text;
}

static int send_all(int fd, const char *p, size_t n, long long deadline) {
  while (n > 0) {
    if (!wait_fd(fd, POLLOUT, deadline)) return -1;
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;  // nobody reads it: the exit status still tells
    p += w;
    n -= (size_t)w;
  }
}

// Whether buf holds a whole reply: its header line, and for "SFR1 CODE NOUT NERR" the NOUT + NERR
// bytes after it. The caller stops reading there instead of waiting for the broker's FIN.
static int reply_complete(const char *buf, size_t n) {
  const char *nl = memchr(buf, '\n', n);
  if (!nl) return 0;
  if (n >= 13 && strncmp(buf, "SFR1 fallback", 13) == 0) return 1;
  int c;
  size_t nout, nerr;
  if (sscanf(buf, "SFR1 %d %zu %zu\n", &c, &nout, &nerr) != 3) return 0;
  size_t head = (size_t)(nl - buf) + 1;
  return n - head >= nout + nerr;
}

// Reads the reply until it is whole (or EOF); returns its length or -1.
static ssize_t read_reply(int fd, char **out, long long deadline) {
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  if (!buf) return -1;
  for (;;) {
    if (n == cap) {
      if (cap >= REPLY_MAX) break;
      char *b = realloc(buf, cap * 2);
      if (!b) break;
      buf = b;
      cap *= 2;
    }
    if (!wait_fd(fd, POLLIN, deadline)) break;
    ssize_t got = recv(fd, buf + n, cap - n, MSG_DONTWAIT);
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (got < 0) break;
    if (got > 0) n += (size_t)got;
    if (got == 0 || reply_complete(buf, n)) {
      *out = buf;
      return (ssize_t)n;
    }
  }
  free(buf);
  return -1;
}

int door_connect(const char *state_dir) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (snprintf(sa.sun_path, sizeof sa.sun_path, "%s/runtime.sock", state_dir) >= (int)sizeof sa.sun_path) return -1;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int door_call(int fd, const struct door_req *r, int *code) {
  long long deadline = now_ms() + r->timeout_ms;
  size_t len = 0;
  char *req = build_request(r, &len);
  char *reply = NULL;
  ssize_t n = -1;
  if (req && send_all(fd, req, len, deadline) == 0 && shutdown(fd, SHUT_WR) == 0) n = read_reply(fd, &reply, deadline);
  free(req);
  close(fd);
  if (n < 0) return now_ms() >= deadline ? DOOR_TIMED_OUT : -1;
  int rc = -1;
  char *nl = memchr(reply, '\n', (size_t)n);
  int c;
  size_t nout, nerr;
  int head = nl ? (int)(nl - reply) + 1 : 0;
  if (nl && strncmp(reply, "SFR1 fallback", 13) == 0) {
    if (getenv("SLIMFAST_DEBUG")) fprintf(stderr, "slimfast: runtime service: %.*s\n", head - 1, reply);
  } else if (nl && sscanf(reply, "SFR1 %d %zu %zu\n", &c, &nout, &nerr) == 3 &&
             (size_t)n - (size_t)head == nout + nerr) {
    write_all(1, reply + head, nout);
    write_all(2, reply + head + nout, nerr);
    *code = c;
    rc = 0;
  }
  free(reply);
  return rc;
}
