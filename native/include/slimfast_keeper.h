/* The seccomp keeper's link with the broker (native/keeper/keeper.c, native/addon/seccomp_keeper.cc).
 *
 * runc sends a container's seccomp notify fd once. Whoever holds the last copy of that fd is the
 * filter's listener: when it closes (a broker dies), the kernel fails every notified call of those
 * processes with ENOSYS from then on. The keeper is a small process of its own that owns
 * STATE_DIR/seccomp.sock (runc's listenerPath), keeps every notify fd, and hands them to the broker
 * over STATE_DIR/seccomp-keeper.sock (SOCK_SEQPACKET, root only), again to each broker that
 * attaches after a restart. While no broker is attached it answers notifications itself
 * (SECCOMP_USER_NOTIF_FLAG_CONTINUE: the overlay path), except accept() on a steered listener,
 * which it holds for the next broker.
 *
 * The keeper also holds the broker's confinement guard (native/bpf/guard.bpf.c: its `guarded`
 * map and its program links), so that the host sockets containers hold stay confined while no
 * broker runs, and the next broker keeps the same marks.
 *
 * Every message is one datagram: struct sfk_msg, then for SFK_TARGET the container state JSON as
 * runc sent it. Descriptors travel as SCM_RIGHTS.
 */
#ifndef SLIMFAST_KEEPER_H
#define SLIMFAST_KEEPER_H

#include <stdint.h>

#define SFK_MAGIC 0x53464b31u /* "SFK1" */
#define SFK_SLOTS 1024        /* in-flight table entries */
#define SFK_NOTIF_MAX 128     /* room for struct seccomp_notif (80 bytes on 6.x) */
#define SFK_STATE_MAX (1u << 20)
#define SFK_F_V6 1u     /* the program listens on an AF_INET6 dual-stack socket (addresses ::ffff:a.b.c.d) */
#define SFK_GUARD_FDS 8 /* at most: the guard's map and its program links */

enum sfk_type {
  /* keeper -> broker, first: the in-flight table (a memfd of SFK_SLOTS struct sfk_slot). */
  SFK_HELLO = 1,
  /* keeper -> broker: one notify fd; idx names it from now on; the state JSON follows the header. */
  SFK_TARGET = 2,
  /* broker -> keeper: a steered listener the broker put on fd `tfd` of process `tgid` (socket
   * inode `ino`, virtual vip:port), with the container-side socket that serves its plain clients
   * attached. keeper -> broker, after SFK_TARGET on a new attach: the same, to take it over. */
  SFK_STEERED = 3,
  /* broker -> keeper: that listener is gone (idx, ino): the keeper closes its socket. */
  SFK_UNSTEERED = 4,
  /* keeper -> broker: a notification the keeper holds (a blocking accept() on a steered listener,
   * or one the previous broker had in flight); struct seccomp_notif follows the header. */
  SFK_HELD = 5,
  /* keeper -> broker: everything held has been sent (the broker may answer the targets' leftovers). */
  SFK_READY = 6,
  /* broker -> keeper: its confinement guard, `len` descriptors: the `guarded` map, then the
   * program links. The keeper holds them (dropping any set it held before) until SFK_GUARD_DROP
   * or its exit, and does not exit by itself while it holds them. keeper -> broker, first thing
   * on attach (before SFK_HELLO) when it holds one: the same, for the new broker to keep the map
   * and put its programs into the links. */
  SFK_GUARD = 7,
  /* broker -> keeper: let the guard go (a broker that stops with no container registered). */
  SFK_GUARD_DROP = 8,
};

struct sfk_msg {
  uint32_t magic;
  uint16_t type;
  uint16_t len; /* bytes after the header for SFK_HELD; 0 otherwise (SFK_TARGET: the datagram's rest) */
  uint32_t idx; /* the notify fd's number with the keeper */
  uint32_t tgid;
  int32_t tfd;
  uint32_t vip; /* host order */
  uint16_t port;
  uint16_t flags; /* SFK_STEERED: SFK_F_V6 */
  uint32_t pad2;
  uint64_t ino;
};

/* One in-flight notification, written by the broker when it receives it and cleared when it has
 * answered it. If the broker dies, the keeper answers (or holds) what is left. */
struct sfk_slot {
  volatile uint32_t used; /* 1: notif is a notification of target idx, not yet answered */
  uint32_t idx;
  uint64_t pad;
  unsigned char notif[SFK_NOTIF_MAX];
};

#endif
