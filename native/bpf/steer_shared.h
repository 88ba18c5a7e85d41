/* Map layouts shared by the kernel steering program (native/bpf/steer.bpf.c) and its loader
 * (native/addon/steering.cc). C and C++; in the BPF build <stdint.h> is clang's freestanding one. */
#ifndef SLIMFAST_STEER_SHARED_H
#define SLIMFAST_STEER_SHARED_H

#include <stdint.h>

#define SF_STEER_MAX_SLOTS 4096 /* socks: slot 0 = the broker's reserved-port listener */
#define SF_STEER_MAX_DSTS 4096  /* dsts: one entry per steered (vIP, port) listener    */
#define SF_STEER_MAX_NETS 1024  /* keys: one entry per peer host's overlay subnet       */
/* seen: (sender, nonce) of every header steered with a cluster key, until evicted. Enough for
   8700 new connections a second over the default 30 s window (about 23 MB of kernel memory);
   past that the least recently inserted entries go first (docs/protocol.md "Cluster key"). */
#define SF_STEER_MAX_SEEN 262144

/* dsts key: the header's dst_vip and dst_port bytes as they are on the wire; pad is zero. */
struct sf_steer_dst {
  uint32_t vip;
  uint16_t port;
  uint16_t pad;
};

/* keys key (LPM trie): prefix length, then the subnet address in network order. */
struct sf_steer_net {
  uint32_t prefixlen;
  uint32_t addr;
};

/* keys value: the 16-byte SipHash key of the host owning the subnet, and its previous one (kept
   while the peer's headers signed before a key change may still arrive); the owning host's IPv4
   address (network order), which its connections must come from when auth.on is set. */
struct sf_steer_key {
  uint8_t cur[16];
  uint8_t prev[16];
  uint32_t has_prev;
  uint32_t host;
};

/* auth (ARRAY of one): set by the loader when the broker has a cluster key (program sf_steer_auth).
   The program's clock is bpf_ktime_get_tai_ns() - tai_offset_ns = CLOCK_REALTIME, the clock header
   nonces are taken from; a nonce outside [now - window_ns, now + future_ns] is stale. */
struct sf_steer_auth {
  uint32_t on;
  uint32_t pad;
  int64_t tai_offset_ns; /* CLOCK_TAI - CLOCK_REALTIME, refreshed by the broker once a second */
  uint64_t window_ns;
  uint64_t future_ns;
};

/* seen key (LRU_HASH, value unused): the sender's address and the header's nonce, both exactly as
   on the wire (network order). The broker inserts the headers it accepts itself too: one replay
   cache for both paths. */
struct sf_steer_seen {
  uint32_t host;
  uint32_t pad;
  uint64_t nonce;
};

/* stats indexes (PERCPU_ARRAY of u64). Each SYN the program sees counts once in STEERED..CLOSED or
   STALE..NOT_MEMBER; DROPPED counts in addition when slot 0 could not take it either. With auth.on
   a BAD_TAG, STALE, REPLAYED or NOT_MEMBER SYN is dropped (the client gets a reset) rather than
   handed to slot 0, whose broker would only refuse it too. */
enum sf_steer_stat {
  SF_ST_STEERED = 0,   /* handed to an application's listening socket                 */
  SF_ST_NO_HEADER,     /* no payload in the SYN or shorter than a header (not TFO)    */
  SF_ST_NOT_STEERABLE, /* magic/version/hdr_len/type/key_id not a signed CONNECT/POOLED,
                           or a POOLED one with a source port below SF_POOLED_SPORT_MIN    */
  SF_ST_NO_KEY,        /* no key for the source vIP's subnet                          */
  SF_ST_BAD_TAG,       /* MAC matches neither the current nor the previous key        */
  SF_ST_NO_LISTENER,   /* destination not in dsts                                     */
  SF_ST_CLOSED,        /* destination's slot did not select (its socket was closed)   */
  SF_ST_DROPPED,       /* slot 0 did not select either: the SYN is dropped            */
  SF_ST_STALE,         /* auth: nonce older than the window or too far in the future  */
  SF_ST_REPLAYED,      /* auth: (sender, nonce) already in seen                        */
  SF_ST_NOT_MEMBER,    /* auth: the SYN's IPv4 source is not the subnet's owning host  */
  SF_ST_COUNT
};

#endif
