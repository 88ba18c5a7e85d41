/* Descriptors passed over Unix sockets (SCM_RIGHTS): one message with N of them, sent or received.
 * Shared by the preload (native/preload), the seccomp keeper (native/keeper) and the broker's addon
 * (native/addon).
 *
 * sendmsg() and recvmsg() are libc's (the preload does not interpose them). close() is never
 * called by name: a receive closes the descriptors its caller has no room for with the close
 * function the caller passes, so that the preload's copy uses libc's (REAL(close)), not the
 * preload's own interposed close().
 */
#ifndef SF_FDPASS_H
#define SF_FDPASS_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The most descriptors one message carries: a send refuses more (EINVAL); a receive has room for
   this many (the kernel closes any beyond and sets MSG_CTRUNC). */
#define SF_FDPASS_MAX 8
/* Control data room for n descriptors (a buffer aligned like struct cmsghdr). */
#define SF_FDPASS_SPACE(n) CMSG_SPACE(sizeof(int) * (size_t)(n))

/* mh's control data: one SCM_RIGHTS message with fds[0..nfds), written into cbuf (at least
   SF_FDPASS_SPACE(nfds) bytes, aligned like struct cmsghdr); no control data when nfds is 0. */
void sf_fdpass_attach(struct msghdr *mh, void *cbuf, const int *fds, int nfds);

/* One sendmsg() of iov[0..iovcnt) with fds[0..nfds) (0 <= nfds <= SF_FDPASS_MAX, else -1 and
   EINVAL). flags as for sendmsg (MSG_NOSIGNAL, MSG_DONTWAIT). Returns what sendmsg returned; an
   EINTR is the caller's to retry. */
ssize_t sf_fdpass_send(int sock, const struct iovec *iov, int iovcnt, const int *fds, int nfds, int flags);

/* One recvmsg() of up to len bytes into buf. The descriptors that came with the message go into
   fds, the first max of them (*nfds: how many); the others are closed with close_fn. flags as for
   recvmsg: MSG_CMSG_CLOEXEC unless the descriptors are to survive an exec (accept4 without
   SOCK_CLOEXEC), MSG_DONTWAIT. *msg_flags (may be NULL): the message's flags (MSG_TRUNC: the data
   did not fit; MSG_CTRUNC: descriptors were lost, e.g. to EMFILE), 0 when recvmsg failed.
   Returns what recvmsg returned (*nfds 0 on failure). */
ssize_t sf_fdpass_recv(int sock, void *buf, size_t len, int flags, int *fds, int max, int *nfds, int *msg_flags,
                       int (*close_fn)(int));

#ifdef __cplusplus
}
#endif

#endif
