/* echo_server PORT [BIND_IP]: an epoll echo server, with or without the preload.
 * Prints "listening IP:PORT" once it accepts connections; runs until killed. */
#include "fixture.h"

#define MAXEV 64

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: echo_server PORT [BIND_IP]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);
  struct in_addr ip = {INADDR_ANY};
  if (argc > 2 && inet_pton(AF_INET, argv[2], &ip) != 1) {
    fprintf(stderr, "echo_server: bad address %s\n", argv[2]);
    return 2;
  }
  int lfd = fx_listen(ip.s_addr, (uint16_t)atoi(argv[1]), SOCK_NONBLOCK | SOCK_CLOEXEC);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {EPOLLIN, {.fd = lfd}};
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) != 0) {
    perror("echo_server: epoll");
    return 1;
  }
  struct sockaddr_in sa = fx_sockname(lfd);
  printf("listening %s\n", fx_fmt(&sa));
  char buf[16384];
  for (;;) {
    struct epoll_event evs[MAXEV];
    int n = epoll_wait(ep, evs, MAXEV, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("echo_server: epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == lfd) {
        for (;;) {
          int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) perror("echo_server: accept4");
            break;
          }
          int one = 1;
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct epoll_event cev = {EPOLLIN | EPOLLRDHUP, {.fd = c}};
          if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev) != 0) close(c);
        }
        continue;
      }
      for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r > 0) {
          /* small echo payloads: a blocking-style loop on a non-blocking socket is fine */
          for (ssize_t off = 0; off < r;) {
            ssize_t w = write(fd, buf + off, (size_t)(r - off));
            if (w > 0) {
              off += w;
            } else if (w < 0 && errno == EAGAIN) {
              fx_wait_fd(fd, POLLOUT, 1000);
            } else {
              r = 0;
              break;
            }
          }
          if (r > 0) continue;
        }
        if (r < 0 && errno == EAGAIN) break;
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
        close(fd);
        break;
      }
    }
  }
}
