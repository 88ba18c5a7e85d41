// The seccomp agent (the whole picture: seccomp_agent.h): its own socket for runc (unless the
// keeper owns that path), runc's connections until a whole state and its notify fd are in, the
// targets (one per notify fd) and the container each speaks for, the notifications and one
// handler per system call, the timers, and the epoll events of the agent's registrations.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>

#include "seccomp_agent.h"
#include "seccomp_proc.h"
#include "seccomp_state.h"
#include "util.h"

namespace sf {

namespace {

constexpr size_t kStateMax = 1 << 20;  // runc's state JSON (annotations included)
constexpr int kStateTimeoutMs = 5000;
constexpr int kHeaderWaitMs = 100;  // a steered connection's header not in its SYN: wait this long

// The header a steered connection starts with (in its SYN, unless the Fast Open queue was full;
// then it follows the handshake: a short, bounded wait on the engine thread).
bool read_steered_hdr(int fd, sf_hdr* h) {
  size_t got = 0;
  int64_t deadline = now_ms() + kHeaderWaitMs;
  while (got < sizeof *h) {
    ssize_t n = recv(fd, reinterpret_cast<char*>(h) + got, sizeof *h - got, MSG_DONTWAIT);
    if (n > 0) {
      got += size_t(n);
      continue;
    }
    if (n == 0 || (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)) return false;
    int64_t left = deadline - now_ms();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    poll(&p, 1, int(left));
  }
  return ntohl(h->magic) == SF_HDR_MAGIC && h->version == SF_HDR_VERSION;
}

// One SF_ACCEPTED (and its socket) from a listener channel's app end; -1: none.
int take_accepted(int end, sf_msg* m) {
  for (int i = 0; i < 8; i++) {
    int fds[2], nfds = 0;
    ssize_t n = recv_fds(end, m, sizeof *m, fds, 2, &nfds, nullptr);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    for (int k = 1; k < nfds; k++) close_fd(fds[k]);
    int fd = nfds > 0 ? fds[0] : -1;
    if (n == ssize_t(sizeof *m) && m->type == SF_ACCEPTED && fd >= 0) return fd;
    close_fd(fd);
  }
  return -1;
}

}  // namespace

SeccompAgent::SeccompAgent(std::unique_ptr<SeccompHost> h, Counters& c, const SeccompConfig& config)
    : host_(std::move(h)), host(*host_), ctr(c), cfg(config) {}

SeccompAgent::~SeccompAgent() { stop(); }

void SeccompAgent::logf(int level, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  host.vlog(level, fmt, ap);
  va_end(ap);
}

Error SeccompAgent::start() {
  if (!sc_notif_size) {
    seccomp_notif_sizes sz{};
    if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sz) == 0) {
      sc_notif_size = std::max<size_t>(sz.seccomp_notif, sizeof(seccomp_notif));
      sc_resp_size = std::max<size_t>(sz.seccomp_notif_resp, sizeof(seccomp_notif_resp));
    } else {
      sc_notif_size = sizeof(seccomp_notif);
      sc_resp_size = sizeof(seccomp_notif_resp);
    }
  }
  if (sc_keeper.fd >= 0) return Error{};  // attached (attach_keeper(), before the engine opened its guard)
  return listen_seccomp();
}

Error SeccompAgent::listen_seccomp() {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  const std::string& path = cfg.seccomp_path;
  if (path.size() >= sizeof a.sun_path)
    return Error{ENAMETOOLONG, "seccomp socket path \"" + path + "\" is longer than " + std::to_string(sizeof a.sun_path - 1) + " bytes"};
  memcpy(a.sun_path, path.c_str(), path.size() + 1);
  auto fail = [&](const char* what, int fd) {
    int e = errno;
    close_fd(fd);
    return Error{e, std::string(what) + " " + path + ": " + strerror(e)};
  };
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail("cannot create the seccomp socket", -1);
  if (unlink(path.c_str()) < 0 && errno != ENOENT) return fail("cannot remove the stale file at", fd);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return fail("cannot bind", fd);
  struct stat st;
  // Root only: whoever sends a notify fd here decides which container it speaks for.
  if (chmod(path.c_str(), 0600) < 0 || stat(path.c_str(), &st) < 0 || listen(fd, 256) < 0) {
    Error e = fail("cannot set up", fd);
    unlink(path.c_str());
    return e;
  }
  sc_path_dev = st.st_dev;
  sc_path_ino = st.st_ino;
  sc_listen.fd = fd;
  if (!ep_add(sc_listen, EPOLLIN)) {
    Error e = fail("epoll_ctl for", fd);
    sc_listen.fd = -1;
    unlink(path.c_str());
    return e;
  }
  return Error{};
}

void SeccompAgent::stop() {
  if (sc_keeper.fd >= 0) detach_keeper(true);  // the keeper answers from now on
  while (!sc_targets.empty()) kill_sc_target(sc_targets.back());
  while (!sc_conns.empty()) kill_sc_conn(sc_conns.back());
  if (sc_listen.fd >= 0) {
    ep_del(sc_listen);
    close_fd(sc_listen.fd);
    sc_listen.fd = -1;
    struct stat st;
    if (lstat(cfg.seccomp_path.c_str(), &st) == 0 && st.st_dev == sc_path_dev && st.st_ino == sc_path_ino)
      unlink(cfg.seccomp_path.c_str());
  }
}

