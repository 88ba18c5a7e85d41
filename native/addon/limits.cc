// What one container may hold of the broker, and which ports its processes may claim.
//
// Descriptors. start() sizes the limits from the process's RLIMIT_NOFILE (the daemon raises it to
// the hard limit first: raise_fd_limit()). A reserve stays with the control plane (JS, gRPC, the
// listener sync streams, etcd); the engine keeps the rest, its budget, and takes no new long-lived
// descriptor numbered past it (fd_room(): the kernel hands out the lowest free number, so a
// number past the budget means about that many are open). Each container may hold at most
// containerConnsMax broker connections, containerPoolsMax pools, containerListenersMax listener
// channels and containerPendingMax handoffs in progress (cross-host connects, held seccomp
// connects and accepts); sized so that one container at all of them holds at most a quarter of
// the budget. Past a limit the container is told (EMFILE; ENFILE past the budget) and falls back
// to its own network for that call or that process; nobody else notices.
//
// Ports. A process may name a source port (SF_CONNECT port_a, which the broker puts in the
// header it signs) or a listening port (SF_LISTEN, SF_STEER_AGAIN) below the container's
// net.ipv4.ip_unprivileged_port_start only if it could bind that port itself: CAP_NET_BIND_SERVICE
// in its effective set, in a user namespace that owns the container's network namespace or is an
// ancestor of its owner. Read once per broker connection, when it is accepted: the process's pid
// from SO_PEERCRED, CapEff from /proc/PID/status and its user namespace from /proc/PID/ns/user,
// checked against a pidfd of the connecting process (SO_PEERPIDFD; pidfd_open of the pid on older
// kernels) that must still be alive after the reads, so a recycled pid cannot lend its
// capabilities. The sysctl is read in the container's namespace at registration and again (at
// most once a second) before a refusal.
//
// Who may connect at all. The socket is mode 666 and containers/ is traversable (711) so that a
// container's processes reach it whatever their uid, also from the host's mount namespace
// (`slimfast container add`); a bind mount shows a runc container its own socket only. So the
// broker takes a connection only from a socket made in the container's network namespace: the
// accepted end of a Unix connection lives in the connecting socket's namespace (af_unix), which
// SIOCGSKNS opens. Nothing the peer says or can change afterwards counts, and no pid is involved.
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/nsfs.h>
#include <linux/sockios.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "engine.h"
#include "util.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

