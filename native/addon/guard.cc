#include "guard.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "bpf_object.h"
#include "guard_bpf_obj.h"  // generated: sf_guard_bpf_obj[], sf_guard_bpf_obj_len

namespace sf {

Guard::~Guard() { close_all(); }

void Guard::close_all() {
  if (link_) bpf_link__destroy(link_);  // detaches the program from the cgroup
  link_ = nullptr;
  if (obj_) bpf_object__close(obj_);
  obj_ = nullptr;
  guarded_fd_ = denied_fd_ = -1;
}

// The cgroup v2 root as a directory fd: a mount of it whose root is "/" (field 4 of mountinfo),
// else a private mount made and detached at once (the fd keeps the hierarchy open). `ip netns
// exec` gives its command a fresh /sys, so the system's mount is often not visible.
int open_cgroup2_root(std::string* why) {
  std::ifstream mi("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mi, line)) {
    size_t dash = line.find(" - ");
    if (dash == std::string::npos || line.compare(dash + 3, 8, "cgroup2 ") != 0) continue;
    std::istringstream f(line.substr(0, dash));
    std::string id, parent, devno, root, point;
    f >> id >> parent >> devno >> root >> point;
    if (root != "/") continue;
    int fd = open(point.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) return fd;
  }
  char dir[] = "/tmp/slimfast-cg2-XXXXXX";
  if (!mkdtemp(dir)) {
    *why = std::string("no cgroup2 mount, and no temp dir to mount one: ") + strerror(errno);
    return -1;
  }
  int fd = -1;
  if (mount("none", dir, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) < 0) {
    *why = std::string("no cgroup2 mount, and mounting one failed: ") + strerror(errno);
  } else {
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) *why = std::string("cannot open the cgroup2 mount: ") + strerror(errno);
    umount2(dir, MNT_DETACH);
  }
  rmdir(dir);
  return fd;
}

std::string Guard::open() {
  if (link_) return "";
  std::string err;
  bpf_object* obj = load_embedded_bpf(
      sf_guard_bpf_obj, sf_guard_bpf_obj_len, "sf_guard", "guard", nullptr,
      [](int e) -> std::string { return e == EPERM ? kBpfPrivilegeHint : ""; }, &err);
  if (!obj) return err;
  obj_ = obj;
  bpf_program* prog = bpf_object__find_program_by_name(obj, "sf_guard");
  if (!find_map_fds(obj, {{"guarded", &guarded_fd_}, {"denied", &denied_fd_}}) || !prog) {
    close_all();
    return "the embedded guard object lacks its program or a map";
  }
  std::string why;
  int cg = open_cgroup2_root(&why);
  if (cg < 0) {
    close_all();
    return why;
  }
  bpf_link* link = bpf_program__attach_cgroup(prog, cg);
  int e = link ? 0 : errno;
  ::close(cg);
  if (!link) {
    close_all();
    return std::string("cannot attach the guard to the cgroup v2 root: ") + strerror(e);
  }
  link_ = link;
  return "";
}

bool Guard::protect(int fd) {
  if (!link_) return false;
  uint32_t one = 1;
  return bpf_map_update_elem(guarded_fd_, &fd, &one, BPF_ANY) == 0;
}

uint64_t Guard::denied() const {
  if (denied_fd_ < 0) return 0;
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return 0;
  std::vector<uint64_t> v(size_t(ncpu), 0);
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(denied_fd_, &zero, v.data()) < 0) return 0;
  uint64_t s = 0;
  for (uint64_t x : v) s += x;
  return s;
}

}  // namespace sf