void SeccompAgent::leave_keeper(bool drop_guard) {
  if (sc_keeper.fd < 0) return;
  if (drop_guard) keeper_drop_guard();
  detach_keeper(true);
}

void SeccompAgent::on_event(Ev* ev, uint32_t events) {
  switch (ev->kind) {
    case EV_SC_LISTEN: on_sc_listen(); break;
    case EV_SC_CONN: on_sc_conn(static_cast<ScConn*>(ev->owner), events); break;
    case EV_SC_NOTIFY: on_sc_notify(static_cast<ScTarget*>(ev->owner), events); break;
    case EV_SC_OUT: on_sc_out(static_cast<ScOut*>(ev->owner)); break;
    case EV_SC_ACCEPT: on_sc_accept(static_cast<ScAccept*>(ev->owner)); break;
    case EV_SC_KEEPER: on_sc_keeper(); break;
    default: break;
  }
}

void SeccompAgent::on_sc_listen() {
  for (int i = 0; i < 16; i++) {
    int fd = host.accept_fd(sc_listen.fd, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    ScConn* sc = new (std::nothrow) ScConn;
    if (!sc) {
      close_fd(fd);
      return;
    }
    sc->ev.fd = fd;
    sc->deadline = now_ms() + kStateTimeoutMs;
    SF_DLOG("seccomp: runc connected");
    if (!ep_add(sc->ev, EPOLLIN | EPOLLRDHUP)) {
      close_fd(fd);
      delete sc;
      continue;
    }
    sc_conns.push_back(sc);
  }
}

void SeccompAgent::kill_sc_conn(ScConn* sc) {
  if (sc->dead) return;
  ep_del(sc->ev);
  close_fd(sc->ev.fd);
  sc->ev.fd = -1;
  for (int f : sc->fds) close_fd(f);
  sc->fds.clear();
  erase_one(sc_conns, sc);
  bury(sc);
}

void SeccompAgent::on_sc_conn(ScConn* sc, uint32_t) {
  for (int i = 0; i < 64; i++) {
    char buf[16384];
    int fds[8], nfds;
    ssize_t n = recv_fds(sc->ev.fd, buf, sizeof buf, fds, 8, &nfds, nullptr);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      SF_DLOG("seccomp: reading runc's state: %s", strerror(errno));
      return kill_sc_conn(sc);
    }
    for (int k = 0; k < nfds; k++) {
      if (sc->fds.size() < 8) sc->fds.push_back(fds[k]); else close_fd(fds[k]);
    }
    if (n == 0) return sc_state(sc);  // runc closed: the whole state is here
    if (sc->buf.size() + size_t(n) > kStateMax) {
      if (ratelimit(11)) logf(LOG_WARN, "seccomp: container state larger than %zu bytes: dropped", kStateMax);
      return kill_sc_conn(sc);
    }
    sc->buf.append(buf, size_t(n));
    // runc sends the state in one message with the fd, but does not always close its end at once
    // (runc exec): a whole state with its fd is enough.
    OciState st;
    if (!sc->fds.empty() && parse_oci_state(sc->buf, &st)) return sc_state(sc);
  }
}

void SeccompAgent::sc_state(ScConn* sc) {
  OciState st;
  bool ok = parse_oci_state(sc->buf, &st);
  if (!ok || st.seccomp_index < 0 || size_t(st.seccomp_index) >= sc->fds.size() || st.metadata.empty()) {
    if (ratelimit(11))
      logf(LOG_WARN, "seccomp: a state without %s: dropped", !ok ? "valid JSON" : st.metadata.empty() ? "metadata (the container id)" : "a seccompFd");
    return kill_sc_conn(sc);
  }
  int nfd = sc->fds[size_t(st.seccomp_index)];
  sc->fds.erase(sc->fds.begin() + st.seccomp_index);
  sc_new_target(sc->buf, nfd, 0);
  kill_sc_conn(sc);
}

ScTarget* SeccompAgent::sc_new_target(std::string_view state, int nfd, uint32_t kidx) {
  OciState st;
  if (!parse_oci_state(state, &st) || st.metadata.empty()) {
    if (ratelimit(11)) logf(LOG_WARN, "seccomp: a state without %s: dropped", st.metadata.empty() ? "metadata (the container id)" : "valid JSON");
    close_fd(nfd);
    return nullptr;
  }
  ScTarget* t = new (std::nothrow) ScTarget;
  if (!t) {
    close_fd(nfd);
    return nullptr;
  }
  t->id = st.metadata;
  t->pid = int(st.pid);
  struct stat nst;
  if (t->pid > 0 && stat(("/proc/" + std::to_string(t->pid) + "/ns/net").c_str(), &nst) == 0) {
    t->ns_dev = uint64_t(nst.st_dev);
    t->ns_ino = uint64_t(nst.st_ino);
  }
  t->kidx = kidx;
  t->ev.fd = nfd;
  set_nonblock(nfd, true);
  if (!ep_add(t->ev, EPOLLIN)) {
    logf(LOG_WARN, "seccomp: epoll_ctl for the notify fd of %s: %s", t->id.c_str(), strerror(errno));
    close_fd(nfd);
    delete t;
    return nullptr;
  }
  sc_targets.push_back(t);
  inc(ctr.seccomp_fds);
  SF_DLOG("seccomp: notify fd for container %s (pid %d)", t->id.c_str(), t->pid);
  return t;
}