namespace sf {

Limits size_limits(uint64_t nofile, const Config& cfg) {
  Limits l;
  nofile = std::min<uint64_t>(nofile, 1u << 30);
  l.nofile = nofile;
  uint64_t reserve = cfg.fd_reserve ? cfg.fd_reserve : std::clamp<uint64_t>(nofile / 8, 256, 65536);
  if (reserve > nofile / 2) reserve = nofile / 2;  // a tiny limit: half each
  l.reserve = uint32_t(reserve);
  l.budget = uint32_t(nofile - reserve);
  // One container at every default: a descriptor per broker connection and per pool, three per
  // listener channel (the channel, the application's socket, a steered one until it is fetched),
  // two per handoff (the host socket, a seccomp caller's socket).
  const double per = double(kDefaultConns) + kDefaultPools + 3.0 * kDefaultListeners + 2.0 * kDefaultPending;
  const double scale = std::min(1.0, double(l.budget) / 4 / per);
  auto pick = [&](uint32_t given, uint32_t def) {
    return given ? given : std::max<uint32_t>(8, uint32_t(def * scale));
  };
  l.conns = pick(cfg.container_conns_max, kDefaultConns);
  l.pools = pick(cfg.container_pools_max, kDefaultPools);
  l.listeners = pick(cfg.container_listeners_max, kDefaultListeners);
  l.pending = pick(cfg.container_pending_max, kDefaultPending);
  return l;
}

FdLimit raise_fd_limit(uint64_t cap) {
  rlimit r{};
  getrlimit(RLIMIT_NOFILE, &r);
  FdLimit f{uint64_t(r.rlim_cur), uint64_t(r.rlim_max), uint64_t(r.rlim_cur), uint64_t(r.rlim_max)};
  if (cap) {  // the operator's choice: the soft limit only (the hard one may be needed again)
    r.rlim_cur = rlim_t(std::min<uint64_t>(cap, uint64_t(r.rlim_max)));
    setrlimit(RLIMIT_NOFILE, &r);
    if (getrlimit(RLIMIT_NOFILE, &r) == 0) {
      f.soft = uint64_t(r.rlim_cur);
      f.hard = uint64_t(r.rlim_max);
    }
    return f;
  }
  uint64_t want = 1u << 20;
  if (FILE* fp = fopen("/proc/sys/fs/nr_open", "re")) {
    unsigned long long n = 0;
    if (fscanf(fp, "%llu", &n) == 1 && n > 0) want = std::min<uint64_t>(want, n);
    fclose(fp);
  }
  if (r.rlim_max != RLIM_INFINITY && uint64_t(r.rlim_max) < want) {
    rlimit up{rlim_t(want), rlim_t(want)};
    if (setrlimit(RLIMIT_NOFILE, &up) == 0) r = up;  // EPERM without CAP_SYS_RESOURCE: keep the hard one
  }
  if (r.rlim_cur != r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
  }
  if (getrlimit(RLIMIT_NOFILE, &r) == 0) {
    f.soft = uint64_t(r.rlim_cur);
    f.hard = uint64_t(r.rlim_max);
  }
  return f;
}

static bool read_port_start(uint32_t* out) {
  FILE* fp = fopen("/proc/sys/net/ipv4/ip_unprivileged_port_start", "re");
  if (!fp) return false;
  unsigned v = 0;
  bool ok = fscanf(fp, "%u", &v) == 1 && v <= 65536;
  fclose(fp);
  if (ok) *out = v;
  return ok;
}

NetnsInfo read_netns_info(const std::string& netns, bool chain) {
  NetnsInfo out;
  int nfd = open(netns.empty() ? "/proc/self/ns/net" : netns.c_str(), O_RDONLY | O_CLOEXEC);
  if (nfd < 0) return out;
  struct stat nst;
  if (fstat(nfd, &nst) == 0) {
    out.dev = uint64_t(nst.st_dev);
    out.ino = uint64_t(nst.st_ino);
  }
  if (chain) {
    // The namespace's owner, then each parent up to ours (NS_GET_PARENT fails past it).
    int u = ioctl(nfd, NS_GET_USERNS);
    for (int depth = 0; u >= 0 && depth < 40; depth++) {
      struct stat st;
      if (fstat(u, &st) == 0) out.userns_chain.emplace_back(uint64_t(st.st_dev), uint64_t(st.st_ino));
      int p = ioctl(u, NS_GET_PARENT);
      close_fd(u);
      u = p;
    }
    close_fd(u);
  }
  if (netns.empty()) {
    out.port_start_ok = read_port_start(&out.port_start);
  } else {
    // /proc/sys/net shows the namespace of the thread that opens it: a short-lived thread of ours
    // joins the container's (the engine's own threads never change theirs).
    try {
      std::thread th([&] {
        if (setns(nfd, CLONE_NEWNET) == 0) out.port_start_ok = read_port_start(&out.port_start);
      });
      th.join();
    } catch (...) {
      // no thread: keep the default
    }
  }
  close_fd(nfd);
  return out;
}

bool Engine::fd_room(int fd) {
  if (lim.budget == 0 || fd < 0 || uint32_t(fd) < lim.budget) return true;
  inc(ctr.limit_fds);
  if (ratelimit(14))
    logf(LOG_ERROR,
         "the broker holds about %u descriptors, its budget (RLIMIT_NOFILE %llu less %u kept for the control plane): "
         "refusing new broker connections, pools, listeners and connects until some are closed",
         lim.budget, static_cast<unsigned long long>(lim.nofile), lim.reserve);
  return false;
}

void Engine::at_limit(Container* c, std::atomic<uint64_t>& field, const char* what, uint32_t max) {
  inc(field);
  if (ratelimit(12))
    logc(LOG_WARN, c->id, "container %s is at its limit of %u %s: refusing more (it falls back to its own network)",
         c->id.c_str(), max, what);
}

void Engine::refuse_preload(int fd, int err) {
  sf_msg m = make_msg(SF_HELLO_OK, 0, err, 0, 0, 0, 0, 0);
  send_msg(fd, m, -1);
  // What came already (its HELLO) must not be left unread: closing a socket with unread data
  // resets the peer, which would then see ECONNRESET instead of the answer.
  char buf[sizeof(sf_msg)];
  for (int i = 0; i < 4 && recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0; i++) {}
  close_fd(fd);
}

bool Engine::port_allowed(PreloadConn* pc, uint16_t port) {
  Container* c = pc->c;
  if (port == 0 || port >= c->port_start || pc->low_ports) return true;
  int64_t now = now_ms();
  if (c->port_start_fixed || now - c->port_start_read_ms < 1000) return false;
  c->port_start_read_ms = now;
  NetnsInfo ni = read_netns_info(c->netns, false);
  if (ni.port_start_ok) c->port_start = ni.port_start;
  return port >= c->port_start;
}

// CapEff of /proc/PID/status has CAP_NET_BIND_SERVICE.
static bool cap_bind_service(int pid) {
  std::string v = proc_status_field(pid, "CapEff");
  return !v.empty() && (strtoull(v.c_str(), nullptr, 16) >> CAP_NET_BIND_SERVICE) & 1;
}

const char* Engine::peer_outside(Container* c, int fd) {
  if (c->netns_dev == 0 && c->netns_ino == 0)
    return "the container's network namespace could not be read at registration";
  int nfd = ioctl(fd, SIOCGSKNS);
  if (nfd < 0) return errno == EPERM ? "SIOCGSKNS: the broker lacks CAP_NET_ADMIN" : "SIOCGSKNS failed";
  struct stat st;
  bool ok = fstat(nfd, &st) == 0 && uint64_t(st.st_dev) == c->netns_dev && uint64_t(st.st_ino) == c->netns_ino;
  close_fd(nfd);
  return ok ? nullptr : "it is not in the container's network namespace";
}

bool Engine::peer_low_ports(Container* c, int fd) {
  ucred cr{};
  socklen_t cl = sizeof cr;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) != 0 || cr.pid <= 0) return false;
  // The process that connected, pinned: if it is alive after the reads below, its pid was not
  // recycled meanwhile, so what /proc showed was its. Older kernels (before 6.5) have no
  // SO_PEERPIDFD: a pidfd of the pid, then (the connection is accepted at once, and pids are not
  // reused that fast).
  int pidfd = -1;
  socklen_t pl = sizeof pidfd;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &pl) != 0)
    pidfd = errno == ENOPROTOOPT ? int(syscall(SYS_pidfd_open, cr.pid, 0)) : -1;
  if (pidfd < 0) return false;
  bool ok = cap_bind_service(cr.pid);
  if (ok) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/user", cr.pid);
    struct stat st;
    ok = stat(path, &st) == 0 &&
         std::find(c->userns_chain.begin(), c->userns_chain.end(),
                   std::make_pair(uint64_t(st.st_dev), uint64_t(st.st_ino))) != c->userns_chain.end() &&
         syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) == 0;
  }
  close_fd(pidfd);
  return ok;
}

}  // namespace sf
