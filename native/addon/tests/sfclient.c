/* sfclient: a small client of the SlimFast preload <-> broker protocol, for tests.
 *
 *   sfclient SOCKET_PATH
 *
 * Connects (SOCK_SEQPACKET) to a container's broker socket, then reads commands from stdin, one
 * per line, and prints exactly one JSON line per command on stdout. Descriptors it receives are
 * named by their fd number ("h"; "last" names the latest one where H is taken). Commands:
 *
 *   hello                         SF_HELLO
 *   connect IP PORT [SPORT]       SF_CONNECT to IP:PORT (port_a = SPORT or 0)
 *   listen VIP PORT [BACKLOG]     real TCP socket on 127.0.0.1:0 listening, then SF_LISTEN with it;
 *                                 prints the reply plus "real_port" (our copy is closed after)
 *   listen-notlistening VIP PORT  SF_LISTEN with a bound but not listening TCP socket
 *   listen-nofd VIP PORT          SF_LISTEN without a descriptor
 *   accept H MS                   wait up to MS for one SF_ACCEPTED on channel H
 *   send H TEXT                   write TEXT on socket H
 *   recv H MS                     read once from socket H (data / eof / error / timeout)
 *   close H                       close fd H
 *   query H                       SF_QUERY_CHANNEL with st_ino of fd H
 *   queryino N                    SF_QUERY_CHANNEL with inode N
 *   raw TYPE VERSION LEN          send a raw LEN-byte message (malformed-message tests)
 *   names H                       real getsockname/getpeername of socket H
 *   repoint H IP PORT             on socket H: connect(AF_UNSPEC), then connect to IP:PORT, bind to
 *                                 0.0.0.0:0, listen, and a Fast Open sendto to IP:PORT; prints each
 *                                 call's errno (0: it succeeded)
 *   blackhole                     a 127.0.0.1 listener whose accept queue is full (SYNs dropped)
 *   drain H                       fork a child that takes every SF_ACCEPTED on channel H, reads
 *                                 until EOF and closes (runs until the channel or we go away)
 *   loop N IP PORT [ECHO]         N sequential CONNECTs; each socket is closed at once, or with
 *                                 ECHO=1 sends 16 bytes and waits for the peer's close
 *   pooltake IP PORT [HOW]        take a pooled socket and send its completed header (see below)
 *   poolhup IP                    has the broker closed its end of the pool channel for IP's route?
 *   steer H                       SF_STEER_SOCKET for channel H: the listener's steered socket
 *   saccept S MS                  accept on steered socket S within MS and read its 48-byte header
 *   tfo BINDIP IP:PORT HEX        TCP Fast Open connect from BINDIP, the bytes HEX in the SYN
 *   quit
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "slimfast_wire.h"

static int broker = -1;
static uint32_t next_seq = 1;

static const char *ipstr(uint32_t net_order, char *buf) {
  struct in_addr a = {net_order};
  inet_ntop(AF_INET, &a, buf, 16);
  return buf;
}

static uint32_t ipparse(const char *s) {
  struct in_addr a;
  if (inet_pton(AF_INET, s, &a) != 1) return 0;
  return a.s_addr;
}

static int send_req(struct sf_msg *m, int fd) {
  struct iovec iov = {m, sizeof *m};
  struct msghdr mh = {0};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (fd >= 0) {
    memset(&u, 0, sizeof u);
    mh.msg_control = u.buf;
    mh.msg_controllen = sizeof u.buf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  return sendmsg(broker, &mh, MSG_NOSIGNAL) == (ssize_t)sizeof *m ? 0 : -1;
}

/* Receives one sf_msg (+ optional fd) from sock within ms. 0 ok, else prints an error line. */
static int recv_msg(int sock, struct sf_msg *m, int *fd, int ms) {
  struct pollfd p = {sock, POLLIN, 0};
  *fd = -1;
  int r = poll(&p, 1, ms);
  if (r == 0) {
    printf("{\"error\":\"timeout\"}\n");
    return -1;
  }
  union {
    char buf[CMSG_SPACE(sizeof(int) * 4)];
    struct cmsghdr align;
  } u;
  struct iovec iov = {m, sizeof *m};
  struct msghdr mh = {0};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = u.buf;
  mh.msg_controllen = sizeof u.buf;
  ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
  if (n <= 0) {
    printf("{\"error\":\"%s\"}\n", n == 0 ? "eof" : strerror(errno));
    return -1;
  }
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) memcpy(fd, CMSG_DATA(c), sizeof(int));
  if (n != sizeof *m) {
    printf("{\"error\":\"short message %zd\"}\n", n);
    return -1;
  }
  return 0;
}

