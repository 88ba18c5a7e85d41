// The confinement guard (native/bpf/guard.bpf.c): cgroup programs on the root of the cgroup v2
// hierarchy that refuse connect, bind, Fast Open sends and reuseport-program changes on every
// host socket the broker marks, whoever holds it. The broker marks each host socket before it
// leaves its hands and hands out none while the guard is not attached (Engine::confined()).
// No dependency on the engine.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

struct bpf_object;

namespace sf {

class Guard {
 public:
  // What a refusal was (the index of guard.bpf.c's `denied` counters).
  enum Kind { REUSEPORT = 0, CONNECT = 1, BIND = 2, KINDS = 3 };

  Guard() = default;
  ~Guard();
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;

  // Loads the programs, attaches them to the root of the cgroup v2 hierarchy (found in
  // /proc/self/mountinfo, or mounted for the moment) and checks on marked probe sockets over
  // loopback that each re-pointing path is refused. "" on success, else why not; then nothing is
  // attached. The attachments last as long as this object (bpf_links) or a copy of their fds.
  // old: an earlier guard's descriptors as fds() gave them (a previous broker's, kept by the
  // seccomp keeper): when they fit this build, its map is used instead of a new one, so that the
  // sockets marked then stay marked, and its links get the new programs in place. Taken over
  // (closed here) either way.
  std::string open(std::vector<int> old = {});
  bool ok() const { return !links_.empty(); }
  // Marks a socket: from now on it cannot be re-pointed, whoever holds it. Sockets accepted from
  // a marked listener are marked by the kernel. false (errno set) if it could not be marked.
  // (A socket the broker connects itself is armed instead, without a syscall: guard_shared.h.)
  bool protect(int fd);
  // The `guarded` map, then every program link: what keeps the guard in force after this object
  // (and its process) is gone, for slimfast-seccomp-keeper to hold. Owned by this object.
  std::vector<int> fds() const;
  // Calls refused so far, of one kind or in all.
  uint64_t denied(Kind k) const;
  uint64_t denied() const;

 private:
  void close_all();
  std::string self_check();
  void zero_counters();
  bpf_object* obj_ = nullptr;
  std::vector<int> links_;  // bpf_link descriptors, SF_GUARD_PROGRAMS order
  int guarded_fd_ = -1, denied_fd_ = -1;
};

// The cgroup v2 root as a directory fd, or -1 and why not.
int open_cgroup2_root(std::string* why);

}  // namespace sf
