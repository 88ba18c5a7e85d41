/* fclose() of a stdio stream over a SlimFast socket (fdopen) closes the fd inside libc, where
 * close() is not interposed. The table must forget the socket all the same: an accepted
 * connection's entry carries no inode to catch a stale one later, so a file opened on the same
 * number afterwards must read as what it is (getsockname: ENOTSOCK), not as the old connection. */
#include "fixture.h"

#include <fcntl.h>
#include <stdio.h>

int main(int argc, char **argv) {
  fx_init(argc, argv);
  uint32_t self = fx_self_ip();
  int lfd = fx_listen(INADDR_ANY, 0, 0);
  fx_expect_slimfast(lfd, "listener");
  struct sockaddr_in dst = fx_mkaddr(self, fx_port(lfd));
  for (int round = 0; round < 2; round++) {
    int c = fx_connect(&dst);
    int a = (int)CHECK_SYS(accept(lfd, NULL, NULL));
    int victim = round == 0 ? a : c; /* the accepted end, then the connecting end */
    struct sockaddr_in before = fx_sockname(victim);
    CHECK(before.sin_port != 0);
    FILE *f = fdopen(victim, "r+");
    CHECK(f != NULL);
    CHECK(fclose(f) == 0);
    int n = (int)CHECK_SYS(open("/dev/null", O_RDONLY));
    CHECKF(n == victim, "open() got fd %d, not the closed %d (test assumes lowest-free numbering)", n, victim);
    struct sockaddr_in sa;
    socklen_t l = sizeof sa;
    errno = 0;
    int r = getsockname(n, (struct sockaddr *)&sa, &l);
    CHECKF(r == -1 && errno == ENOTSOCK, "round %d: getsockname on a file at a closed socket's number: r=%d %s", round,
           r, strerror(errno));
    close(n);
    close(round == 0 ? c : a);
  }
  close(lfd);
  fx_pass();
}