// The container a notify fd's calls belong to. runc's metadata is the id of the container the fd
// came from; one that joined another's network namespace (a Kubernetes pod's app containers, which
// join the sandbox's; docker --network container:X; a Podman pod) is not registered itself but
// shares the registration of that namespace (hooks/lifecycle.ts), so a miss by id is resolved by the
// namespace of the process runc reported, once per registration since the last miss.
Container* SeccompAgent::sc_container(ScTarget* t) {
  if (Container* c = host.container(t->id)) return c;
  if (!t->ns_ino || t->resolved_gen == host.containers_gen()) return nullptr;
  t->resolved_gen = host.containers_gen();
  Container* c = host.container_in_netns(t->ns_dev, t->ns_ino);
  if (!c) return nullptr;
  SF_DLOG("seccomp: %s shares the network namespace of container %s", t->id.c_str(), c->id.c_str());
  t->id = c->id;
  return c;
}

void SeccompAgent::kill_sc_target(ScTarget* t) {
  if (t->dead) return;
  // Held notifications: CONTINUE (the engine stops; with processes gone it simply fails).
  while (!t->outs.empty()) sc_fail(t->outs.back());
  for (auto& a : t->adopt) close_fd(a.real_fd);
  t->adopt.clear();
  // Held accepts: ECONNABORTED (a server retries; CONTINUE would hand it a raw steered connection).
  while (!t->accepts.empty()) {
    ScAccept* a = t->accepts.back();
    uint64_t id = a->id;
    sc_drop_accept(a);
    sc_respond(t, id, ECONNABORTED, false);
  }
  ep_del(t->ev);
  close_fd(t->ev.fd);
  t->ev.fd = -1;
  erase_one(sc_targets, t);
  dec(ctr.seccomp_fds);
  bury(t);
}

void SeccompAgent::expire(int64_t now) {
  if (sc_targets.empty() && sc_conns.empty()) return;
  sc_adopt_pending(now);
  for (size_t i = 0; i < sc_conns.size();) {
    ScConn* sc = sc_conns[i];
    if (sc->deadline <= now) kill_sc_conn(sc); else i++;
  }
  for (size_t i = 0; i < sc_targets.size(); i++) {
    ScTarget* t = sc_targets[i];
    for (size_t k = 0; k < t->outs.size();) {
      ScOut* o = t->outs[k];
      if (o->in_epoll && o->deadline <= now) {
        SF_DLOG("seccomp: connect to %s:%u timed out", ip_str(o->dst).c_str(), o->dport);
        inc(ctr.connect_failures);
        sc_fail(o);
      } else {
        k++;
      }
    }
    // A held accept whose caller was interrupted by a signal (or is gone) has an invalid id now.
    for (size_t k = 0; k < t->accepts.size();) {
      ScAccept* a = t->accepts[k];
      if (a->check_at <= now && !id_valid(t->ev.fd, a->id)) {
        inc(ctr.seccomp_accepts_ended);
        sc_drop_accept(a);
        continue;
      }
      if (a->check_at <= now) a->check_at = now + kAcceptCheckMs;
      k++;
    }
  }
}

int64_t SeccompAgent::next_deadline() const {
  int64_t t = -1;
  for (const ScConn* sc : sc_conns)
    if (t < 0 || sc->deadline < t) t = sc->deadline;
  for (const ScTarget* x : sc_targets)
    for (const ScOut* o : x->outs)
      if (o->in_epoll && (t < 0 || o->deadline < t)) t = o->deadline;
  for (const ScTarget* x : sc_targets) {
    for (const ScAccept* a : x->accepts)
      if (t < 0 || a->check_at < t) t = a->check_at;
    if (!x->adopt.empty()) {  // retried every 100 ms until its container is registered
      int64_t soon = now_ms() + 100;
      if (t < 0 || soon < t) t = soon;
    }
  }
  return t;
}

void SeccompAgent::on_sc_notify(ScTarget* t, uint32_t events) {
  if (events & EPOLLIN) {
    // RECV blocks when nothing is pending, so receive only while poll says something is.
    for (int i = 0; i < 64 && !t->dead; i++) {
      pollfd p{t->ev.fd, POLLIN, 0};
      if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN)) break;
      alignas(8) char buf[512];
      if (sc_notif_size > sizeof buf) break;  // a kernel far newer than this file: never reached
      memset(buf, 0, sc_notif_size);
      if (ioctl(t->ev.fd, SECCOMP_IOCTL_NOTIF_RECV, buf) < 0) {
        if (errno == EINTR || errno == ENOENT) continue;  // ENOENT: the caller was killed meanwhile
        if (ratelimit(11)) logf(LOG_WARN, "seccomp: receive for %s: %s", t->id.c_str(), strerror(errno));
        break;
      }
      sc_handle(t, buf);
    }
  }
  if (!t->dead && (events & (EPOLLHUP | EPOLLERR)) && !(events & EPOLLIN)) {
    // Every process using the filter has exited.
    while (!t->outs.empty()) sc_drop_out(t->outs.back());
    while (!t->accepts.empty()) sc_drop_accept(t->accepts.back());
    kill_sc_target(t);
  }
}

void SeccompAgent::sc_handle(ScTarget* t, const void* notif) {
  sc_cur_slot = sc_claim_slot(t, notif);
  sc_notification(t, notif);
  if (sc_cur_slot >= 0) sc_release_slot(sc_cur_slot);  // answered (or the caller is gone)
  sc_cur_slot = -1;
}

