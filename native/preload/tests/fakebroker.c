/* fakebroker: a minimal single-host stand-in for the SlimFast broker, for testing the preload
 * library without the daemon. One poll loop; speaks docs/protocol.md section 1:
 *   HELLO          -> HELLO_OK (vip, net/prefix from the command line)
 *   LISTEN         -> keeps the app's real socket (accepts ordinary clients on it too), answers with
 *                     a channel (socketpair end)
 *   CONNECT        -> known listener: a loopback TCP pair, client end back, server end pushed down
 *                     the listener's channel as SF_ACCEPTED; otherwise FALLBACK
 *   QUERY_CHANNEL  -> by the inode of the channel end it handed out
 * Usage: fakebroker --socket PATH --vip IP [--net CIDR] [--hang] [-v]
 *   --hang: answer HELLO, then never answer anything (a hung broker).
 */
#include "fixture.h"

#include <sys/stat.h>
#include <sys/un.h>

#include "slimfast_wire.h"

#define MAXC 256
#define MAXL 64

static uint32_t vip, net;
static int prefix = 24, verbose, hang;
static int clients[MAXC], nclients;
struct listener {
  uint32_t ip;
  uint16_t port;
  int bend, real;
  uint64_t ino;
};
static struct listener ls[MAXL];
static int nls;
static int factory; /* 127.0.0.1 listener used to make TCP pairs */
static struct sockaddr_in factory_addr;
static uint16_t next_port = 40000;

#define LOG(...)                       \
  do {                                 \
    if (verbose) {                     \
      fprintf(stderr, "fakebroker: "); \
      fprintf(stderr, __VA_ARGS__);    \
      fprintf(stderr, "\n");           \
    }                                  \
  } while (0)

static int send_fd_msg(int s, struct sf_msg *m, int fd) {
  struct iovec iov = {m, sizeof *m};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr al;
  } u;
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  if (fd >= 0) {
    memset(&u, 0, sizeof u);
    mh.msg_control = u.buf;
    mh.msg_controllen = sizeof u.buf;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
  }
  return sendmsg(s, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)sizeof *m ? 0 : -1;
}

static int recv_fd_msg(int s, struct sf_msg *m, int *fd) {
  struct iovec iov = {m, sizeof *m};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr al;
  } u;
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = u.buf;
  mh.msg_controllen = sizeof u.buf;
  *fd = -1;
  ssize_t n = recvmsg(s, &mh, MSG_CMSG_CLOEXEC);
  if (n <= 0) return -1;
  struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
  if (cm && cm->cmsg_type == SCM_RIGHTS) memcpy(fd, CMSG_DATA(cm), sizeof(int));
  return n == (ssize_t)sizeof *m ? 0 : -1;
}

static struct listener *find_listener(uint32_t ip, uint16_t port) {
  for (int i = 0; i < nls; i++)
    if (ls[i].port == port && (ls[i].ip == ip || (ls[i].ip == 0 && ip == vip))) return &ls[i];
  return NULL;
}

static void drop_listener(int i) {
  LOG("listener %s dropped", fx_fmt(&(struct sockaddr_in){AF_INET, ls[i].port, {ls[i].ip}, {0}}));
  close(ls[i].bend);
  close(ls[i].real);
  ls[i] = ls[--nls];
}

static void push_accepted(struct listener *l, int fd, uint32_t lip, uint16_t lport, uint32_t pip, uint16_t pport) {
  struct sf_msg m;
  memset(&m, 0, sizeof m);
  m.type = SF_ACCEPTED;
  m.version = SF_MSG_VERSION;
  m.vip_a = lip;
  m.port_a = lport;
  m.vip_b = pip;
  m.port_b = pport;
  if (send_fd_msg(l->bend, &m, fd) != 0) LOG("push to channel failed: %s", strerror(errno));
}

static void v4_of(const struct sockaddr_storage *ss, uint32_t *ip, uint16_t *port) {
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
    *ip = s4->sin_addr.s_addr;
    *port = s4->sin_port;
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
    if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) memcpy(ip, &s6->sin6_addr.s6_addr[12], 4);
    *port = s6->sin6_port;
  }
}

