/* Map layouts shared by the kernel steering program (native/bpf/steer.bpf.c) and its loader
 * (native/addon/steering.cc). C and C++; in the BPF build <stdint.h> is clang's freestanding one. */
#ifndef SLIMFAST_STEER_SHARED_H
#define SLIMFAST_STEER_SHARED_H

#include <stdint.h>

#define SF_STEER_MAX_SLOTS 4096 /* socks: slot 0 = the broker's reserved-port listener */
#define SF_STEER_MAX_DSTS 4096  /* dsts: one entry per steered (vIP, port) listener    */
#define SF_STEER_MAX_NETS 1024  /* keys: one entry per peer host's overlay subnet       */

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
   while the peer's headers signed before a key change may still arrive). */
struct sf_steer_key {
  uint8_t cur[16];
  uint8_t prev[16];
  uint32_t has_prev;
};

/* stats indexes (PERCPU_ARRAY of u64). Each SYN the program sees counts once in STEERED..CLOSED;
   DROPPED counts in addition when slot 0 could not take it either. */
enum sf_steer_stat {
  SF_ST_STEERED = 0,    /* handed to an application's listening socket                 */
  SF_ST_NO_HEADER,      /* no payload in the SYN or shorter than a header (not TFO)    */
  SF_ST_NOT_STEERABLE,  /* magic/version/hdr_len/type/key_id not a signed CONNECT/POOLED */
  SF_ST_NO_KEY,         /* no key for the source vIP's subnet                          */
  SF_ST_BAD_TAG,        /* MAC matches neither the current nor the previous key        */
  SF_ST_NO_LISTENER,    /* destination not in dsts                                     */
  SF_ST_CLOSED,         /* destination's slot did not select (its socket was closed)   */
  SF_ST_DROPPED,        /* slot 0 did not select either: the SYN is dropped            */
  SF_ST_COUNT
};

#endif