// Every notification gets exactly one answer, from its handler (or none when the caller is gone).
void SeccompAgent::sc_notification(ScTarget* t, const void* raw) {
  const seccomp_notif* n = static_cast<const seccomp_notif*>(raw);
  switch (n->data.nr) {
    case __NR_connect: return sc_connect_call(t, raw);
    case __NR_getsockname: return sc_sockname(t, raw, false);
    case __NR_getpeername: return sc_sockname(t, raw, true);
    case __NR_listen: return sc_listen_call(t, raw);
    case __NR_accept:
    case __NR_accept4: return sc_accept_call(t, raw);
    default: sc_respond(t, n->id, 0, true);
  }
}

bool SeccompAgent::sc_respond(ScTarget* t, uint64_t id, int error, bool cont) {
  alignas(8) char buf[256] = {};
  seccomp_notif_resp* r = reinterpret_cast<seccomp_notif_resp*>(buf);
  r->id = id;
  r->val = 0;
  r->error = cont ? 0 : -error;
  r->flags = cont ? SECCOMP_USER_NOTIF_FLAG_CONTINUE : 0;
  if (cont) inc(ctr.seccomp_continued);
  for (;;) {
    if (ioctl(t->ev.fd, SECCOMP_IOCTL_NOTIF_SEND, r) == 0) return true;
    if (errno == EINTR) continue;
    // ENOENT: the target is gone (killed), nothing to answer.
    if (errno != ENOENT && ratelimit(11)) logf(LOG_WARN, "seccomp: answer for %s: %s", t->id.c_str(), strerror(errno));
    return false;
  }
}

// getsockname/getpeername on a socket the agent swapped: the virtual address, written into the
// target's memory as the kernel would (truncated to its buffer, the full length reported).
// Every other socket: CONTINUE.
void SeccompAgent::sc_sockname(ScTarget* t, const void* raw, bool peer) {
  const seccomp_notif* n = static_cast<const seccomp_notif*>(raw);
  const uint64_t id = n->id;
  auto cont = [&] { sc_respond(t, id, 0, true); };
  if (t->swapped.empty()) return cont();
  int pid = int(n->pid);
  uint32_t tfd = uint32_t(n->data.args[0]);
  uint64_t addr = n->data.args[1], lenp = n->data.args[2];
  auto it = t->swapped.find((uint64_t(uint32_t(pid)) << 32) | tfd);
  if (it == t->swapped.end()) {  // a thread: the table is its thread group's
    int tg = tgid_of(pid);
    if (tg <= 0 || tg == pid) return cont();
    it = t->swapped.find((uint64_t(uint32_t(tg)) << 32) | tfd);
    if (it == t->swapped.end()) return cont();
  }
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fd/%u", pid, tfd);
  struct stat st;
  if (stat(path, &st) != 0 || uint64_t(st.st_ino) != it->second.ino) {
    if (errno != EACCES) t->swapped.erase(it);  // closed or replaced since
    return cont();
  }
  if (peer && it->second.listener) {  // a listening socket has no peer
    if (id_valid(t->ev.fd, id)) sc_respond(t, id, ENOTCONN, false);
    return;
  }
  snprintf(path, sizeof path, "/proc/%d/mem", pid);
  int mfd = open(path, O_RDWR | O_CLOEXEC);
  if (mfd < 0) return cont();
  bool valid = id_valid(t->ev.fd, id);
  socklen_t len = 0;
  int err = 0;
  if (valid && (!lenp || pread(mfd, &len, sizeof len, off_t(lenp)) != ssize_t(sizeof len))) err = EFAULT;
  if (valid && !err && int(len) < 0) err = EINVAL;
  if (valid && !err) {
    sockaddr_storage sa;
    socklen_t full = program_sockaddr(it->second.v6, peer ? it->second.rip : it->second.lip, peer ? it->second.rport : it->second.lport, &sa);
    size_t k = std::min<size_t>(len, full);
    if ((k && (!addr || pwrite(mfd, &sa, k, off_t(addr)) != ssize_t(k))) ||
        pwrite(mfd, &full, sizeof full, off_t(lenp)) != ssize_t(sizeof full))
      err = EFAULT;
  }
  close_fd(mfd);
  if (!valid) return;  // the caller is gone
  sc_respond(t, id, err, false);
}

