/* echod: a small epoll echo server for benchmarks and the demo.  echod PORT [BIND_IP]
 * Accepts in batches, echoes whatever arrives; runs until SIGTERM. It takes data in Fast Open SYNs
 * (connrate -F) where the namespace's net.ipv4.tcp_fastopen has the server bit (2). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s PORT [BIND_IP]\n", argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
  if (inet_pton(AF_INET, argc > 2 ? argv[2] : "0.0.0.0", &a.sin_addr) != 1) {
    fprintf(stderr, "echod: bad bind address\n");
    return 2;
  }
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int fo_queue = 4096;
  setsockopt(ls, IPPROTO_TCP, TCP_FASTOPEN, &fo_queue, sizeof fo_queue);
  if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0) {
    perror("echod: bind/listen");
    return 1;
  }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  printf("listening %s\n", argv[1]);
  fflush(stdout);
  struct epoll_event evs[256];
  static char buf[65536];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return 1;
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == ls) {
        for (;;) {
          int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
        }
        continue;
      }
      for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r > 0) {
          ssize_t off = 0;
          while (off < r) {
            ssize_t w = send(fd, buf + off, r - off, MSG_NOSIGNAL);
            if (w < 0 && errno == EAGAIN) continue; /* tiny messages: the buffer drains at once */
            if (w < 0) break;
            off += w;
          }
          continue;
        }
        if (r < 0 && errno == EAGAIN) break;
        close(fd);
        break;
      }
    }
  }
}
