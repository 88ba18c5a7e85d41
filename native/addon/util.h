// Small syscall helpers shared by the engine files. Every helper checks its syscalls and retries
// EINTR; none of them raises SIGPIPE (sends use MSG_NOSIGNAL).
#pragma once
#include <cstdint>
#include <algorithm>
#include <string>
#include <vector>
#include <sys/socket.h>
#include "fdpass.h"
#include "slimfast_wire.h"

namespace sf {

int64_t now_ms();                                   // CLOCK_MONOTONIC_COARSE, milliseconds
uint64_t realtime_ns();                             // CLOCK_REALTIME, nanoseconds (header nonce)
uint64_t mono_ns();                                 // CLOCK_MONOTONIC, nanoseconds (pooled sockets' age)
void header_tag(sf_hdr& h, const uint8_t key[16]);  // SipHash-2-4-128 of bytes 0..31 into h.tag
bool header_tag_ok(const sf_hdr& h, const uint8_t key[16]);
// SF_HDR_POOLED: the fields the taking process fills in are outside the MAC (zero while it is made or checked).
inline void pooled_blank(sf_hdr& h) {
  h.dst_vip = 0;
  h.dst_port = 0;
  h.src_port = 0;
}
void close_fd(int fd);     // close(); never retried (Linux frees the fd even on EINTR)
void reset_close(int fd);  // SO_LINGER {1,0} then close: the peer sees a reset
bool set_nonblock(int fd, bool on);
// One fcntl: back to a blocking socket (for sockets we created: no other status flag is set).
void make_blocking_fresh(int fd);
bool set_int_opt(int fd, int level, int opt, int val);
void grow_sndbuf(int fd, int bytes);         // SO_SNDBUFFORCE (root), else SO_SNDBUF
bool sockopt_is(int fd, int opt, int want);  // SOL_SOCKET option opt of fd reads want

// One recvmsg(MSG_DONTWAIT | MSG_CMSG_CLOEXEC) of up to len bytes: the SCM_RIGHTS descriptors that
// came with it go into fds (at most max; the others are closed), their count into *nfds, the
// message flags into *msg_flags (may be null). Returns what recvmsg returned.
ssize_t recv_fds(int sock, void* buf, size_t len, int* fds, int max, int* nfds, int* msg_flags);

// Removes x from v (its first occurrence), if it is there.
template <class T>
void erase_one(std::vector<T*>& v, T* x) {
  auto it = std::find(v.begin(), v.end(), x);
  if (it != v.end()) v.erase(it);
}

// Sends one sf_msg, optionally with one fd (SCM_RIGHTS), without blocking. 0 or an errno.
int send_msg(int sock, const sf_msg& m, int fd);
// The value of one field of /proc/PID/status ("Tgid", "CapEff"), leading blanks skipped; "" when
// the process or the field is not there.
std::string proc_status_field(int pid, const char* field);
// A copy of fd `fd` of process `tgid` (pidfd_open + pidfd_getfd); -1 and errno when it cannot be had.
int copy_process_fd(int tgid, int fd);
int send_buf(int sock, const void* buf, size_t len, int fd);  // one packet of len bytes, same rules
inline constexpr int kMaxSendFds = SF_FDPASS_MAX;
int send_fds(int sock, const void* buf, size_t len, const int* fds, int nfds);  // up to kMaxSendFds
// Room for one SCM_RIGHTS descriptor, and putting fd into it as mh's control data.
union FdCmsg {
  char buf[SF_FDPASS_SPACE(1)];
  cmsghdr align;
};
void attach_fd(msghdr& mh, FdCmsg& c, int fd);

// IPv4 address of a sockaddr (AF_INET or v4-mapped AF_INET6), host order; 0 otherwise.
uint32_t sockaddr_ip(const sockaddr_storage& ss, uint16_t* port_host);

std::string ip_str(uint32_t ip_host);
bool parse_ip(const std::string& s, uint32_t* ip_host);
bool parse_cidr(const std::string& s, uint32_t* net_host, uint8_t* prefix);
inline uint32_t prefix_mask(uint8_t p) { return p ? (0xffffffffu << (32 - p)) : 0; }
inline bool in_prefix(uint32_t ip, uint32_t net, uint8_t p) { return (ip & prefix_mask(p)) == net; }
inline uint64_t addr_key(uint32_t ip_host, uint16_t port_host) { return (uint64_t(ip_host) << 16) | port_host; }

}  // namespace sf