// connect(): a destination SlimFast serves (classify_connect(), as for the preload's SF_CONNECT)
// gets a host connection made by the broker; the caller's fd number gets it once it is connected.
void SeccompAgent::sc_connect_call(ScTarget* t, const void* raw) {
  const seccomp_notif* n = static_cast<const seccomp_notif*>(raw);
  const uint64_t id = n->id;
  auto cont = [&] { sc_respond(t, id, 0, true); };
  int tfd = int(n->data.args[0]);
  uint64_t addr = n->data.args[1];
  uint64_t alen = n->data.args[2];
  Container* c = sc_container(t);
  if (!c || tfd < 0 || alen < sizeof(sockaddr_in) || alen > 128 || !addr) return cont();
  int pid = int(n->pid);

  // The destination, from the target's memory: /proc/PID/mem opened, then ID_VALID (the pid still
  // names the caller), then read.
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/mem", pid);
  int mfd = open(path, O_RDONLY | O_CLOEXEC);
  if (mfd < 0) return cont();
  sockaddr_in sa{};
  bool valid = id_valid(t->ev.fd, id);
  ssize_t got = valid ? pread(mfd, &sa, sizeof sa, off_t(addr)) : -1;
  close_fd(mfd);
  if (!valid) return;  // the caller is gone: nothing to answer
  if (got != ssize_t(sizeof sa) || sa.sin_family != AF_INET) return cont();
  uint32_t dst = ntohl(sa.sin_addr.s_addr);
  uint16_t dport = ntohs(sa.sin_port);

  Route r{};
  Listener* l = nullptr;
  DestKind k = host.classify_connect(c, dst, dport, &r, &l);
  if (k == DEST_DENY) {
    sc_respond(t, id, EACCES, false);
    return;
  }
  if (k != DEST_PEER && k != DEST_STEERED_LOCAL) return cont();  // same-host pairs: the container's interface

  // The target's socket itself (a copy of its file): IPv4 TCP, not connected, its flags.
  int tg = tgid_of(pid);
  int copy = copy_process_fd(tg, tfd);
  if (copy < 0) return cont();
  if (!id_valid(t->ev.fd, id)) {  // pid reuse between the checks: the caller is gone
    close_fd(copy);
    return;
  }
  int dom = 0, type = 0, proto = 0;
  socklen_t ol = sizeof dom;
  bool tcp4 = getsockopt(copy, SOL_SOCKET, SO_DOMAIN, &dom, &ol) == 0 && dom == AF_INET;
  ol = sizeof type;
  tcp4 = tcp4 && getsockopt(copy, SOL_SOCKET, SO_TYPE, &type, &ol) == 0 && type == SOCK_STREAM;
  ol = sizeof proto;
  tcp4 = tcp4 && getsockopt(copy, SOL_SOCKET, SO_PROTOCOL, &proto, &ol) == 0 && proto == IPPROTO_TCP;
  sockaddr_in peer{};
  socklen_t pl = sizeof peer;
  bool connected = getpeername(copy, reinterpret_cast<sockaddr*>(&peer), &pl) == 0;
  sockaddr_in self{};
  socklen_t sl = sizeof self;
  uint16_t bound_port = getsockname(copy, reinterpret_cast<sockaddr*>(&self), &sl) == 0 ? ntohs(self.sin_port) : 0;
  if (!tcp4 || connected) {
    close_fd(copy);
    return cont();
  }
  // Held notifications keep descriptors here (the caller's socket, the host socket): at the
  // container's limit its connects take the kernel's path (the policy allowed them above).
  if (t->outs.size() + t->accepts.size() >= cfg.pending_max) {
    host.at_pending_limit(c);
    close_fd(copy);
    return cont();
  }

  ScOut* o = new (std::nothrow) ScOut;
  if (!o) {
    close_fd(copy);
    return cont();
  }
  o->t = t;
  o->id = id;
  o->target_fd = tfd;
  o->copy_fd = copy;
  o->cloexec = target_cloexec(pid, tfd);
  o->tgid = tg;
  o->dst = dst;
  o->dport = dport;
  o->sport = bound_port ? bound_port : host.next_src_port();
  o->local = k == DEST_STEERED_LOCAL;
  o->slot = sc_cur_slot;  // answered later: its in-flight slot goes with it
  sc_cur_slot = -1;
  t->outs.push_back(o);
  inc(ctr.seccomp_pending);

  bool pending = false;
  int fd = host.open_connect(c, r, dst, dport, o->sport, &pending, &o->hdr_sent);
  if (fd < 0) return sc_fail(o);
  o->ev.fd = fd;
  if (!pending) return sc_finish(o);
  if (!(o->in_epoll = ep_add(o->ev, EPOLLOUT))) return sc_fail(o);
  o->deadline = now_ms() + cfg.connect_timeout_ms;
}

void SeccompAgent::on_sc_out(ScOut* o) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(o->ev.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
  if (err == 0) return sc_finish(o);
  SF_DLOG("seccomp: connect to %s:%u failed: %s", ip_str(o->dst).c_str(), o->dport, strerror(err));
  inc(ctr.connect_failures);
  sc_fail(o);
}

// Unlinks o from its target and frees it after this batch; closes its descriptors.
void SeccompAgent::sc_drop_out(ScOut* o) {
  if (o->dead) return;
  if (o->in_epoll) ep_del(o->ev);
  o->in_epoll = false;
  close_fd(o->ev.fd);
  o->ev.fd = -1;
  close_fd(o->copy_fd);
  o->copy_fd = -1;
  erase_one(o->t->outs, o);
  sc_release_slot(o->slot);
  o->slot = -1;
  dec(ctr.seccomp_pending);
  bury(o);
}

void SeccompAgent::sc_fail(ScOut* o) {
  ScTarget* t = o->t;
  uint64_t id = o->id;
  sc_drop_out(o);
  sc_respond(t, id, 0, true);
}

