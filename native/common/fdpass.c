/* SCM_RIGHTS control messages, built and parsed in one place (fdpass.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fdpass.h"

#include <errno.h>
#include <string.h>

void sf_fdpass_attach(struct msghdr *mh, void *cbuf, const int *fds, int nfds) {
  if (nfds <= 0) {
    mh->msg_control = NULL;
    mh->msg_controllen = 0;
    return;
  }
  memset(cbuf, 0, SF_FDPASS_SPACE(nfds));
  mh->msg_control = cbuf;
  mh->msg_controllen = SF_FDPASS_SPACE(nfds);
  struct cmsghdr *c = CMSG_FIRSTHDR(mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
  memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
}

ssize_t sf_fdpass_send(int sock, const struct iovec *iov, int iovcnt, const int *fds, int nfds, int flags) {
  if (nfds < 0 || nfds > SF_FDPASS_MAX || iovcnt < 0) {
    errno = EINVAL;
    return -1;
  }
  union {
    char b[SF_FDPASS_SPACE(SF_FDPASS_MAX)];
    struct cmsghdr align;
  } u;
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = (struct iovec *)iov;
  mh.msg_iovlen = (size_t)iovcnt;
  sf_fdpass_attach(&mh, u.b, fds, nfds);
  return sendmsg(sock, &mh, flags);
}

ssize_t sf_fdpass_recv(int sock, void *buf, size_t len, int flags, int *fds, int max, int *nfds, int *msg_flags,
                       int (*close_fn)(int)) {
  union {
    char b[SF_FDPASS_SPACE(SF_FDPASS_MAX)];
    struct cmsghdr align;
  } u;
  struct iovec iov = {buf, len};
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = u.b;
  mh.msg_controllen = sizeof u.b;
  *nfds = 0;
  ssize_t n = recvmsg(sock, &mh, flags);
  if (msg_flags) *msg_flags = n < 0 ? 0 : mh.msg_flags;
  if (n < 0) return n;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t cnt = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < cnt; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      if (*nfds < max)
        fds[(*nfds)++] = fd;
      else
        close_fn(fd);
    }
  }
  return n;
}
