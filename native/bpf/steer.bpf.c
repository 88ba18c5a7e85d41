// SPDX-License-Identifier: Apache-2.0
/* Kernel steering of host connections (BPF_PROG_TYPE_SK_REUSEPORT).
 *
 * The broker's reserved-port listener (slot 0) and the per-application listening sockets are one
 * SO_REUSEPORT group on host IP:reserved port. Clients connect with TCP Fast Open without a
 * cookie, so the SYN carries the 48-byte sf_hdr (native/include/slimfast_wire.h). For each SYN this
 * program picks the group member: the application's socket when the header is a CONNECT or POOLED
 * header signed by the host owning the source vIP's subnet and its destination is registered,
 * otherwise slot 0, where the broker handles (or refuses) the connection as without steering.
 * If slot 0 cannot be selected either, the SYN is dropped: returning SK_PASS without a selection
 * would let the kernel pick a member by hash, i.e. possibly another application's socket.
 *
 * Two programs share the code: sf_steer (no cluster key) and sf_steer_auth, which also requires
 * the SYN to come from the host owning the source vIP's subnet and the nonce to be fresh and new,
 * and drops the SYN (a reset) when it is not. The loader loads one of them; only sf_steer_auth
 * needs bpf_ktime_get_tai_ns() (Linux 6.1).
 *
 * Build: clang -O2 -g -target bpf -ffreestanding (clang's own <stdint.h>) -I<multiarch include>.
 * The object is embedded into the addon (binding.gyp) and loaded by native/addon/steering.cc.
 */
#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "slimfast_wire.h"
#include "steer_shared.h"

char LICENSE[] SEC("license") = "Apache-2.0";

/* key_size/value_size rather than BTF types: the kernel takes no BTF for socket arrays. */
struct {
  __uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
  __uint(max_entries, SF_STEER_MAX_SLOTS);
  __uint(key_size, sizeof(__u32));
  __uint(value_size, sizeof(__u64));
} socks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, SF_STEER_MAX_DSTS);
  __type(key, struct sf_steer_dst);
  __type(value, __u32);
} dsts SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, SF_STEER_MAX_NETS);
  __uint(map_flags, BPF_F_NO_PREALLOC); /* required for LPM tries */
  __type(key, struct sf_steer_net);
  __type(value, struct sf_steer_key);
} keys SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct sf_steer_auth);
} auth SEC(".maps");

/* The loader shrinks it to one entry when sf_steer (no cluster key) is the program loaded. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, SF_STEER_MAX_SEEN);
  __type(key, struct sf_steer_seen);
  __type(value, __u32);
} seen SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, SF_ST_COUNT);
  __type(key, __u32);
  __type(value, __u64);
} stats SEC(".maps");

/* ---------- SipHash-2-4, 128-bit output, of exactly 32 bytes (4 words): native/include/siphash.h ---------- */

/* BPF has no rotate instruction; with a constant b this is three ALU ops. */
#define ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))

#define SIPROUND       \
  do {                 \
    v0 += v1;          \
    v1 = ROTL(v1, 13); \
    v1 ^= v0;          \
    v0 = ROTL(v0, 32); \
    v2 += v3;          \
    v3 = ROTL(v3, 16); \
    v3 ^= v2;          \
    v0 += v3;          \
    v3 = ROTL(v3, 21); \
    v3 ^= v0;          \
    v2 += v1;          \
    v1 = ROTL(v1, 17); \
    v1 ^= v2;          \
    v2 = ROTL(v2, 32); \
  } while (0)

/* SipHash reads its key and message as little-endian words. */
static __always_inline __u64 le64(__u64 x) {
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  return __builtin_bswap64(x);
#else
  return x;
#endif
}

static __always_inline __u64 load_le64(const __u8 *p) {
  __u64 v;
  __builtin_memcpy(&v, p, 8);
  return le64(v);
}

/* Whether tag (t0, t1) is SipHash-2-4-128 of the words m[0..3] under key[16]. Straight-line code:
   every round is unrolled, so the verifier sees no loop. */
static __always_inline int tag_ok(const __u64 m[4], const __u8 *key, __u64 t0, __u64 t1) {
  __u64 k0 = load_le64(key), k1 = load_le64(key + 8);
  __u64 v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
  __u64 v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
  v1 ^= 0xee; /* 128-bit output */
#pragma clang loop unroll(full)
  for (int i = 0; i < 4; i++) {
    v3 ^= m[i];
    SIPROUND;
    SIPROUND;
    v0 ^= m[i];
  }
  const __u64 b = 32ULL << 56; /* message length 32, no tail bytes */
  v3 ^= b;
  SIPROUND;
  SIPROUND;
  v0 ^= b;
  v2 ^= 0xee;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  /* Not constant-time, but whole 64-bit halves: no byte-by-byte prefix to learn (README). */
  if ((v0 ^ v1 ^ v2 ^ v3) != t0) return 0;
  v1 ^= 0xdd;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return (v0 ^ v1 ^ v2 ^ v3) == t1;
}

/* ---------- the program ---------- */

static __always_inline void count(__u32 i) {
  __u64 *v = bpf_map_lookup_elem(&stats, &i);
  if (v) *v += 1; /* per-CPU value, softirq context: no atomic needed */
}

union hdr_buf {
  struct sf_hdr h;
  __u64 w[SF_HDR_LEN / 8];
};

/* The auth checks' clock: CLOCK_REALTIME, as the senders' nonces. */
static __always_inline int fresh(const struct sf_steer_auth *a, __u64 nonce_be) {
  __s64 age = (__s64)(bpf_ktime_get_tai_ns() - a->tai_offset_ns - bpf_be64_to_cpu(nonce_be));
  return age <= (__s64)a->window_ns && -age <= (__s64)a->future_ns;
}