void SeccompAgent::sc_finish(ScOut* o) {
  ScTarget* t = o->t;
  Container* c = sc_container(t);
  if (!c) return sc_fail(o);  // unregistered meanwhile
  if (host.policy_denies(c, o->dst, o->dport)) {  // a policy set while it connected
    uint64_t id = o->id;
    sc_drop_out(o);
    sc_respond(t, id, EACCES, false);
    return;
  }
  int fd = o->ev.fd;
  if (o->in_epoll) ep_del(o->ev);
  o->in_epoll = false;
  if (!o->hdr_sent && !host.write_connect_header(fd, c, o->dst, o->dport, o->sport)) {
    inc(ctr.connect_failures);
    return sc_fail(o);
  }
  // The application's flags and the options that matter before a connect.
  int fl = fcntl(o->copy_fd, F_GETFL);
  make_blocking_fresh(fd);
  if (fl >= 0 && (fl & O_NONBLOCK)) set_nonblock(fd, true);
  static const int kOpts[][2] = {{IPPROTO_TCP, TCP_NODELAY}, {SOL_SOCKET, SO_KEEPALIVE}};
  for (const auto& lo : kOpts) {
    int level = lo[0], opt = lo[1];
    int v = 0;
    socklen_t vl = sizeof v;
    if (getsockopt(o->copy_fd, level, opt, &v, &vl) == 0 && v) set_int_opt(fd, level, opt, v);
  }
  if (notif_addfd(t->ev.fd, o->id, SECCOMP_ADDFD_FLAG_SETFD, fd, o->target_fd, o->cloexec) < 0) {
    if (errno == ENOENT) return sc_drop_out(o);  // the caller is gone
    if (ratelimit(11)) logf(LOG_WARN, "seccomp: installing the socket in %s: %s", t->id.c_str(), strerror(errno));
    return sc_fail(o);
  }
  uint64_t id = o->id;
  bool local = o->local, hdr_sent = o->hdr_sent;
  struct stat st;
  ScTarget::Swapped sw{fstat(fd, &st) == 0 ? uint64_t(st.st_ino) : 0, c->ip, o->dst, o->sport, o->dport};
  uint64_t key = (uint64_t(uint32_t(o->tgid)) << 32) | uint32_t(o->target_fd);
  sc_drop_out(o);  // closes our copy; the target holds the socket now
  if (!sc_respond(t, id, 0, false)) return;
  if (sw.ino) {
    if (t->swapped.size() >= 8192) {  // forget sockets the processes closed (or processes gone)
      for (auto it = t->swapped.begin(); it != t->swapped.end();) {
        char p[64];
        snprintf(p, sizeof p, "/proc/%u/fd/%u", unsigned(it->first >> 32), unsigned(it->first & 0xffffffffu));
        struct stat x;
        if (stat(p, &x) != 0 || uint64_t(x.st_ino) != it->second.ino) it = t->swapped.erase(it); else ++it;
      }
    }
    t->swapped[key] = sw;
  }
  inc(ctr.seccomp_handed);
  if (local) {
    inc(ctr.same_host);
    if (hdr_sent) inc(ctr.same_host_steered);
  } else {
    inc(ctr.handed_out);
  }
}

// listen() of an IPv4 TCP socket bound to the container's vIP (or any address) while kernel
// steering is on: what the preload's SF_LISTEN + SF_STEER_SOCKET do, done by the broker. The
// application's socket listens (the broker's copy of it serves plain clients over the container
// interface, through the listener's channel, whose app end the broker holds), and a steered host
// socket takes its fd number. Everything else: CONTINUE.
void SeccompAgent::sc_listen_call(ScTarget* t, const void* raw) {
  const seccomp_notif* n = static_cast<const seccomp_notif*>(raw);
  const uint64_t id = n->id;
  auto cont = [&] { sc_respond(t, id, 0, true); };
  Container* c = sc_container(t);
  int tfd = int(n->data.args[0]);
  int backlog = int(n->data.args[1]);
  if (!host.steering() || !c || tfd < 0) return cont();
  int pid = int(n->pid);
  int tg = tgid_of(pid);
  // A dynamically linked program with the preload: its own listen() path (the preload's real
  // listen() lands here too).
  if (tg <= 0 || has_preload(tg)) return cont();
  int copy = copy_process_fd(tg, tfd);
  if (copy < 0) return cont();
  if (!id_valid(t->ev.fd, id)) {
    close_fd(copy);
    return;
  }
  auto opt = [&](int level, int name) {
    int v = -1;
    socklen_t ol = sizeof v;
    return getsockopt(copy, level, name, &v, &ol) == 0 ? v : -1;
  };
  // IPv4, or IPv6 dual-stack (IPV6_V6ONLY off) bound to :: or ::ffff:a.b.c.d, as Go's
  // net.Listen("tcp", ":port") makes it.
  sockaddr_storage self{}, peer{};
  socklen_t sl = sizeof self, pl = sizeof peer;
  int dom = opt(SOL_SOCKET, SO_DOMAIN);
  bool v6 = dom == AF_INET6;
  bool ok = (dom == AF_INET || (v6 && opt(IPPROTO_IPV6, IPV6_V6ONLY) == 0)) && opt(SOL_SOCKET, SO_TYPE) == SOCK_STREAM &&
            opt(SOL_SOCKET, SO_PROTOCOL) == IPPROTO_TCP && opt(SOL_SOCKET, SO_ACCEPTCONN) == 0 &&
            getpeername(copy, reinterpret_cast<sockaddr*>(&peer), &pl) != 0 &&
            getsockname(copy, reinterpret_cast<sockaddr*>(&self), &sl) == 0 && self.ss_family == dom;
  if (ok && v6) {
    const in6_addr& a6 = reinterpret_cast<const sockaddr_in6*>(&self)->sin6_addr;
    ok = IN6_IS_ADDR_UNSPECIFIED(&a6) || IN6_IS_ADDR_V4MAPPED(&a6);  // a real IPv6 address: not ours
  }
  uint16_t port = 0;
  uint32_t bound = sockaddr_ip(self, &port);
  // Loopback, another address, or not bound yet (listen() picks a port): the kernel's listen.
  if (!ok || port == 0 || (bound != 0 && bound != c->ip)) {
    close_fd(copy);
    return cont();
  }
  Listener* l = host.find_listener(c->ip, port);
  if (l && l->steer_slot > 0 && !host.keep_steered(l)) {
    host.remove_listener(l, true);
    l = nullptr;
  }
  if (l) {  // another process serves that address on SlimFast already
    close_fd(copy);
    return cont();
  }
  int app_fl = fcntl(copy, F_GETFL);
  bool cloexec = target_cloexec(pid, tfd);
  if (listen(copy, backlog) < 0) {
    int e = errno;
    close_fd(copy);
    sc_respond(t, id, e, false);
    return;
  }
  // From here on the listener owns copy (as its channel's real socket); the kernel's listen has
  // run on it already, so CONTINUE on failure only repeats it.
  Channel* ch = host.add_steered_listener(c, port, copy, bound, backlog);
  if (!ch) return cont();
  l = ch->l;
  auto fail = [&] {
    host.remove_listener(l, false);
    cont();
  };
  if (app_fl >= 0 && (app_fl & O_NONBLOCK)) set_nonblock(l->steer_fd, true);
  if (notif_addfd(t->ev.fd, id, SECCOMP_ADDFD_FLAG_SETFD, l->steer_fd, tfd, cloexec) < 0) {
    if (errno == ENOENT) {  // the caller is gone
      host.remove_listener(l, false);
      return;
    }
    if (ratelimit(11)) logf(LOG_WARN, "seccomp: installing the steered listener in %s: %s", t->id.c_str(), strerror(errno));
    return fail();
  }
  uint64_t ino = l->steer_ino;
  // The target holds the steered socket now; its close empties the slot and the sweep removes
  // the listener (with its channel, the broker's copy of the app's socket and the held app end).
  inc(ctr.seccomp_listeners);
  host.steered_listener_placed(l);
  SF_DLOG("seccomp: listen %s:%u (%s): steered", ip_str(l->vip).c_str(), l->port, c->id.c_str());
  if (!sc_respond(t, id, 0, false)) return;
  if (t->kidx) keeper_steered(t, l, tg, tfd, ch->real.fd, v6);
  t->steered[ino] = ScTarget::SteeredFd{l->vip, l->port, v6};
  ScTarget::Swapped sw{ino, bound, 0, port, 0, true, v6};
  t->swapped[(uint64_t(uint32_t(tg)) << 32) | uint32_t(tfd)] = sw;
}