/* The SF_POOL_CHANNELs the broker sent, with their routes (network order net, prefix length). */
static struct {
  int fd;
  uint32_t net, prefix;
} pools[8];
static int pool_channels;

/* A reply: like recv_msg, but a pool channel the broker sends ahead of a reply is kept aside. */
static int recv_reply(int sock, struct sf_msg *m, int *fd, int ms) {
  for (;;) {
    if (recv_msg(sock, m, fd, ms) < 0) return -1;
    if (m->type != SF_POOL_CHANNEL) return 0;
    if (pool_channels < 8)
      pools[pool_channels++] = (typeof(pools[0])){*fd, m->vip_a, (uint32_t)m->a};
    else
      close(*fd);
  }
}

/* The pool channel whose route holds ip (network order), or -1. */
static int pool_for(uint32_t ip) {
  for (int i = 0; i < pool_channels; i++) {
    uint32_t mask = pools[i].prefix ? htonl(~0u << (32 - pools[i].prefix)) : 0;
    if ((ip & mask) == pools[i].net) return pools[i].fd;
  }
  return -1;
}

/* The last descriptor a reply brought: commands taking H accept "last" for it. */
static int last_fd = -1;
static int hfd(const char *s) { return strcmp(s, "last") ? atoi(s) : last_fd; }

static void print_msg(const struct sf_msg *m, int fd, const char *extra) {
  char a[16], b[16];
  if (fd >= 0) last_fd = fd;
  printf(
      "{\"type\":%u,\"version\":%u,\"seq\":%u,\"status\":%d,\"vip_a\":\"%s\",\"port_a\":%u,"
      "\"vip_b\":\"%s\",\"port_b\":%u,\"a\":%llu,\"h\":%d%s}\n",
      m->type, m->version, m->seq, m->status, ipstr(m->vip_a, a), ntohs(m->port_a), ipstr(m->vip_b, b),
      ntohs(m->port_b), (unsigned long long)m->a, fd, extra ? extra : "");
}

/* Sends a request and prints its reply (checking the echoed seq). */
static void request(struct sf_msg *m, int fd, const char *extra) {
  m->version = SF_MSG_VERSION;
  m->seq = m->type == SF_HELLO ? 0 : next_seq++; /* HELLO as the preload sends it */
  if (send_req(m, fd) < 0) {
    /* a broker that refused the connection said why before closing it: show that */
    int e = errno, rfd2;
    struct sf_msg r2;
    if (e == EPIPE && m->type == SF_HELLO) {
      if (recv_reply(broker, &r2, &rfd2, 0) == 0) print_msg(&r2, rfd2, NULL); /* else it said why */
      return;
    }
    printf("{\"error\":\"send: %s\"}\n", strerror(e));
    return;
  }
  struct sf_msg r;
  int rfd;
  if (recv_reply(broker, &r, &rfd, 5000) < 0) return;
  if (r.seq != m->seq) {
    printf("{\"error\":\"seq mismatch %u != %u\"}\n", r.seq, m->seq);
    return;
  }
  print_msg(&r, rfd, extra);
}

static int tcp_listener(int backlog, int do_listen, uint16_t *port) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0 || (do_listen && listen(s, backlog) < 0) ||
      getsockname(s, (struct sockaddr *)&a, &al) < 0)
    return -1;
  *port = ntohs(a.sin_port);
  return s;
}

