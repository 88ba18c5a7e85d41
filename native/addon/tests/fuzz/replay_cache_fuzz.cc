// libFuzzer target: the replay cache (header_auth.cc) against what it promises. Each 13-byte step
// is (sender: 1 byte, nonce: 8, oldest back from the nonce: 4), on a small cache so eviction
// happens. The promise: a (sender, nonce) once accepted is never accepted again, whatever the
// clock (oldest) does; and a first insert of a nonce above everything seen so far is accepted.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <utility>

#include "header_auth.h"
#include "require.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  sf::ReplayCache cache(1 + data[0] % 16);
  std::set<std::pair<uint32_t, uint64_t>> accepted;
  uint64_t highest = 0;  // the highest nonce or oldest seen so far
  for (size_t off = 1; off + 13 <= size; off += 13) {
    uint32_t sender = data[off] % 4;
    uint64_t nonce;
    uint32_t back;
    memcpy(&nonce, data + off + 1, 8);
    memcpy(&back, data + off + 9, 4);
    nonce %= 1000000;                                                 // a small space, so repeats are common
    uint64_t oldest = nonce > back % 2000 ? nonce - back % 2000 : 0;  // callers refuse nonces below oldest first
    bool fresh_high = nonce > highest;
    sf::ReplayCache::Result r = cache.insert(sender, nonce, oldest);
    bool seen = accepted.count({sender, nonce}) > 0;
    if (seen) REQUIRE(r != sf::ReplayCache::NEW);
    if (r == sf::ReplayCache::NEW) accepted.insert({sender, nonce});
    if (fresh_high && cache.size() > 1) REQUIRE(r == sf::ReplayCache::NEW);
    highest = std::max(highest, std::max(nonce, oldest));
    REQUIRE(cache.size() <= 1 + size_t(data[0] % 16));
  }
  return 0;
}
