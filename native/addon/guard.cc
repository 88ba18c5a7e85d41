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
#include "guard_shared.h"
#include "guard_bpf_obj.h"  // generated: sf_guard_bpf_obj[], sf_guard_bpf_obj_len

namespace sf {

Guard::~Guard() { close_all(); }

void Guard::close_all() {
  for (int fd : links_) ::close(fd);  // the last descriptor of a link detaches its program
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

// An earlier guard's descriptors (`guarded` map, then one link per program in SF_GUARD_PROGRAMS
// order) fit this build's object: the map has the same shape and each link is a cgroup link of the
// program's attach type. Then the map is reused and the links get the new programs in place.
static bool reusable(bpf_object* o, const std::vector<int>& old) {
  const char* names[] = SF_GUARD_PROGRAMS;
  bpf_map* m = bpf_object__find_map_by_name(o, "guarded");
  if (!m || old.size() != 1 + sizeof names / sizeof names[0]) return false;
  bpf_map_info mi{};
  uint32_t len = sizeof mi;
  if (bpf_obj_get_info_by_fd(old[0], &mi, &len) < 0 || mi.type != bpf_map__type(m) ||
      mi.value_size != bpf_map__value_size(m) || mi.map_flags != bpf_map__map_flags(m))
    return false;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    bpf_program* p = bpf_object__find_program_by_name(o, names[i]);
    bpf_link_info li{};
    len = sizeof li;
    if (!p || bpf_obj_get_info_by_fd(old[i + 1], &li, &len) < 0 || li.type != BPF_LINK_TYPE_CGROUP ||
        li.cgroup.attach_type != bpf_program__expected_attach_type(p))
      return false;
  }
  return true;
}

std::string Guard::open(std::vector<int> old) {
  auto close_old = [&old] {
    for (int fd : old) ::close(fd);
    old.clear();
  };
  if (ok()) {
    close_old();
    return "";
  }
  std::string err;
  bool reuse = false;
  auto prepare = [&](bpf_object* o) -> std::string {
    reuse = !old.empty() && reusable(o, old);
    if (reuse) bpf_map__reuse_fd(bpf_object__find_map_by_name(o, "guarded"), old[0]);
    return "";
  };
  bpf_object* obj = load_embedded_bpf(
      sf_guard_bpf_obj, sf_guard_bpf_obj_len, "sf_guard", "guard", prepare,
      [](int e) -> std::string { return e == EPERM ? kBpfPrivilegeHint : ""; }, &err);
  if (!obj) {
    close_old();
    return err;
  }
  obj_ = obj;
  if (!find_map_fds(obj, {{"guarded", &guarded_fd_}, {"denied", &denied_fd_}})) {
    close_old();
    close_all();
    return "the embedded guard object lacks a map";
  }
  std::string why;
  int cg = reuse ? -1 : open_cgroup2_root(&why);
  if (!reuse && cg < 0) {
    close_old();
    close_all();
    return why;
  }
  // Reused: the old links run the new programs from now on, atomically (no moment with two
  // generations, none with no program). Else new links, and the old guard (if any) goes when the
  // keeper drops it.
  const char* names[] = SF_GUARD_PROGRAMS;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    bpf_program* prog = bpf_object__find_program_by_name(obj, names[i]);
    int fd = -1, e = ENOENT;
    if (prog && reuse) {
      if (bpf_link_update(old[i + 1], bpf_program__fd(prog), nullptr) == 0)
        std::swap(fd, old[i + 1]);
      else
        e = errno;
    } else if (prog) {
      fd = bpf_link_create(bpf_program__fd(prog), cg, bpf_program__expected_attach_type(prog), nullptr);
      e = errno;
    }
    if (fd < 0) {
      if (cg >= 0) ::close(cg);
      close_old();
      close_all();
      return std::string(reuse ? "cannot update the link of " : "cannot attach ") + names[i] +
             " to the cgroup v2 root: " + strerror(e);
    }
    links_.push_back(fd);
  }
  if (cg >= 0) ::close(cg);
  close_old();  // the old map's descriptor (reuse_fd keeps a copy of its own), links not taken over
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
  if ((rc = listen(c.fd, 1)) == 0)
    return "listen() after a disconnect succeeded (this kernel lets a connected socket listen again)";
  // Children of a marked listener carry the mark (BPF_F_CLONE).
  uint32_t v = 0;
  c2.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (!protect(l.fd) || c2.fd < 0 || connect(c2.fd, sa, sizeof a) < 0 ||
      (child2.fd = accept4(l.fd, nullptr, nullptr, SOCK_CLOEXEC)) < 0)
    return std::string("no second probe connection: ") + strerror(errno);
  if (bpf_map_lookup_elem(guarded_fd_, &child2.fd, &v) != 0) return "a marked listener's accepted socket is not marked";
  // Armed (the broker's peer sockets): its own bind and connect pass, and that connect confines it.
  Fd armed, child3;
  sockaddr_in lo{};
  lo.sin_family = AF_INET;
  lo.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  uint32_t arm = SF_GUARD_ARM;
  armed.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (armed.fd < 0 || setsockopt(armed.fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &arm, sizeof arm) < 0 ||
      bind(armed.fd, reinterpret_cast<sockaddr*>(&lo), sizeof lo) < 0 || connect(armed.fd, sa, sizeof a) < 0 ||
      (child3.fd = accept4(l.fd, nullptr, nullptr, SOCK_CLOEXEC)) < 0)
    return std::string("an armed socket cannot bind and connect: ") + strerror(errno);
  if (bpf_map_lookup_elem(guarded_fd_, &armed.fd, &v) != 0 || v != SF_GUARD_CONFINED)
    return "an armed socket is not confined by its connect";
  connect(armed.fd, &unspec, sizeof unspec);
  if ((rc = connect(armed.fd, sa, sizeof a)) == 0 || errno != EPERM)
    return std::string("connect() of an armed socket after its disconnect ") + call_result(rc);
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
  for (int fd : links_) v.push_back(fd);
  return v;
}

bool Guard::protect(int fd) {
  if (!ok()) {
    errno = ENOTCONN;
    return false;
  }
  uint32_t confined = SF_GUARD_CONFINED;
  return bpf_map_update_elem(guarded_fd_, &fd, &confined, BPF_ANY) == 0;
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