/* Child of "drain": accept connections from the channel, read each until EOF, close. */
static void drain(int ch) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  for (;;) {
    struct sf_msg r;
    int fd;
    struct pollfd p = {ch, POLLIN, 0};
    if (poll(&p, 1, -1) < 0) continue;
    union {
      char buf[CMSG_SPACE(sizeof(int))];
      struct cmsghdr align;
    } u;
    struct iovec iov = {&r, sizeof r};
    struct msghdr mh = {0};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = u.buf;
    mh.msg_controllen = sizeof u.buf;
    ssize_t n = recvmsg(ch, &mh, 0);
    if (n <= 0) _exit(0);
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    if (!c || c->cmsg_type != SCM_RIGHTS) continue;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    char buf[256];
    while (recv(fd, buf, sizeof buf, 0) > 0) {}
    close(fd);
  }
}

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: sfclient SOCKET_PATH\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  broker = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  struct sockaddr_un ua = {.sun_family = AF_UNIX};
  strncpy(ua.sun_path, argv[1], sizeof ua.sun_path - 1);
  if (broker < 0 || connect(broker, (struct sockaddr *)&ua, sizeof ua) < 0) {
    printf("{\"error\":\"connect %s: %s\"}\n", argv[1], strerror(errno));
    return 1;
  }
  printf("{\"ready\":true}\n");
  char line[512];
  while (fgets(line, sizeof line, stdin)) {
    char cmd[32] = "", x[128] = "", y[128] = "", z[128] = "";
    sscanf(line, "%31s %127s %127s %127s", cmd, x, y, z);
    struct sf_msg m;
    memset(&m, 0, sizeof m);
    if (!strcmp(cmd, "hello")) {
      m.type = SF_HELLO;
      m.a = (uint64_t)getpid();
      request(&m, -1, NULL);
    } else if (!strcmp(cmd, "connect")) {
      m.type = SF_CONNECT;
      m.vip_b = ipparse(x);
      m.port_b = htons((uint16_t)atoi(y));
      m.port_a = htons((uint16_t)atoi(z));
      request(&m, -1, NULL);
    } else if (!strcmp(cmd, "listen") || !strcmp(cmd, "listen-notlistening") || !strcmp(cmd, "listen-nofd")) {
      uint16_t real_port = 0;
      int s = -1;
      if (strcmp(cmd, "listen-nofd")) {
        s = tcp_listener(z[0] ? atoi(z) : 16, !strcmp(cmd, "listen"), &real_port);
        if (s < 0) {
          printf("{\"error\":\"listener: %s\"}\n", strerror(errno));
          continue;
        }
      }
      m.type = SF_LISTEN;
      m.vip_a = ipparse(x);
      m.port_a = htons((uint16_t)atoi(y));
      m.a = 16;
      char extra[64];
      snprintf(extra, sizeof extra, ",\"real_port\":%u", real_port);
      request(&m, s, extra);
      if (s >= 0) close(s); /* the preload dup3s the channel over it */
    } else if (!strcmp(cmd, "accept")) {
      struct sf_msg r;
      int fd;
      if (recv_msg(atoi(x), &r, &fd, atoi(y)) == 0) print_msg(&r, fd, NULL);
    } else if (!strcmp(cmd, "send")) {
      ssize_t n = send(hfd(x), y, strlen(y), MSG_NOSIGNAL);
      if (n < 0)
        printf("{\"error\":\"%s\"}\n", strerror(errno));
      else
        printf("{\"sent\":%zd}\n", n);
    } else if (!strcmp(cmd, "recv")) {
      struct pollfd p = {hfd(x), POLLIN, 0};
      char buf[4096];
      if (poll(&p, 1, atoi(y)) == 0) {
        printf("{\"error\":\"timeout\"}\n");
        continue;
      }
      ssize_t n = recv(hfd(x), buf, sizeof buf - 1, MSG_DONTWAIT);
      if (n < 0)
        printf("{\"error\":\"%s\"}\n", strerrorname_np(errno));
      else if (n == 0)
        printf("{\"eof\":true}\n");
      else {
        buf[n] = 0;
        for (ssize_t i = 0; i < n; i++)
          if (buf[i] == '"' || buf[i] == '\\' || (unsigned char)buf[i] < 32) buf[i] = '?';
        printf("{\"data\":\"%s\"}\n", buf);
      }
    } else if (!strcmp(cmd, "close")) {
      printf("{\"closed\":%d}\n", close(hfd(x)) == 0);
    } else if (!strcmp(cmd, "query") || !strcmp(cmd, "queryino")) {
      struct stat st;
      m.type = SF_QUERY_CHANNEL;
      if (!strcmp(cmd, "query")) {
        if (fstat(atoi(x), &st) < 0) {
          printf("{\"error\":\"fstat: %s\"}\n", strerror(errno));
          continue;
        }
        m.a = st.st_ino;
      } else {
        m.a = strtoull(x, NULL, 10);
      }
      request(&m, -1, NULL);
    } else if (!strcmp(cmd, "raw")) {
      struct sf_msg r;
      char buf[64] = {0};
      size_t len = (size_t)atoi(z);
      if (len > sizeof buf) len = sizeof buf;
      memset(&r, 0, sizeof r);
      r.type = (uint16_t)atoi(x);
      r.version = (uint16_t)atoi(y);
      r.seq = next_seq++;
      memcpy(buf, &r, sizeof r);
      printf("{\"sent\":%zd}\n", send(broker, buf, len, MSG_NOSIGNAL));
    } else if (!strcmp(cmd, "names")) {
      struct sockaddr_in l = {0}, p = {0};
      socklen_t ll = sizeof l, pl = sizeof p;
      char a[16], b[16];
      getsockname(atoi(x), (struct sockaddr *)&l, &ll);
      getpeername(atoi(x), (struct sockaddr *)&p, &pl);
      printf("{\"local\":\"%s:%u\",\"peer\":\"%s:%u\"}\n", ipstr(l.sin_addr.s_addr, a), ntohs(l.sin_port),
             ipstr(p.sin_addr.s_addr, b), ntohs(p.sin_port));
    } else if (!strcmp(cmd, "repoint")) {
      int fd = atoi(x);
      struct sockaddr unspec = {.sa_family = AF_UNSPEC};
      struct sockaddr_in to = {
          .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(z)), .sin_addr.s_addr = ipparse(y)};
      struct sockaddr_in any = {.sin_family = AF_INET};
      int e[5];
      e[0] = connect(fd, &unspec, sizeof unspec) == 0 ? 0 : errno;
      e[1] = connect(fd, (struct sockaddr *)&to, sizeof to) == 0 ? 0 : errno;
      e[2] = bind(fd, (struct sockaddr *)&any, sizeof any) == 0 ? 0 : errno;
      e[3] = listen(fd, 1) == 0 ? 0 : errno;
      e[4] = sendto(fd, "x", 1, MSG_FASTOPEN | MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&to, sizeof to) >= 0
                 ? 0
                 : errno;
      printf("{\"disconnect\":%d,\"connect\":%d,\"bind\":%d,\"listen\":%d,\"fastopen\":%d}\n", e[0], e[1], e[2], e[3],
             e[4]);
    } else if (!strcmp(cmd, "blackhole")) {
      uint16_t port;
      int s = tcp_listener(0, 1, &port);
      struct sockaddr_in a = {
          .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
      for (int i = 0; s >= 0 && i < 3; i++) { /* fill the accept queue; later SYNs are dropped */
        int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        connect(c, (struct sockaddr *)&a, sizeof a);
      }
      usleep(50000);
      printf("{\"port\":%u}\n", s < 0 ? 0 : port);
    } else if (!strcmp(cmd, "drain")) {
      pid_t pid = fork();
      if (pid == 0) drain(atoi(x));
      printf("{\"pid\":%d}\n", (int)pid);
    } else if (!strcmp(cmd, "loop")) {
      int n = atoi(x), ok = 0, fb = 0, err = 0;
      int echo = atoi(z[0] ? z : "0");
      char dst[128], port[32];
      sscanf(line, "%*s %*s %127s %31s", dst, port);
      double t0 = now_us();
      for (int i = 0; i < n; i++) {
        memset(&m, 0, sizeof m);
        m.type = SF_CONNECT;
        m.version = SF_MSG_VERSION;
        m.seq = next_seq++;
        m.vip_b = ipparse(dst);
        m.port_b = htons((uint16_t)atoi(port));
        struct sf_msg r;
        int fd;
        if (send_req(&m, -1) < 0 || recv_reply(broker, &r, &fd, 5000) < 0) break;
        if (r.status == 0 && fd >= 0) {
          ok++;
          if (echo) {
            char b[16] = "0123456789abcde";
            send(fd, b, 16, MSG_NOSIGNAL);
            shutdown(fd, SHUT_WR);
            while (recv(fd, b, sizeof b, 0) > 0) {}
          }
          close(fd);
        } else if (r.status == SF_STATUS_FALLBACK) {
          fb++;
        } else {
          err++;
        }
      }
      double us = now_us() - t0;
      printf("{\"ok\":%d,\"fallback\":%d,\"errors\":%d,\"us_per_conn\":%.2f}\n", ok, fb, err, n ? us / n : 0);
    } else if (!strcmp(cmd, "poolshut")) {
      /* poolshut IP: stop reading the pool channel for IP's route (the broker's pushes fail with
         EPIPE, while it sees no EOF) and report one take and an empty pool, which asks for more. */
      int pfd = pool_for(ipparse(x));
      struct sf_msg took = {.type = SF_POOL_TOOK, .version = SF_MSG_VERSION, .status = 1, .a = 1};
      int r1 = shutdown(pfd, SHUT_RD);
      ssize_t r2 = send(pfd, &took, sizeof took, MSG_NOSIGNAL);
      printf("{\"shutdown\":%d,\"sent\":%zd}\n", r1, r2);
    } else if (!strcmp(cmd, "poolhup")) {
      int pfd = pool_for(ipparse(x));
      struct pollfd pp = {pfd, POLLRDHUP, 0};
      int hup = pfd >= 0 && poll(&pp, 1, 0) == 1 && (pp.revents & (POLLHUP | POLLRDHUP));
      printf("{\"pool\":%d,\"hup\":%s}\n", pfd, hup ? "true" : "false");
    } else if (!strcmp(cmd, "pooltake")) {
      /* pooltake IP PORT [forge]: take a pre-established socket from the pool channel, send its
         header for IP:PORT (with forge: its source vIP changed to 10.99.0.3, with lowport: source
         port 22, with unsigned: as an
         unsigned CONNECT header, with twice: also on a second pooled socket, as "h2"), report
         the take. Prints the SF_POOLED message plus what was sent. */
      char dst[128], port[32], how[32] = "";
      sscanf(line, "%*s %127s %31s %31s", dst, port, how);
      struct sf_pooled pm;
      int fd = -1;
      int pool_fd = pool_for(ipparse(dst));
      struct pollfd pp = {pool_fd, POLLIN, 0};
      if (pool_fd < 0) {
        printf("{\"error\":\"no pool channel\",\"pool_channels\":%d}\n", pool_channels);
      } else if (poll(&pp, 1, 2000) != 1) {
        printf("{\"error\":\"timeout\"}\n");
      } else {
        union {
          char buf[CMSG_SPACE(sizeof(int))];
          struct cmsghdr align;
        } u;
        struct iovec iov = {&pm, sizeof pm};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
        ssize_t n = recvmsg(pool_fd, &mh, MSG_CMSG_CLOEXEC);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        if (c && c->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(c), sizeof fd);
        /* as the preload does for a blocking application's socket */
        if (fd >= 0 && (pm.m.status & SF_POOLED_NONBLOCK)) fcntl(fd, F_SETFL, 0);
        struct sf_hdr out = pm.h;
        out.dst_vip = ipparse(dst);
        out.dst_port = htons((uint16_t)atoi(port));
        out.src_port = pm.m.port_a;
        if (!strcmp(how, "forge")) out.src_vip = ipparse("10.99.0.3");
        if (!strcmp(how, "lowport")) out.src_port = htons(22);
        if (!strcmp(how, "unsigned")) {
          out.type = SF_HDR_CONNECT;
          out.key_id = 0;
          memset(out.tag, 0, sizeof out.tag);
        }
        ssize_t w = fd >= 0 ? send(fd, &out, sizeof out, MSG_NOSIGNAL) : -1;
        /* with twice: a second pooled socket sends the same header again (a replay) */
        int fd2 = -1, err2 = 0;
        if (!strcmp(how, "twice") && poll(&pp, 1, 2000) == 1) {
          struct sf_pooled pm2;
          struct iovec iov2 = {&pm2, sizeof pm2};
          struct msghdr mh2 = {.msg_iov = &iov2, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
          if (recvmsg(pool_fd, &mh2, MSG_CMSG_CLOEXEC) > 0 && (c = CMSG_FIRSTHDR(&mh2)) && c->cmsg_type == SCM_RIGHTS)
            memcpy(&fd2, CMSG_DATA(c), sizeof fd2);
          if (fd2 >= 0 && (pm2.m.status & SF_POOLED_NONBLOCK)) fcntl(fd2, F_SETFL, 0);
          if (fd2 >= 0 && send(fd2, &out, sizeof out, MSG_NOSIGNAL) < 0) err2 = errno;
        }
        struct sf_msg took = {.type = SF_POOL_TOOK, .version = SF_MSG_VERSION, .a = fd2 >= 0 ? 2 : 1};
        send(pool_fd, &took, sizeof took, MSG_NOSIGNAL);
        char extra[224];
        snprintf(
            extra, sizeof extra,
            ",\"len\":%zd,\"sent\":%zd,\"key_id\":%u,\"hdr_type\":%u,\"pool_channels\":%d,\"h2\":%d,\"err2\":\"%s\"", n,
            w, ntohl(pm.h.key_id), pm.h.type, pool_channels, fd2, err2 ? strerrorname_np(err2) : "");
        print_msg(&pm.m, fd, extra);
      }
    } else if (!strcmp(cmd, "steer")) {
      struct stat st;
      if (fstat(atoi(x), &st) < 0) {
        printf("{\"error\":\"fstat: %s\"}\n", strerror(errno));
        continue;
      }
      m.type = SF_STEER_SOCKET;
      m.a = st.st_ino;
      request(&m, -1, NULL);
    } else if (!strcmp(cmd, "saccept")) {
      struct pollfd p = {atoi(x), POLLIN, 0};
      if (poll(&p, 1, atoi(y)) != 1) {
        printf("{\"error\":\"timeout\"}\n");
        continue;
      }
      int fd = accept4(atoi(x), NULL, NULL, SOCK_CLOEXEC);
      struct sf_hdr h;
      size_t got = 0;
      struct pollfd q = {fd, POLLIN, 0};
      while (fd >= 0 && got < sizeof h && poll(&q, 1, 1000) == 1) {
        ssize_t n = recv(fd, (char *)&h + got, sizeof h - got, 0);
        if (n <= 0) break;
        got += (size_t)n;
      }
      char a[16], b[16];
      if (got != sizeof h) memset(&h, 0, sizeof h);
      printf(
          "{\"h\":%d,\"got\":%zu,\"hdr_type\":%u,\"src_vip\":\"%s\",\"src_port\":%u,\"dst_vip\":\"%s\",\"dst_port\":%u}"
          "\n",
          fd, got, h.type, ipstr(h.src_vip, a), ntohs(h.src_port), ipstr(h.dst_vip, b), ntohs(h.dst_port));
    } else if (!strcmp(cmd, "tfo")) {
      uint8_t buf[64];
      size_t len = strlen(z) / 2;
      if (len > sizeof buf) len = sizeof buf;
      for (size_t i = 0; i < len; i++) sscanf(z + 2 * i, "%2hhx", &buf[i]);
      char *colon = strchr(y, ':');
      if (colon) *colon = 0;
      int one = 1;
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      struct sockaddr_in la = {.sin_family = AF_INET, .sin_addr.s_addr = ipparse(x)};
      struct sockaddr_in pa = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)(colon ? atoi(colon + 1) : 0)),
                               .sin_addr.s_addr = ipparse(y)};
      ssize_t n = -1;
      if (fd >= 0 && setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof one) == 0 &&
          setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_NO_COOKIE, &one, sizeof one) == 0 &&
          bind(fd, (struct sockaddr *)&la, sizeof la) == 0 && connect(fd, (struct sockaddr *)&pa, sizeof pa) == 0)
        n = send(fd, buf, len, MSG_NOSIGNAL);
      /* the socket blocks: send() returns once the handshake is done, or fails if it was refused */
      if (n < 0) {
        printf("{\"error\":\"%s\"}\n", strerrorname_np(errno));
        if (fd >= 0) close(fd);
      } else {
        printf("{\"h\":%d,\"sent\":%zd}\n", fd, n);
      }
    } else if (!strcmp(cmd, "quit")) {
      break;
    } else {
      printf("{\"error\":\"unknown command %s\"}\n", cmd);
    }
  }
  return 0;
}