// accept()/accept4() on a steered listener the agent put in place: a connection the kernel
// steered in (its header names the virtual peer) or, for a doorbell, the plain client waiting on
// the listener's channel. Nothing there: EAGAIN for a non-blocking listener; a blocking one
// waits (held notification). Every other fd: CONTINUE.
void SeccompAgent::sc_accept_call(ScTarget* t, const void* raw) {
  const seccomp_notif* n = static_cast<const seccomp_notif*>(raw);
  const uint64_t id = n->id;
  auto cont = [&] { sc_respond(t, id, 0, true); };
  if (t->steered.empty()) return cont();
  int tfd = int(n->data.args[0]);
  uint64_t addr = n->data.args[1], lenp = n->data.args[2];
  int flags = n->data.nr == __NR_accept4 ? int(n->data.args[3]) : 0;
  int pid = int(n->pid);
  int tg = tgid_of(pid);
  int copy = copy_process_fd(tg, tfd);
  if (copy < 0) return cont();
  if (!id_valid(t->ev.fd, id)) {
    close_fd(copy);
    return;
  }
  struct stat st;
  auto it = fstat(copy, &st) == 0 ? t->steered.find(uint64_t(st.st_ino)) : t->steered.end();
  if (it == t->steered.end()) {
    close_fd(copy);
    return cont();
  }
  Listener* l = host.find_listener(it->second.vip, it->second.port);
  if (!l || l->steer_ino != uint64_t(st.st_ino)) {  // a listener gone since (the socket was closed)
    t->steered.erase(it);
    close_fd(copy);
    return cont();
  }
  if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) {
    close_fd(copy);
    sc_respond(t, id, EINVAL, false);
    return;
  }
  if (sc_take_conn(t, id, pid, tg, copy, uint64_t(st.st_ino), flags, addr, lenp)) {
    close_fd(copy);
    return;
  }
  int fl = fcntl(copy, F_GETFL);
  // A held accept keeps the broker's copy of the listener until a connection comes: at the
  // container's limit (or the broker's budget) the call fails as accept() does when out of
  // descriptors, which servers retry after a pause.
  if (fl >= 0 && !(fl & O_NONBLOCK)) {
    bool room = t->outs.size() + t->accepts.size() < cfg.pending_max;
    if (!room) {
      if (Container* c = sc_container(t)) host.at_pending_limit(c);
    }
    if (!room || !host.fd_room(copy)) {
      close_fd(copy);
      sc_respond(t, id, room ? ENFILE : EMFILE, false);
      return;
    }
  }
  ScAccept* a = fl >= 0 && !(fl & O_NONBLOCK) ? new (std::nothrow) ScAccept : nullptr;
  if (!a) {
    close_fd(copy);
    sc_respond(t, id, EAGAIN, false);
    return;
  }
  a->t = t;
  a->id = id;
  a->ino = uint64_t(st.st_ino);
  a->pid = pid;
  a->tgid = tg;
  a->flags = flags;
  a->addr = addr;
  a->lenp = lenp;
  a->check_at = now_ms() + kAcceptCheckMs;
  a->slot = sc_cur_slot;
  sc_cur_slot = -1;
  a->ev.fd = copy;
  if (!ep_add(a->ev, EPOLLIN)) {
    close_fd(copy);
    delete a;
    sc_respond(t, id, EAGAIN, false);
    return;
  }
  t->accepts.push_back(a);
  inc(ctr.seccomp_accepts_held);
}

