// Signing and checking host headers (native/addon/header_authority.cc), without the engine: nonce
// order, the host key in SYNC headers, peers' keys and their rotation, and the cluster key's member /
// tag / freshness / replay checks. Built and run by selftest.mjs (g++); exits non-zero on failure.
#include <arpa/inet.h>
#include <endian.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "header_authority.h"
#include "routing.h"
#include "slimfast_wire.h"
#include "util.h"

using namespace sf;

static int fails = 0;
static void check(bool ok, const std::string& name) {
  if (!ok) printf("FAIL header_authority: %s\n", name.c_str()), fails++;
}

static uint32_t ip(int a, int b, int c, int d) {
  return uint32_t(a) << 24 | uint32_t(b) << 16 | uint32_t(c) << 8 | uint32_t(d);
}

// Two hosts: A (192.168.0.1, 10.0.1.0/24) and B (192.168.0.2, 10.0.2.0/24), each routing to the other.
static const uint32_t kA = ip(192, 168, 0, 1), kB = ip(192, 168, 0, 2), kNetA = ip(10, 0, 1, 0),
                      kNetB = ip(10, 0, 2, 0);

int main() {
  RouteTable ra, rb;
  ra.set({{kNetB, 24, kB, 7000}});
  rb.set({{kNetA, 24, kA, 7000}});

  // ---- without a cluster key ----
  HeaderAuthority a(ra), b(rb);
  check(a.start(kA, kNetA, 24, {}, 30000) && b.start(kB, kNetB, 24, {}, 30000), "start");
  check(!a.clustered(), "no cluster key: not clustered");
  uint64_t n1 = a.next_nonce(), n2 = a.next_nonce(), n3 = a.next_nonce();
  check(n1 < n2 && n2 < n3, "every nonce is larger than the one before");
  check(n1 + 1000000000ull > realtime_ns(), "nonces follow the clock");
  sf_hdr h = a.signed_header(SF_HDR_CONNECT, ip(10, 0, 1, 5), ip(10, 0, 2, 7), 80, 40000);
  check(ntohl(h.magic) == SF_HDR_MAGIC && h.type == SF_HDR_CONNECT && ntohs(h.hdr_len) == SF_HDR_LEN &&
            ntohl(h.src_vip) == ip(10, 0, 1, 5) && ntohl(h.dst_vip) == ip(10, 0, 2, 7) && ntohs(h.dst_port) == 80 &&
            ntohs(h.src_port) == 40000 && ntohl(h.key_id) == SF_KEY_HOST && be64toh(h.nonce) > n3,
        "a signed header's fields");
  check(header_tag_ok(h, a.host_key()) && !header_tag_ok(h, b.host_key()), "signed with the host key");
  const PeerKey* own = a.peer_key(kA);
  check(own && own->ok(h), "a host knows its own key (same-host pooled connections)");

  sf_hdr s = a.sync_header();
  check(s.type == SF_HDR_SYNC && memcmp(s.tag, a.host_key(), 16) == 0, "without a cluster key SYNC carries the key");
  check(be64toh(s.nonce) % 1000000 == 0, "in whole milliseconds");
  check(b.peer_key(kA) == nullptr && !b.peer_key(kA), "B does not know A's key yet");
  check(!b.learn_peer_key(ip(192, 168, 0, 9), s), "a SYNC from a host that is no peer teaches nothing");
  check(b.peer_key(ip(192, 168, 0, 9)) == nullptr, "and is not kept");
  check(b.learn_peer_key(kA, s), "B learns A's key from its SYNC");
  const PeerKey* k = b.peer_key(kA);
  check(k && k->ok(h) && !k->has_prev, "and checks A's headers with it");
  check(b.learn_peer_key(kA, s) && !b.peer_key(kA)->has_prev, "the same key again changes nothing");
  uint8_t old_key[16];
  memcpy(old_key, a.host_key(), 16);
  check(a.start(kA, kNetA, 24, {}, 30000) && memcmp(old_key, a.host_key(), 16) != 0, "a restart makes a new key");
  sf_hdr h2 = a.signed_header(SF_HDR_CONNECT, ip(10, 0, 1, 5), ip(10, 0, 2, 7), 80, 40001);
  check(!b.peer_key(kA)->ok(h2), "headers with the new key fail until its SYNC");
  check(b.learn_peer_key(kA, a.sync_header()), "the restarted broker's SYNC");
  k = b.peer_key(kA);
  check(k->has_prev && k->ok(h2) && k->ok(h), "the new key, and the one before for pooled sockets still out");
  check(b.header_owner(kA, h2) == kA, "a container header's owner: the host of its source subnet");
  sf_hdr far = a.signed_header(SF_HDR_CONNECT, ip(10, 0, 9, 5), ip(10, 0, 2, 7), 80, 40001);
  check(b.header_owner(kA, far) == 0, "no owner for a source vIP in nobody's subnet");
  sf_hdr own_src = a.signed_header(SF_HDR_CONNECT, ip(10, 0, 2, 5), ip(10, 0, 2, 7), 80, 40001);
  check(b.header_owner(kA, own_src) == kB, "a source vIP in the own subnet is the own host's");
  check(b.header_owner(kA, s) == kA && b.header_owner(ip(192, 168, 0, 9), s) == 0,
        "a SYNC's owner: its sender, if a peer");

  // ---- with a cluster key ----
  std::vector<uint8_t> key(32);
  for (size_t i = 0; i < key.size(); i++) key[i] = uint8_t(i * 13 + 5);
  check(a.start(kA, kNetA, 24, key, 30000) && b.start(kB, kNetB, 24, key, 30000), "start with a cluster key");
  check(a.clustered() && b.clustered(), "clustered");
  check(a.peer_key(kA) == nullptr, "no peer keys with a cluster key");
  uint8_t ka[16];
  b.member_key(kA, ka);
  check(memcmp(ka, a.host_key(), 16) == 0, "every member computes every member's key");
  h = a.signed_header(SF_HDR_CONNECT, ip(10, 0, 1, 5), ip(10, 0, 2, 7), 80, 40000);
  check(b.check(kA, h) == AUTH_OK, "a member's fresh header");
  check(b.check(kA, h) == AUTH_REPLAYED, "the same header again is a replay");
  sf_hdr p = a.signed_header(SF_HDR_POOLED, ip(10, 0, 1, 5), 0, 0, 0);
  p.dst_vip = htonl(ip(10, 0, 2, 7));
  p.dst_port = htons(443);
  p.src_port = htons(40002);
  check(b.check(kA, p) == AUTH_OK, "a pooled header: the taker's fields are outside the tag");
  h = a.signed_header(SF_HDR_CONNECT, ip(10, 0, 1, 5), ip(10, 0, 2, 7), 80, 40000);
  check(b.check(ip(192, 168, 0, 9), h) == AUTH_NOT_MEMBER, "from an address that does not own the source subnet");
  h.dst_port = htons(81);
  check(b.check(kA, h) == AUTH_FORGED, "a changed field breaks the tag");
  h = a.signed_header(SF_HDR_CONNECT, ip(10, 0, 1, 5), ip(10, 0, 2, 7), 80, 40000);
  h.key_id = htonl(SF_KEY_HOST + 1);
  check(b.check(kA, h) == AUTH_FORGED, "another key id");
  HeaderAuthority other(ra);
  std::vector<uint8_t> key2 = key;
  key2[0] ^= 1;
  other.start(kA, kNetA, 24, key2, 30000);
  check(b.check(kA, other.signed_header(SF_HDR_CONNECT, ip(10, 0, 1, 5), ip(10, 0, 2, 7), 80, 1)) == AUTH_FORGED,
        "another cluster key's header");
  // Nonces outside the window: re-signed under A's key with a chosen nonce.
  auto with_nonce = [&](uint64_t nonce) {
    sf_hdr x = a.signed_header(SF_HDR_CONNECT, ip(10, 0, 1, 5), ip(10, 0, 2, 7), 80, 40000);
    x.nonce = htobe64(nonce);
    header_tag(x, a.host_key());
    return x;
  };
  uint64_t now = realtime_ns();
  check(b.check(kA, with_nonce(now - 31000000000ull)) == AUTH_STALE, "older than the window");
  check(b.check(kA, with_nonce(now + SF_HDR_FUTURE_NS + 1000000000ull)) == AUTH_STALE, "too far ahead");
  check(b.check(kA, with_nonce(now - 1000000000ull)) == AUTH_OK, "a second old is fine");
  sf_hdr sy = a.sync_header();
  check(sy.type == SF_HDR_SYNC && memcmp(sy.tag, a.host_key(), 16) != 0,
        "with a cluster key SYNC is signed, never the key");
  check(b.check(kA, sy) == AUTH_OK, "and a peer's SYNC passes");
  check(b.check(ip(192, 168, 0, 9), other.sync_header()) == AUTH_NOT_MEMBER, "a SYNC from a host that is no peer");
  check(b.start(kB, kNetB, 24, key, 30000) && b.check(kA, sy) == AUTH_OK, "a restart forgets the replay cache");

  // The kernel cache's inserts in the last window (window 30 s: entries older than 31 s go).
  check(b.kernel_seen_in_window(1000, 10) == 0, "the first sample counts nothing");
  b.kernel_recorded();
  b.kernel_recorded();
  check(b.kernel_seen_in_window(2000, 15) == 7, "steered and recorded since then");
  check(b.kernel_seen_in_window(32000, 20) == 12, "the window still holds the first sample");
  check(b.kernel_seen_in_window(32001, 20) == 5, "then it goes");

  printf("%s header_authority\n", fails ? "FAIL" : "ok");
  return fails != 0;
}
