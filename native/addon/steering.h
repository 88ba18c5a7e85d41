// Kernel steering of host connections: loads native/bpf/steer.bpf.c (embedded at build time) and
// edits its maps. The reserved-port listener and the applications' listening sockets, all bound to
// host IP:reserved port with SO_REUSEPORT, form one reuseport group; the program hands each TCP
// Fast Open SYN whose header is signed and registered straight to the application's socket, and
// everything else to slot 0 (the broker). README.md "Kernel steering" has the whole picture.
//
// Thread-safety: none inside. The caller serializes every call on one Steering with its own
// mutex (the kernel side needs no lock: map updates are atomic per entry).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

struct bpf_object;

namespace sf {

struct SteerStats {  // summed over CPUs; see native/bpf/steer_shared.h for each one's meaning
  uint64_t steered, no_header, not_steerable, no_key, bad_tag, no_listener, closed, dropped;
  uint64_t stale, replayed, not_member;  // only with auth (set_auth)
};

class Steering {
 public:
  Steering() = default;
  ~Steering();  // closes the maps and the program (an attached group keeps its own reference)
  Steering(const Steering&) = delete;
  Steering& operator=(const Steering&) = delete;

  // Loads the program and creates its maps. "" on success, else what is missing (no CAP_BPF,
  // kernel too old, ...), including libbpf's own lines; libbpf never prints anything itself.
  // auth: the program that can check senders, nonces and replays (set_auth turns it on).
  std::string open(bool auth = false);
  bool ok() const { return obj_ != nullptr; }

  // Attaches the program to reserved_fd's reuseport group (SO_ATTACH_REUSEPORT_EBPF) and puts it in
  // slot 0. reserved_fd must already have SO_REUSEPORT and be listening.
  std::string attach(int reserved_fd);

  // Registers a listening socket of the group for the header destination (vip_be, port_be):
  // returns its slot (>= 1), or -1 with errno (ENOSPC: no free slot; EINVAL: not a listening
  // SO_REUSEPORT TCP socket). A later add for the same destination replaces the mapping.
  int add(uint32_t vip_be, uint16_t port_be, int listen_fd);
  // Frees slot; deletes the destination only if it still points at that slot.
  void remove(uint32_t vip_be, uint16_t port_be, int slot);
  // False once the slot's socket was closed (the kernel empties the slot) or the slot is unused.
  bool slot_open(int slot) const;

  // The key of the host owning net_be/prefix (network order), its previous key or null, and the
  // host's address (network order; with auth its connections must come from there).
  bool set_key(uint32_t net_be, int prefix, const uint8_t cur[16], const uint8_t* prev16_or_null, uint32_t host_be = 0);
  void drop_key(uint32_t net_be, int prefix);

  // Only after open(true): from now on a header is refused (SYN dropped) unless it comes from its
  // subnet's host, its nonce is within [now - window_ns, now + future_ns] and it was not seen yet.
  // "" or why not.
  std::string set_auth(uint64_t window_ns, uint64_t future_ns);
  // Rewrites the program's clock offset (CLOCK_TAI - CLOCK_REALTIME) if it changed; false on error.
  bool refresh_clock();
  // Records a header the broker accepted in the program's replay cache: 0, EEXIST if it is there
  // already (a replay), or another errno. host_be, nonce_wire: as on the wire.
  int remember(uint32_t host_be, uint64_t nonce_wire);

  SteerStats stats() const;

 private:
  void close_all();

  bpf_object* obj_ = nullptr;  // owns the program and map fds below
  int prog_fd_ = -1, socks_fd_ = -1, dsts_fd_ = -1, keys_fd_ = -1, stats_fd_ = -1, auth_fd_ = -1, seen_fd_ = -1;
  bool auth_prog_ = false;  // sf_steer_auth was loaded
  bool auth_on_ = false;    // set_auth succeeded
  uint64_t window_ns_ = 0, future_ns_ = 0;
  int64_t tai_offset_ns_ = 0;
  std::vector<bool> used_;  // used_[slot]; slot 0 is the reserved listener's; lowest free reused
};

// A listening socket that can join the reserved port's group: SO_REUSEADDR, SO_REUSEPORT, bound to
// ip:port, TCP_FASTOPEN (queue = backlog) and TCP_FASTOPEN_NO_COOKIE set, listen(backlog).
// Returns the fd (close-on-exec) or -1 with errno.
int steer_listen_socket(uint32_t ip_host_order, uint16_t port_host_order, int backlog, bool nonblock);

// CLOCK_TAI - CLOCK_REALTIME (whole seconds: the kernel's TAI offset), in ns.
int64_t tai_offset_ns();

// Whether net.ipv4.tcp_fastopen of the calling thread's netns has the server bit (0x2).
bool server_tfo_enabled();
// Sets that bit, keeping the others. "" or a message.
std::string enable_server_tfo();

}  // namespace sf