static void handle(int c) {
  struct sf_msg m;
  int fd;
  if (recv_fd_msg(c, &m, &fd) != 0) {
    for (int i = 0; i < nclients; i++)
      if (clients[i] == c) clients[i] = clients[--nclients];
    close(c);
    if (fd >= 0) close(fd);
    return;
  }
  struct sf_msg r;
  memset(&r, 0, sizeof r);
  r.version = SF_MSG_VERSION;
  r.seq = m.seq;
  if (m.type == SF_HELLO) {
    r.type = SF_HELLO_OK;
    r.vip_a = vip;
    r.vip_b = net;
    r.a = (uint64_t)prefix;
    r.port_b = htons(SF_FEAT_LISTEN_CLOSED);
    send_fd_msg(c, &r, -1);
    return;
  }
  if (hang) {
    LOG("hanging on request type %u", m.type);
    if (fd >= 0) close(fd);
    return;
  }
  if (m.type == SF_CONNECT) {
    r.type = SF_CONNECT_OK;
    struct listener *l = find_listener(m.vip_b, m.port_b);
    if (!l) {
      r.status = SF_STATUS_FALLBACK;
      send_fd_msg(c, &r, -1);
      return;
    }
    int a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (a < 0 || connect(a, (struct sockaddr *)&factory_addr, sizeof factory_addr) != 0) {
      r.status = errno ? errno : EIO;
      send_fd_msg(c, &r, -1);
      if (a >= 0) close(a);
      return;
    }
    int b = accept4(factory, NULL, NULL, SOCK_CLOEXEC);
    uint16_t sport = htons(next_port++);
    if (next_port > 60000) next_port = 40000;
    r.vip_a = vip;
    r.port_a = sport;
    r.vip_b = m.vip_b;
    r.port_b = m.port_b;
    /* the broker's copies are non-blocking, as a real broker's would be */
    fcntl(a, F_SETFL, O_NONBLOCK);
    fcntl(b, F_SETFL, O_NONBLOCK);
    push_accepted(l, b, m.vip_b, m.port_b, vip, sport);
    send_fd_msg(c, &r, a);
    LOG("connect %s: paired", fx_fmt(&(struct sockaddr_in){AF_INET, m.port_b, {m.vip_b}, {0}}));
    close(a);
    close(b);
    return;
  }
  if (m.type == SF_LISTEN) {
    r.type = SF_LISTEN_OK;
    int sv[2];
    if (fd < 0 || nls == MAXL || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
      if (fd >= 0) close(fd);
      r.status = SF_STATUS_FALLBACK;
      send_fd_msg(c, &r, -1);
      return;
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    struct stat st;
    fstat(sv[1], &st);
    ls[nls++] = (struct listener){m.vip_a, m.port_a, sv[0], fd, (uint64_t)st.st_ino};
    r.vip_a = m.vip_a;
    r.port_a = m.port_a;
    send_fd_msg(c, &r, sv[1]);
    close(sv[1]);
    LOG("listen %s", fx_fmt(&(struct sockaddr_in){AF_INET, m.port_a, {m.vip_a}, {0}}));
    return;
  }
  if (m.type == SF_LISTEN_CLOSED) { /* as the broker: drop a channel nobody holds any more */
    r.type = SF_LISTEN_CLOSED_OK;
    for (int i = 0; i < nls; i++) {
      struct pollfd p = {ls[i].bend, POLLIN, 0};
      if (ls[i].ino == m.a && poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR))) {
        drop_listener(i);
        break;
      }
    }
    send_fd_msg(c, &r, -1);
    return;
  }
  if (m.type == SF_QUERY_CHANNEL) {
    r.type = SF_CHANNEL_INFO;
    r.status = ENOENT;
    for (int i = 0; i < nls; i++)
      if (ls[i].ino == m.a) {
        r.status = 0;
        r.vip_a = ls[i].ip;
        r.port_a = ls[i].port;
      }
    send_fd_msg(c, &r, -1);
    return;
  }
  if (fd >= 0) close(fd);
}