/* What classify() found besides the stat: the slot for SF_ST_STEERED; with auth on, strict is set
   and seen is the header's replay-cache key once its tag verified. */
struct verdict {
  __u32 slot;
  __u32 strict;
  struct sf_steer_seen seen;
};

static __always_inline int classify(struct sk_reuseport_md *ctx, int with_auth, struct verdict *v) {
  /* ctx->data is the TCP header: its data offset nibble says where the SYN's payload starts. */
  __u8 doff_byte;
  if (bpf_skb_load_bytes(ctx, 12, &doff_byte, 1)) return SF_ST_NO_HEADER;
  __u32 doff = (__u32)(doff_byte >> 4) * 4;
  if (doff < 20 || ctx->len < doff + SF_HDR_LEN) return SF_ST_NO_HEADER;
  union hdr_buf u;
  if (bpf_skb_load_bytes(ctx, doff, &u, sizeof u)) return SF_ST_NO_HEADER;

  /* Only signed container headers (and the broker's own doorbells, signed like CONNECT under this
     host's key) are steered; SYNC streams and anything else go to the broker.
     hdr_len must be exactly 48: the application reads exactly the fixed header. */
  if (u.h.magic != bpf_htonl(SF_HDR_MAGIC) || u.h.version != SF_HDR_VERSION || u.h.hdr_len != bpf_htons(SF_HDR_LEN) ||
      u.h.key_id != bpf_htonl(SF_KEY_HOST) ||
      (u.h.type != SF_HDR_CONNECT && u.h.type != SF_HDR_POOLED && u.h.type != SF_HDR_DOORBELL))
    return SF_ST_NOT_STEERABLE;
  /* A pooled header's source port is outside its MAC: a privileged one is the broker's to refuse. */
  if (u.h.type == SF_HDR_POOLED && bpf_ntohs(u.h.src_port) < SF_POOLED_SPORT_MIN) return SF_ST_NOT_STEERABLE;

  /* A host may only sign for its own subnet: the key comes from the source vIP. */
  struct sf_steer_net net = {.prefixlen = 32, .addr = u.h.src_vip};
  struct sf_steer_key *k = bpf_map_lookup_elem(&keys, &net);
  if (!k) return SF_ST_NO_KEY;

  const struct sf_steer_auth *a = 0;
  if (with_auth) {
    __u32 zero = 0;
    a = bpf_map_lookup_elem(&auth, &zero);
    if (a && !a->on) a = 0;
  }
  if (a) {
    v->strict = 1;
    /* ... and only from its own address: every holder of the cluster key can sign for any
       subnet, the address is what the member list vouches for. */
    __u32 saddr;
    if (ctx->eth_protocol != bpf_htons(0x0800 /* ETH_P_IP */) ||
        bpf_skb_load_bytes_relative(ctx, 12 /* iphdr.saddr */, &saddr, 4, BPF_HDR_START_NET) || saddr != k->host)
      return SF_ST_NOT_MEMBER;
  }

  /* Bytes 8..15 (dst_vip, dst_port, src_port) are word 1: zero in a POOLED header's MAC. */
  __u64 m[4] = {le64(u.w[0]), u.h.type == SF_HDR_POOLED ? 0 : le64(u.w[1]), le64(u.w[2]), le64(u.w[3])};
  __u64 t0 = le64(u.w[4]), t1 = le64(u.w[5]);
  if (!tag_ok(m, k->cur, t0, t1) && !(k->has_prev && tag_ok(m, k->prev, t0, t1))) return SF_ST_BAD_TAG;

  if (a) {
    if (!fresh(a, u.h.nonce)) return SF_ST_STALE;
    v->seen.host = k->host;
    v->seen.nonce = u.h.nonce;
  }

  struct sf_steer_dst d = {.vip = u.h.dst_vip, .port = u.h.dst_port, .pad = 0};
  __u32 *s = bpf_map_lookup_elem(&dsts, &d);
  if (!s) return SF_ST_NO_LISTENER;
  v->slot = *s;
  return SF_ST_STEERED;
}

static __always_inline int steer(struct sk_reuseport_md *ctx, int with_auth) {
  struct verdict v = {};
  int why = classify(ctx, with_auth, &v);
  if (why == SF_ST_STEERED) {
    if (v.slot != 0 && bpf_sk_select_reuseport(ctx, &socks, &v.slot, 0) == 0) {
      /* Recorded only now that it goes to the application: a header handed to slot 0 instead is
         recorded by the broker, which would otherwise take it for a replay. */
      __u32 one = 1;
      if (v.strict && bpf_map_update_elem(&seen, &v.seen, &one, BPF_NOEXIST)) {
        count(SF_ST_REPLAYED);
        return SK_DROP;
      }
      count(SF_ST_STEERED);
      return SK_PASS;
    }
    why = SF_ST_CLOSED; /* the slot is empty (its socket closed) or not in this group */
  }
  count(why);
  /* With auth a header that fails a check is refused here: the broker would only refuse it too. */
  if (v.strict && (why == SF_ST_BAD_TAG || why == SF_ST_STALE || why == SF_ST_NOT_MEMBER)) return SK_DROP;
  __u32 zero = 0;
  if (bpf_sk_select_reuseport(ctx, &socks, &zero, 0) == 0) return SK_PASS;
  count(SF_ST_DROPPED);
  return SK_DROP;
}

SEC("sk_reuseport")
int sf_steer(struct sk_reuseport_md *ctx) { return steer(ctx, 0); }

SEC("sk_reuseport")
int sf_steer_auth(struct sk_reuseport_md *ctx) { return steer(ctx, 1); }
