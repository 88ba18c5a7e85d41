/* SipHash-2-4 (Aumasson and Bernstein), 64- or 128-bit output: the keyed MAC of host connection
 * headers. Header-only, C and C++. The 64-bit output is checked against the paper's test vector in
 * native/addon/tests/siphash_test.c. */
#ifndef SLIMFAST_SIPHASH_H
#define SLIMFAST_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t sf_sip_rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

static inline uint64_t sf_sip_load(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static inline void sf_sip_store(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

#define SF_SIPROUND(v0, v1, v2, v3) \
  do {                              \
    v0 += v1;                       \
    v1 = sf_sip_rotl(v1, 13);       \
    v1 ^= v0;                       \
    v0 = sf_sip_rotl(v0, 32);       \
    v2 += v3;                       \
    v3 = sf_sip_rotl(v3, 16);       \
    v3 ^= v2;                       \
    v0 += v3;                       \
    v3 = sf_sip_rotl(v3, 21);       \
    v3 ^= v0;                       \
    v2 += v1;                       \
    v1 = sf_sip_rotl(v1, 17);       \
    v1 ^= v2;                       \
    v2 = sf_sip_rotl(v2, 32);       \
  } while (0)

/* out gets outlen (8 or 16) bytes of SipHash-2-4 of in[0..len) under the 16-byte key. */
static inline void sf_siphash(const void *in, size_t len, const uint8_t key[16], uint8_t *out, int outlen) {
  const uint8_t *m = (const uint8_t *)in;
  uint64_t k0 = sf_sip_load(key), k1 = sf_sip_load(key + 8);
  uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
  uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
  if (outlen == 16) v1 ^= 0xee;
  size_t full = len & ~(size_t)7;
  for (size_t i = 0; i < full; i += 8) {
    uint64_t w = sf_sip_load(m + i);
    v3 ^= w;
    SF_SIPROUND(v0, v1, v2, v3);
    SF_SIPROUND(v0, v1, v2, v3);
    v0 ^= w;
  }
  uint64_t b = (uint64_t)len << 56;
  for (size_t i = 0; i < (len & 7); i++) b |= (uint64_t)m[full + i] << (8 * i);
  v3 ^= b;
  SF_SIPROUND(v0, v1, v2, v3);
  SF_SIPROUND(v0, v1, v2, v3);
  v0 ^= b;
  v2 ^= outlen == 16 ? 0xee : 0xff;
  for (int i = 0; i < 4; i++) SF_SIPROUND(v0, v1, v2, v3);
  sf_sip_store(out, v0 ^ v1 ^ v2 ^ v3);
  if (outlen != 16) return;
  v1 ^= 0xdd;
  for (int i = 0; i < 4; i++) SF_SIPROUND(v0, v1, v2, v3);
  sf_sip_store(out + 8, v0 ^ v1 ^ v2 ^ v3);
}

#endif
