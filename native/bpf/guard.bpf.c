// SPDX-License-Identifier: Apache-2.0
/* The confinement guard: host sockets the broker hands to containers cannot be re-pointed.
 *
 * Every host socket the broker lets out of its hands (cross-host and same-host connections,
 * pooled ones, steered listeners, the reserved-port connections it passes on, the loopback
 * listener whose children become same-host server ends) is marked in `guarded` (socket local
 * storage with BPF_F_CLONE: a marked listener's accepted children are marked from birth, so a
 * kernel-steered connection costs no syscall here). On a marked socket, whoever holds it
 * (container processes, processes it was passed to, raw syscalls no preload sees), these fail
 * with EPERM:
 *
 *   connect() of a socket that is not connected, and   cgroup/connect4, cgroup/connect6
 *     sendto()/sendmsg() with MSG_FASTOPEN and an
 *     address (both run the kernel's pre-connect hook)
 *   bind()                                             cgroup/bind4, cgroup/bind6
 *   SO_ATTACH_REUSEPORT_CBPF/EBPF,                     cgroup/setsockopt
 *     SO_DETACH_REUSEPORT_BPF (any member of a
 *     reuseport group could re-point the group)
 *
 * connect(AF_UNSPEC) (a disconnect) reaches no cgroup hook: it succeeds, and the socket is dead
 * for good, since the only way to use it again is a connect, a bind or a listen. A connected
 * TCP socket ignores sendto()'s address. listen() has no cgroup hook either: the kernel itself
 * refuses it on a socket that has been connected (EINVAL); the broker checks that at start with
 * a marked probe socket (guard.cc) and hands out nothing on a kernel where it is not so.
 *
 * Unmarked sockets pass untouched. The broker marks a socket after its own bind/connect/listen,
 * or, for the sockets it connects to peers, arms it when it sets IP_BIND_ADDRESS_NO_PORT (with
 * the value SF_GUARD_ARM, guard_shared.h): an armed socket gets its bind and first connect, and that
 * connect confines it, with no syscall of the guard's own on the connection path.
 * All programs are attached to the root of the cgroup v2 hierarchy, so they see every socket on
 * the host (a socket's cgroup is its creator's, here the broker's).
 *
 * Built with clang -target bpf and embedded at build time (binding.gyp, embed.mjs).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "guard_shared.h"

char LICENSE[] SEC("license") = "Apache-2.0";

#define SOL_SOCKET_ 1
#define SO_ATTACH_REUSEPORT_CBPF_ 51
#define SO_ATTACH_REUSEPORT_EBPF_ 52
#define SO_DETACH_REUSEPORT_BPF_ 68
#define PAGE_SIZE_ 4096
#define IPPROTO_IP_ 0
#define IP_BIND_ADDRESS_NO_PORT_ 24

struct {
  __uint(type, BPF_MAP_TYPE_SK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
  __type(key, int);
  __type(value, __u32);
} guarded SEC(".maps");

/* Refusals by kind (the same order as Guard::Kind in native/addon/guard.h). */
enum { D_REUSEPORT, D_CONNECT, D_BIND, D_KINDS };

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, D_KINDS);
  __type(key, __u32);
  __type(value, __u64);
} denied SEC(".maps");

static __always_inline void count(__u32 kind) {
  __u64 *n = bpf_map_lookup_elem(&denied, &kind);
  if (n) *n += 1;
}

SEC("cgroup/setsockopt")
int sf_guard(struct bpf_sockopt *ctx) {
  /* Only the first page of a longer value is visible here; 0 tells the kernel to use the
     caller's own buffer, as if no program ran. */
  if (ctx->optlen > PAGE_SIZE_) ctx->optlen = 0;
  struct bpf_sock *sk = ctx->sk;
  if (ctx->level == IPPROTO_IP_ && ctx->optname == IP_BIND_ADDRESS_NO_PORT_) {
    __u32 *val = ctx->optval;
    if (!sk || (void *)(val + 1) > ctx->optval_end || *val != SF_GUARD_ARM) return 1;
    __u32 *mark = bpf_sk_storage_get(&guarded, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
    if (!mark) return 0; /* EPERM: the broker must not use a socket it could not mark */
    if (*mark == 0) *mark = SF_GUARD_ARMED;
    return 1;
  }
  if (ctx->level != SOL_SOCKET_) return 1;
  int o = ctx->optname;
  if (o != SO_ATTACH_REUSEPORT_CBPF_ && o != SO_ATTACH_REUSEPORT_EBPF_ && o != SO_DETACH_REUSEPORT_BPF_) return 1;
  if (!sk || !bpf_sk_storage_get(&guarded, sk, 0, 0)) return 1;
  count(D_REUSEPORT);
  return 0; /* EPERM */
}

/* An armed socket gets its bind and its first connect, which confines it. (One program of each
   kind runs: a new broker replaces the programs in the links, so no two generations see a connect.) */
static __always_inline int addr_hook(struct bpf_sock_addr *ctx, __u32 kind) {
  struct bpf_sock *sk = ctx->sk;
  __u32 *mark = sk ? bpf_sk_storage_get(&guarded, sk, 0, 0) : 0;
  if (!mark) return 1;
  if (*mark == SF_GUARD_ARMED) {
    if (kind == D_CONNECT) *mark = SF_GUARD_CONFINED;
    return 1;
  }
  count(kind);
  return 0; /* EPERM */
}

SEC("cgroup/connect4")
int sf_connect4(struct bpf_sock_addr *ctx) { return addr_hook(ctx, D_CONNECT); }
SEC("cgroup/connect6")
int sf_connect6(struct bpf_sock_addr *ctx) { return addr_hook(ctx, D_CONNECT); }
SEC("cgroup/bind4")
int sf_bind4(struct bpf_sock_addr *ctx) { return addr_hook(ctx, D_BIND); }
SEC("cgroup/bind6")
int sf_bind6(struct bpf_sock_addr *ctx) { return addr_hook(ctx, D_BIND); }
