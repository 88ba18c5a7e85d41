/* dropuser_echo UID GID PORT: starts as root, switches to UID:GID (setgroups, setgid, setuid, as
 * servers that drop privileges do), then listens on PORT and echoes every connection (a thread
 * each). Prints "listening uid=U gid=G" once listen() returned. For the non-root end-to-end tests. */
#define _GNU_SOURCE
#include <grp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static void *serve(void *arg) {
  int c = (int)(long)arg;
  char buf[4096];
  ssize_t n;
  while ((n = read(c, buf, sizeof buf)) > 0)
    if (write(c, buf, (size_t)n) != n) break;
  close(c);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s UID GID PORT\n", argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  uid_t uid = (uid_t)atoi(argv[1]);
  gid_t gid = (gid_t)atoi(argv[2]);
  if (getuid() != 0) {
    fprintf(stderr, "dropuser_echo: must start as root (uid %d)\n", (int)getuid());
    return 2;
  }
  if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
    perror("dropuser_echo: switching user");
    return 1;
  }
  int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3]))};
  if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 1024) != 0) {
    perror("dropuser_echo: listen");
    return 1;
  }
  printf("listening uid=%d gid=%d\n", (int)getuid(), (int)getgid());
  fflush(stdout);
  for (;;) {
    int c = accept(ls, NULL, NULL);
    if (c < 0) continue;
    pthread_t t;
    if (pthread_create(&t, NULL, serve, (void *)(long)c) != 0) {
      close(c);
      continue;
    }
    pthread_detach(t);
  }
}
