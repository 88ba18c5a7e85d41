// SPDX-License-Identifier: Apache-2.0
/* The steered listeners' guard (BPF_PROG_TYPE_CGROUP_SOCKOPT, setsockopt).
 *
 * A steered listener is a host socket in the reserved port's SO_REUSEPORT group, held by an
 * application inside a container. Any member of a reuseport group may replace the group's
 * program: SO_ATTACH_REUSEPORT_CBPF needs no privilege, and SO_DETACH_REUSEPORT_BPF falls back to
 * picking a member by hash. Either would let one container receive connections meant for another
 * (or for the broker). The broker marks each steered socket it makes in `guarded` (socket local
 * storage) and attaches this program to the root of the cgroup v2 hierarchy, where it sees every
 * setsockopt() on the host: on a marked socket those three options fail with EPERM; everything
 * else passes untouched.
 *
 * Build and embedding as for steer.bpf.c; loaded by native/addon/guard.cc.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>


char LICENSE[] SEC("license") = "Apache-2.0";

#define SOL_SOCKET_ 1
#define SO_ATTACH_REUSEPORT_CBPF_ 51
#define SO_ATTACH_REUSEPORT_EBPF_ 52
#define SO_DETACH_REUSEPORT_BPF_ 68
#define PAGE_SIZE_ 4096

struct {
  __uint(type, BPF_MAP_TYPE_SK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, __u32);
} guarded SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} denied SEC(".maps");

SEC("cgroup/setsockopt")
int sf_guard(struct bpf_sockopt *ctx) {
  /* Only the first page of a longer value is visible here; 0 tells the kernel to use the
     caller's own buffer, as if no program ran. */
  if (ctx->optlen > PAGE_SIZE_) ctx->optlen = 0;
  if (ctx->level != SOL_SOCKET_) return 1;
  int o = ctx->optname;
  if (o != SO_ATTACH_REUSEPORT_CBPF_ && o != SO_ATTACH_REUSEPORT_EBPF_ && o != SO_DETACH_REUSEPORT_BPF_) return 1;
  struct bpf_sock *sk = ctx->sk;
  if (!sk || !bpf_sk_storage_get(&guarded, sk, 0, 0)) return 1;
  __u32 zero = 0;
  __u64 *n = bpf_map_lookup_elem(&denied, &zero);
  if (n) *n += 1;
  return 0; /* EPERM */
}