int SeccompAgent::sc_take_conn(ScTarget* t, uint64_t id, int pid, int tgid, int lfd, uint64_t ino, int flags, uint64_t addr,
                         uint64_t lenp) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/mem", pid);
  int mfd = open(path, O_RDWR | O_CLOEXEC);
  if (mfd < 0 || !id_valid(t->ev.fd, id)) {  // the caller is gone
    close_fd(mfd);
    return 1;
  }
  auto answer = [&](int err) {
    close_fd(mfd);
    sc_respond(t, id, err, false);
    return 1;
  };
  socklen_t len = 0;
  if (addr) {
    if (!lenp || pread(mfd, &len, sizeof len, off_t(lenp)) != ssize_t(sizeof len)) return answer(EFAULT);
    if (int(len) < 0) return answer(EINVAL);
  }
  Channel* ch = nullptr;
  bool v6 = false;
  if (auto it = t->steered.find(ino); it != t->steered.end()) {
    v6 = it->second.v6;
    if (Listener* l = host.find_listener(it->second.vip, it->second.port); l && l->steer_ino == ino)
      for (Channel* x : l->chans)
        if (x->held_end >= 0) ch = x;
  }
  for (int i = 0; i < 64; i++) {
    // The listener's file is the application's (blocking or not): accept only what is there.
    pollfd p{lfd, POLLIN, 0};
    if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN)) break;
    int nfd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (nfd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
      return answer(errno);
    }
    sf_hdr h{};
    if (!read_steered_hdr(nfd, &h)) {
      SF_DLOG("seccomp: steered connection without a header dropped");
      close_fd(nfd);
      continue;
    }
    int conn = nfd;
    uint32_t lip, rip;
    uint16_t lport, rport;
    bool steered = h.type != SF_HDR_DOORBELL;
    if (steered) {
      lip = ntohl(h.dst_vip);
      lport = ntohs(h.dst_port);
      rip = ntohl(h.src_vip);
      rport = ntohs(h.src_port);
    } else {  // a plain client waits on the channel
      close_fd(nfd);
      sf_msg m{};
      conn = ch ? take_accepted(ch->held_end, &m) : -1;
      if (conn < 0) continue;  // taken by another accept meanwhile
      lip = ntohl(m.vip_a);
      lport = ntohs(m.port_a);
      rip = ntohl(m.vip_b);
      rport = ntohs(m.port_b);
    }
    set_nonblock(conn, (flags & SOCK_NONBLOCK) != 0);
    if (addr) {
      sockaddr_storage sa;
      socklen_t full = program_sockaddr(v6, rip, rport, &sa);
      size_t k = std::min<size_t>(len, full);
      if ((k && pwrite(mfd, &sa, k, off_t(addr)) != ssize_t(k)) ||
          pwrite(mfd, &full, sizeof full, off_t(lenp)) != ssize_t(sizeof full)) {
        reset_close(conn);
        return answer(EFAULT);
      }
    }
    close_fd(mfd);
    mfd = -1;
    // The new fd number is the call's return value.
    int rc = notif_addfd(t->ev.fd, id, SECCOMP_ADDFD_FLAG_SEND, conn, 0, (flags & SOCK_CLOEXEC) != 0);
    if (rc < 0) {
      int e = errno;
      reset_close(conn);
      if (e != ENOENT) sc_respond(t, id, e, false);  // ENOENT: the caller is gone
      return 1;
    }
    struct stat st;
    if (steered && fstat(conn, &st) == 0) {
      ScTarget::Swapped sw{uint64_t(st.st_ino), lip, rip, lport, rport, false, v6};
      t->swapped[(uint64_t(uint32_t(tgid)) << 32) | uint32_t(rc)] = sw;
    }
    close_fd(conn);
    inc(ctr.seccomp_accepted);
    return 1;
  }
  close_fd(mfd);
  return 0;
}

void SeccompAgent::on_sc_accept(ScAccept* a) {
  if (!id_valid(a->t->ev.fd, a->id)) {  // interrupted: the restarted call is a new notification
    inc(ctr.seccomp_accepts_ended);
    return sc_drop_accept(a);
  }
  if (sc_take_conn(a->t, a->id, a->pid, a->tgid, a->ev.fd, a->ino, a->flags, a->addr, a->lenp)) sc_drop_accept(a);
}

void SeccompAgent::sc_drop_accept(ScAccept* a) {
  if (a->dead) return;
  ep_del(a->ev);
  close_fd(a->ev.fd);
  a->ev.fd = -1;
  erase_one(a->t->accepts, a);
  sc_release_slot(a->slot);
  a->slot = -1;
  dec(ctr.seccomp_accepts_held);
  bury(a);
}

}  // namespace sf
