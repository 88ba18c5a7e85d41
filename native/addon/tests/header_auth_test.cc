// Cluster-key derivation and the replay cache (native/addon/header_auth.cc), without the engine.
// Built and run by selftest.mjs (g++); exits non-zero on failure.
#include <arpa/inet.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "header_auth.h"
#include "siphash.h"
#include "slimfast_wire.h"

using namespace sf;

static int fails = 0;
static void check(bool ok, const std::string& name) {
  if (!ok) printf("FAIL header_auth: %s\n", name.c_str()), fails++;
}

int main() {
  uint8_t key[40], root[16], want[16], k1[16], k2[16];
  for (int i = 0; i < 40; i++) key[i] = uint8_t(i * 7 + 1);

  cluster_root(key, 16, root);
  check(memcmp(root, key, 16) == 0, "the root of a 16-byte key is the key");
  // 40 bytes: the first 16, then a 16-byte and an 8-byte chunk, each MACed under the root so far.
  memcpy(want, key, 16);
  sf_siphash(key + 16, 16, want, want, 16);
  sf_siphash(key + 32, 8, want, want, 16);
  cluster_root(key, 40, root);
  check(memcmp(root, want, 16) == 0, "the root of a 40-byte key chains its chunks");
  uint8_t r39[16];
  cluster_root(key, 39, r39);
  check(memcmp(root, r39, 16) != 0, "every byte of the key counts");

  uint8_t msg[24];
  memcpy(msg, "slimfast host key v1", 20);
  uint32_t ip = htonl(0xc0a84d02);  // 192.168.77.2
  memcpy(msg + 20, &ip, 4);
  sf_siphash(msg, sizeof msg, root, want, 16);
  derive_host_key(root, 0xc0a84d02, k1);
  check(memcmp(k1, want, 16) == 0, "host key = SipHash-128(root, label || address)");
  derive_host_key(root, 0xc0a84d03, k2);
  check(memcmp(k1, k2, 16) != 0, "another address, another key");
  key[0] ^= 1;
  cluster_root(key, 40, r39);
  derive_host_key(r39, 0xc0a84d02, k2);
  check(memcmp(k1, k2, 16) != 0, "another cluster key, another host key");

  ReplayCache c(4);
  check(c.insert(1, 100, 0) == ReplayCache::NEW, "first insert is new");
  check(c.insert(1, 100, 0) == ReplayCache::SEEN, "the same (sender, nonce) again is seen");
  check(c.insert(2, 100, 0) == ReplayCache::NEW, "the same nonce from another sender is new");
  check(c.insert(1, 200, 150) == ReplayCache::NEW && c.size() == 1, "entries below oldest are forgotten");
  check(c.insert(1, 300, 0) == ReplayCache::NEW && c.insert(1, 400, 0) == ReplayCache::NEW &&
            c.insert(1, 500, 0) == ReplayCache::NEW && c.size() == 4,
        "fills up to its size");
  check(c.insert(1, 600, 0) == ReplayCache::NEW && c.size() == 4, "past its size the smallest goes");
  check(c.insert(1, 200, 0) == ReplayCache::TOO_OLD, "and the evicted one can never come back");
  check(c.insert(3, 150, 0) == ReplayCache::TOO_OLD, "nor anything older");
  check(c.insert(3, 250, 0) == ReplayCache::TOO_OLD, "a newcomer smaller than every entry is evicted at once");
  check(c.insert(1, 300, 0) == ReplayCache::SEEN, "the others are still there");
  c.clear();
  check(c.size() == 0 && c.insert(1, 200, 0) == ReplayCache::NEW, "clear() forgets the floor too");

  printf("%s header_auth\n", fails ? "FAIL" : "ok");
  return fails != 0;
}
