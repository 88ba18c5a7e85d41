// The steered listeners' guard (native/bpf/guard.bpf.c): a cgroup setsockopt program that refuses
// SO_ATTACH_REUSEPORT_CBPF/EBPF and SO_DETACH_REUSEPORT_BPF on the sockets the broker marks, so
// an application holding a steered listener cannot change how the reserved port's connections are
// distributed. No dependency on the engine.
#pragma once
#include <cstdint>
#include <string>

struct bpf_object;
struct bpf_link;

namespace sf {

class Guard {
 public:
  Guard() = default;
  ~Guard();
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;

  // Loads the program and attaches it to the root of the cgroup v2 hierarchy (found in
  // /proc/self/mountinfo, or mounted for the moment). "" on success, else why not. The
  // attachment lasts as long as this object (a bpf_link).
  // Call after Steering::open(), which routes libbpf's messages away from stderr.
  std::string open();
  bool ok() const { return link_ != nullptr; }
  // Marks a socket: from now on the three options fail on it with EPERM, whoever holds it.
  bool protect(int fd);
  // setsockopt() calls refused so far.
  uint64_t denied() const;

 private:
  void close_all();
  bpf_object* obj_ = nullptr;
  bpf_link* link_ = nullptr;
  int guarded_fd_ = -1, denied_fd_ = -1;
};

// Why the host cannot run the guard, or "" (what `open` would say, without attaching anything).
int open_cgroup2_root(std::string* why);

}  // namespace sf
