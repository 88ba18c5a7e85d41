// Reading one host header off a reserved-port connection (docs/protocol.md §2): exactly the
// header's bytes and never more, so what follows stays in the socket for the application.
// Free of engine state, so the fuzz test (tests/header_fuzz.cc) drives the real code.
#pragma once
#include <cstdint>

#include "slimfast_wire.h"

namespace sf {

// Longest hdr_len accepted: room for fields a later version appends, not a way to make a broker
// read and discard 64 KiB per connection.
constexpr uint32_t SF_HDR_MAX_LEN = 256;

// Progress of reading one host header (never more than hdr_len bytes).
struct HdrState {
  uint8_t buf[SF_HDR_LEN];
  uint32_t got = 0;            // bytes consumed so far
  uint32_t need = SF_HDR_LEN;  // total to consume (hdr_len once the fixed part is valid)
  bool pooled = false;         // SF_HDR_POOLED
};

enum { HDR_DONE = 0, HDR_AGAIN = 1, HDR_BAD = 2, HDR_UNUSED = 3 };  // UNUSED: EOF before any byte

// Checks the fixed 48 bytes (magic, version, type, hdr_len) and sets st's need and pooled.
bool header_fixed_ok(const uint8_t* b, HdrState* st);

// Reads from a non-blocking-capable socket (MSG_DONTWAIT) until the header is complete (HDR_DONE),
// the socket has nothing more yet (HDR_AGAIN), or the bytes are no header (HDR_BAD; EOF inside
// the header too). EOF before any byte is HDR_UNUSED (a pooled connection closed unused).
int read_header(int fd, HdrState& st);

}  // namespace sf
