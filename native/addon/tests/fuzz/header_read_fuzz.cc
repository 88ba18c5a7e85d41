// libFuzzer target: the reserved port's header reader (header_read.cc) on a real socket pair,
// the input written in chunks whose sizes the input also chooses. Checks that the reader never
// consumes more than the header's own bytes, finishes only with a valid fixed part, and that EOF
// always ends it.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "header_read.h"
#include "require.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  uint8_t chunking = data[0];
  data++, size--;
  if (size > 4096) size = 4096;
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  sf::HdrState st;
  size_t sent = 0;
  int r = sf::HDR_AGAIN;
  // Chunk sizes cycle through 1 + (chunking >> k & 63): from byte-at-a-time to whole headers.
  for (int k = 0; r == sf::HDR_AGAIN && sent < size; k = (k + 1) % 3) {
    size_t n = std::min<size_t>(size - sent, 1 + ((chunking >> (2 * k)) & 63));
    REQUIRE(write(sv[1], data + sent, n) == ssize_t(n));
    sent += n;
    r = sf::read_header(sv[0], st);
    REQUIRE(st.got <= st.need && st.got <= sent);
  }
  if (r == sf::HDR_AGAIN) {
    shutdown(sv[1], SHUT_WR);
    r = sf::read_header(sv[0], st);
    REQUIRE(r != sf::HDR_AGAIN);  // EOF always ends a header
    REQUIRE(r != sf::HDR_UNUSED || sent == 0);
  }
  sf::HdrState check;
  if (r == sf::HDR_DONE) {
    REQUIRE(st.got == st.need && st.need >= SF_HDR_LEN && st.need <= sf::SF_HDR_MAX_LEN);
    REQUIRE(sf::header_fixed_ok(st.buf, &check) && check.need == st.need);
    REQUIRE(memcmp(st.buf, data, SF_HDR_LEN) == 0);
  }
  if (r == sf::HDR_BAD && st.got >= SF_HDR_LEN) REQUIRE(!sf::header_fixed_ok(data, &check) || st.got < check.need);
  // Whatever the reader did not consume is still in the socket, untouched: the application's.
  shutdown(sv[1], SHUT_WR);
  fcntl(sv[0], F_SETFL, O_NONBLOCK);
  uint8_t rest[4096];
  size_t left = 0;
  for (ssize_t n; (n = read(sv[0], rest + left, sizeof rest - left)) > 0;) left += size_t(n);
  REQUIRE(st.got + left == sent);
  REQUIRE(memcmp(rest, data + st.got, left) == 0);
  close(sv[0]);
  close(sv[1]);
  return 0;
}