int main(int argc, char **argv) {
  const char *path = NULL, *cidr = NULL;
  struct in_addr a;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--socket") && i + 1 < argc)
      path = argv[++i];
    else if (!strcmp(argv[i], "--vip") && i + 1 < argc && inet_pton(AF_INET, argv[++i], &a) == 1)
      vip = a.s_addr;
    else if (!strcmp(argv[i], "--net") && i + 1 < argc)
      cidr = argv[++i];
    else if (!strcmp(argv[i], "--hang"))
      hang = 1;
    else if (!strcmp(argv[i], "-v"))
      verbose = 1;
    else {
      fprintf(stderr, "usage: fakebroker --socket PATH --vip IP [--net CIDR] [--hang] [-v]\n");
      return 2;
    }
  }
  if (!path || !vip) {
    fprintf(stderr, "fakebroker: --socket and --vip are required\n");
    return 2;
  }
  net = vip;
  prefix = 32;
  if (cidr) {
    char buf[64];
    snprintf(buf, sizeof buf, "%s", cidr);
    char *slash = strchr(buf, '/');
    if (slash) {
      *slash = 0;
      prefix = atoi(slash + 1);
    }
    if (inet_pton(AF_INET, buf, &a) == 1) net = a.s_addr;
  }
  signal(SIGPIPE, SIG_IGN);

  factory = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  factory_addr = fx_mkaddr(htonl(INADDR_LOOPBACK), 0);
  socklen_t fl = sizeof factory_addr;
  if (factory < 0 || bind(factory, (struct sockaddr *)&factory_addr, sizeof factory_addr) != 0 ||
      listen(factory, 1024) != 0 || getsockname(factory, (struct sockaddr *)&factory_addr, &fl) != 0) {
    perror("fakebroker: factory");
    return 1;
  }

  char tmp[100];
  if (strlen(path) + 5 > sizeof tmp) {
    fprintf(stderr, "fakebroker: socket path too long\n");
    return 2;
  }
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  unlink(tmp);
  int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  struct sockaddr_un su;
  memset(&su, 0, sizeof su);
  su.sun_family = AF_UNIX;
  snprintf(su.sun_path, sizeof su.sun_path, "%s", tmp);
  if (s < 0 || bind(s, (struct sockaddr *)&su, sizeof su) != 0 || listen(s, 128) != 0 || rename(tmp, path) != 0) {
    perror("fakebroker: socket");
    return 1;
  }
  LOG("serving %s", path);

  for (;;) {
    struct pollfd p[1 + MAXC + 2 * MAXL];
    int n = 0;
    p[n++] = (struct pollfd){s, POLLIN, 0};
    for (int i = 0; i < nclients; i++) p[n++] = (struct pollfd){clients[i], POLLIN, 0};
    int lbase = n;
    for (int i = 0; i < nls; i++) {
      p[n++] = (struct pollfd){ls[i].bend, 0, 0};
      p[n++] = (struct pollfd){ls[i].real, POLLIN, 0};
    }
    int nc = nclients, nl = nls;
    if (poll(p, (nfds_t)n, -1) < 0) {
      if (errno == EINTR) continue;
      perror("poll");
      return 1;
    }
    if (p[0].revents & POLLIN) {
      int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
      if (c >= 0 && nclients < MAXC)
        clients[nclients++] = c;
      else if (c >= 0)
        close(c);
    }
    for (int i = nl - 1; i >= 0; i--) {
      struct pollfd *b = &p[lbase + 2 * i], *r = &p[lbase + 2 * i + 1];
      if (b->revents & (POLLHUP | POLLERR)) {
        drop_listener(i);
        continue;
      }
      if (r->revents & POLLIN) {
        int x = accept4(ls[i].real, NULL, NULL, SOCK_CLOEXEC);
        if (x >= 0) { /* the real socket may be a dual-stack AF_INET6 one: v4-mapped addresses */
          struct sockaddr_storage la, pa;
          socklen_t l1 = sizeof la, l2 = sizeof pa;
          uint32_t lip = 0, pip = 0;
          uint16_t lport = 0, pport = 0;
          if (getsockname(x, (struct sockaddr *)&la, &l1) == 0) v4_of(&la, &lip, &lport);
          if (getpeername(x, (struct sockaddr *)&pa, &l2) == 0) v4_of(&pa, &pip, &pport);
          push_accepted(&ls[i], x, lip, lport, pip, pport);
          close(x);
        }
      }
    }
    int fds[MAXC];
    for (int i = 0; i < nc; i++) fds[i] = p[1 + i].revents ? p[1 + i].fd : -1;
    for (int i = 0; i < nc; i++)
      if (fds[i] >= 0) handle(fds[i]);
  }
}
