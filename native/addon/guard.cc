#include "guard.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
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
  for (bpf_link* l : links_) bpf_link__destroy(l);  // detaches the program from the cgroup
  links_.clear();
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

std::string Guard::open(int marks) {
  if (ok()) {
    if (marks >= 0) ::close(marks);
    return "";
  }
  std::string err;
  auto reuse = [marks](bpf_object* o) -> std::string {
    bpf_map* m = bpf_object__find_map_by_name(o, "guarded");
    if (marks < 0 || !m) return "";
    // A map of another shape (an older build's) is not reused: a fresh one then.
    bpf_map_info info{};
    uint32_t len = sizeof info;
    if (bpf_obj_get_info_by_fd(marks, &info, &len) < 0 || info.type != bpf_map__type(m) ||
        info.value_size != bpf_map__value_size(m) || info.map_flags != bpf_map__map_flags(m))
      return "";
    bpf_map__reuse_fd(m, marks);
    return "";
  };
  bpf_object* obj = load_embedded_bpf(
      sf_guard_bpf_obj, sf_guard_bpf_obj_len, "sf_guard", "guard", reuse,
      [](int e) -> std::string { return e == EPERM ? kBpfPrivilegeHint : ""; }, &err);
  if (marks >= 0) ::close(marks);  // reuse_fd took a copy of its own
  if (!obj) return err;
  obj_ = obj;
  if (!find_map_fds(obj, {{"guarded", &guarded_fd_}, {"denied", &denied_fd_}})) {
    close_all();
    return "the embedded guard object lacks a map";
  }
  std::string why;
  int cg = open_cgroup2_root(&why);
  if (cg < 0) {
    close_all();
    return why;
  }
  for (const char* name : {"sf_guard", "sf_connect4", "sf_connect6", "sf_bind4", "sf_bind6"}) {
    bpf_program* prog = bpf_object__find_program_by_name(obj, name);
    bpf_link* link = prog ? bpf_program__attach_cgroup(prog, cg) : nullptr;
    if (!link) {
      int e = prog ? errno : ENOENT;
      ::close(cg);
      close_all();
      return std::string("cannot attach ") + name + " to the cgroup v2 root: " + strerror(e);
    }
    links_.push_back(link);
  }
  ::close(cg);
  why = self_check();
  zero_counters();  // the probe's own refusals are not anyone's
  if (!why.empty()) {
    close_all();
    return "the kernel does not confine a marked socket: " + why;
  }
  return "";
}

namespace {

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

const char* call_result(int rc) { return rc == 0 ? "succeeded" : strerror(errno); }

}  // namespace

// A loopback listener and a marked client connected to it. Every way of pointing the client
// somewhere else must fail; a child accepted from a marked listener must be marked.
std::string Guard::self_check() {
  Fd l, c, child, c2, child2;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  auto sa = reinterpret_cast<sockaddr*>(&a);
  l.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (l.fd < 0 || c.fd < 0 || bind(l.fd, sa, sizeof a) < 0 || listen(l.fd, 4) < 0 || getsockname(l.fd, sa, &al) < 0 ||
      connect(c.fd, sa, sizeof a) < 0 || (child.fd = accept4(l.fd, nullptr, nullptr, SOCK_CLOEXEC)) < 0)
    return std::string("no probe connection over 127.0.0.1: ") + strerror(errno);
  if (!protect(c.fd)) return std::string("cannot mark a socket: ") + strerror(errno);
  sockaddr unspec{};
  unspec.sa_family = AF_UNSPEC;
  connect(c.fd, &unspec, sizeof unspec);  // the disconnect itself has no hook: it may succeed
  sockaddr_in any{};
  any.sin_family = AF_INET;
  int rc;
  if ((rc = connect(c.fd, sa, sizeof a)) == 0 || errno != EPERM)
    return std::string("connect() after a disconnect ") + call_result(rc);
  if ((rc = bind(c.fd, reinterpret_cast<sockaddr*>(&any), sizeof any)) == 0 || errno != EPERM)
    return std::string("bind() after a disconnect ") + call_result(rc);
  if ((rc = int(sendto(c.fd, "x", 1, MSG_FASTOPEN | MSG_DONTWAIT | MSG_NOSIGNAL, sa, sizeof a))) >= 0 ||
      (errno != EPERM && errno != EOPNOTSUPP))
    return std::string("a Fast Open sendto() after a disconnect ") + call_result(rc < 0 ? rc : 0);
  if ((rc = listen(c.fd, 1)) == 0) return "listen() after a disconnect succeeded (this kernel lets a connected socket listen again)";
  // Children of a marked listener carry the mark (BPF_F_CLONE).
  uint32_t v = 0;
  c2.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (!protect(l.fd) || c2.fd < 0 || connect(c2.fd, sa, sizeof a) < 0 ||
      (child2.fd = accept4(l.fd, nullptr, nullptr, SOCK_CLOEXEC)) < 0)
    return std::string("no second probe connection: ") + strerror(errno);
  if (bpf_map_lookup_elem(guarded_fd_, &child2.fd, &v) != 0) return "a marked listener's accepted socket is not marked";
  return "";
}

void Guard::zero_counters() {
  int ncpu = libbpf_num_possible_cpus();
  if (denied_fd_ < 0 || ncpu <= 0) return;
  std::vector<uint64_t> zero(size_t(ncpu), 0);
  for (uint32_t k = 0; k < KINDS; k++) bpf_map_update_elem(denied_fd_, &k, zero.data(), BPF_ANY);
}

std::vector<int> Guard::fds() const {
  std::vector<int> v;
  if (!ok()) return v;
  v.push_back(guarded_fd_);
  for (bpf_link* l : links_) v.push_back(bpf_link__fd(l));
  return v;
}

bool Guard::protect(int fd) {
  if (!ok()) {
    errno = ENOTCONN;
    return false;
  }
  uint32_t one = 1;
  return bpf_map_update_elem(guarded_fd_, &fd, &one, BPF_ANY) == 0;
}

uint64_t Guard::denied(Kind k) const {
  if (denied_fd_ < 0) return 0;
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return 0;
  std::vector<uint64_t> v(size_t(ncpu), 0);
  uint32_t key = k;
  if (bpf_map_lookup_elem(denied_fd_, &key, v.data()) < 0) return 0;
  uint64_t s = 0;
  for (uint64_t x : v) s += x;
  return s;
}

uint64_t Guard::denied() const {
  uint64_t s = 0;
  for (int k = 0; k < KINDS; k++) s += denied(Kind(k));
  return s;
}

}  // namespace sf
