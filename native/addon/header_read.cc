#include "header_read.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace sf {

bool header_fixed_ok(const uint8_t* b, HdrState* st) {
  sf_hdr h;
  memcpy(&h, b, sizeof h);
  if (ntohl(h.magic) != SF_HDR_MAGIC || h.version != SF_HDR_VERSION) return false;
  if (h.type != SF_HDR_CONNECT && h.type != SF_HDR_SYNC && h.type != SF_HDR_POOLED) return false;
  uint16_t len = ntohs(h.hdr_len);
  if (len < SF_HDR_LEN || len > SF_HDR_MAX_LEN) return false;
  st->pooled = h.type == SF_HDR_POOLED;
  st->need = len;
  return true;
}

// The fixed 48 bytes, then (hdr_len - 48) bytes that are discarded.
int read_header(int fd, HdrState& st) {
  uint8_t scratch[SF_HDR_MAX_LEN];
  while (st.got < st.need) {
    ssize_t n;
    if (st.got < SF_HDR_LEN)
      n = recv(fd, st.buf + st.got, SF_HDR_LEN - st.got, MSG_DONTWAIT);
    else
      n = recv(fd, scratch, std::min<size_t>(st.need - st.got, sizeof scratch), MSG_DONTWAIT);
    if (n > 0) {
      bool fixed_part_done = st.got < SF_HDR_LEN && st.got + n == SF_HDR_LEN;
      st.got += uint32_t(n);
      if (fixed_part_done && !header_fixed_ok(st.buf, &st)) return HDR_BAD;
      continue;
    }
    if (n == 0) return st.got == 0 ? HDR_UNUSED : HDR_BAD;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return HDR_AGAIN;
    return HDR_BAD;
  }
  return HDR_DONE;
}

}  // namespace sf
