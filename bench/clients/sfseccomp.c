/*
 * sfseccomp SOCKET CONTAINER-ID PROGRAM [ARGS...]
 *
 * Puts PROGRAM on the broker's seccomp agent the way slimfast-runc's seccomp modifier and runc do,
 * for a network-namespace container registered with `slimfast container add` (the benchmark's):
 * installs a seccomp filter that notifies connect, getsockname and getpeername (SCMP_ACT_NOTIFY;
 * every other call, and every call of another architecture's ABI, is allowed), sends the notify fd
 * to SOCKET (the broker's STATE_DIR/seccomp.sock) with the state JSON runc sends
 * ({"ociVersion", "fds": ["seccompFd"], "pid", "metadata": CONTAINER-ID, "state": {...}}, the fd as
 * SCM_RIGHTS), then execs PROGRAM. Plain BPF, no libseccomp.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#if defined(__x86_64__)
#define SF_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SF_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "sfseccomp: unsupported architecture"
#endif

#ifndef SECCOMP_FILTER_FLAG_NEW_LISTENER
#define SECCOMP_FILTER_FLAG_NEW_LISTENER (1UL << 3)
#endif
#ifndef SECCOMP_RET_USER_NOTIF
#define SECCOMP_RET_USER_NOTIF 0x7fc00000U
#endif

static int die(const char *what) {
  fprintf(stderr, "sfseccomp: %s: %s\n", what, strerror(errno));
  return 127;
}

static int install_filter(void) {
  struct sock_filter f[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SF_AUDIT_ARCH, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW), /* another ABI: not ours */
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
#if defined(__x86_64__)
    /* x32 calls carry the x86_64 arch with bit 30 set in nr: leave them alone */
    BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000U, 4, 0),
#else
    BPF_JUMP(BPF_JMP | BPF_JA, 0, 0, 0),
#endif
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_connect, 4, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_getsockname, 3, 0),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_getpeername, 2, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW), /* padding for the x32 jump */
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
  };
  struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
  return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
}

/* A JSON string body: the id is a plain container id, but escape what would break the document. */
static void json_str(char *out, size_t cap, const char *s) {
  size_t n = 0;
  for (; *s && n + 7 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      out[n++] = '\\';
      out[n++] = (char)c;
    } else if (c < 0x20)
      n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
    else
      out[n++] = (char)c;
  }
  out[n] = 0;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: sfseccomp SOCKET CONTAINER-ID PROGRAM [ARGS...]\n");
    return 2;
  }
  const char *sock_path = argv[1];
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(sock_path) >= sizeof sa.sun_path) {
    fprintf(stderr, "sfseccomp: socket path too long: %s\n", sock_path);
    return 2;
  }
  strcpy(sa.sun_path, sock_path);
  /* Connect first: the filter then never sees this connect. */
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return die("socket");
  if (connect(s, (struct sockaddr *)&sa, sizeof sa) != 0) return die(sock_path);

  int nfd = install_filter();
  if (nfd < 0) return die("seccomp(SECCOMP_SET_MODE_FILTER, NEW_LISTENER)");

  char id[512], state[2048];
  json_str(id, sizeof id, argv[2]);
  int len =
      snprintf(state, sizeof state,
               "{\"ociVersion\":\"1.0.2\",\"fds\":[\"seccompFd\"],\"pid\":%d,\"metadata\":\"%s\","
               "\"state\":{\"ociVersion\":\"1.0.2\",\"id\":\"%s\",\"status\":\"creating\",\"pid\":%d,\"bundle\":\"\"}}",
               (int)getpid(), id, id, (int)getpid());
  if (len <= 0 || (size_t)len >= sizeof state) {
    fprintf(stderr, "sfseccomp: container id too long\n");
    return 2;
  }
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  memset(&u, 0, sizeof u);
  struct iovec iov = {.iov_base = state, .iov_len = (size_t)len};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf};
  struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &nfd, sizeof(int));
  ssize_t n;
  do n = sendmsg(s, &mh, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n != len) return die("sending the notify fd");
  /* Like runc: the agent holds the fd now, the program does not get it. */
  close(nfd);
  close(s);
  execvp(argv[3], argv + 3);
  return die(argv[3]);
}
