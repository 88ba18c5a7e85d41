// The pools' own bookkeeping (pool_stock.h); the engine's side of the pools is pool.cc.
#include "pool_stock.h"

#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "slimfast_wire.h"
#include "util.h"

namespace sf {

void PoolStock::add(uint32_t peer_ip, int64_t d) {
  auto it = peer_.find(peer_ip);
  int64_t v = (it == peer_.end() ? 0 : int64_t(it->second)) + d;
  if (v <= 0) {
    if (it != peer_.end()) peer_.erase(it);
  } else if (it != peer_.end()) {
    it->second = uint32_t(v);
  } else {
    peer_.emplace(peer_ip, uint32_t(v));
  }
}

void PoolStock::unpark(Pool* p) {
  auto it = std::find_if(parked_.begin(), parked_.end(), [p](const Parked& x) { return x.p == p; });
  if (it != parked_.end()) parked_.erase(it);
}

uint32_t PoolStock::measure_msg_size() {
  int sp[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) return 0;
  sf_pooled m{};
  FdCmsg cm;
  iovec iov{&m, sizeof m};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  attach_fd(mh, cm, sp[1]);
  int q = 0;
  if (sendmsg(sp[0], &mh, MSG_DONTWAIT | MSG_NOSIGNAL) != ssize_t(sizeof m) || ioctl(sp[0], SIOCOUTQ, &q) != 0) q = 0;
  close_fd(sp[0]);
  close_fd(sp[1]);
  return q > 0 ? uint32_t(q) : 0;
}

}  // namespace sf
