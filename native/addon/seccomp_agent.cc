// The seccomp agent's core (the whole picture: seccomp_agent.h): its own socket for runc (unless
// the keeper owns that path), runc's connections until a whole state and its notify fd are in, the
// targets (one per notify fd) and the container each speaks for, the timers, and the epoll events
// of the agent's registrations.
#include <fcntl.h>
#include <linux/seccomp.h>
#include <sys/epoll.h>
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
    return Error{ENAMETOOLONG, "seccomp socket path \"" + path + "\" is longer than " +
                                   std::to_string(sizeof a.sun_path - 1) + " bytes"};
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
    case EV_SC_LISTEN:
      on_sc_listen();
      break;
    case EV_SC_CONN:
      on_sc_conn(static_cast<ScConn*>(ev->owner), events);
      break;
    case EV_SC_NOTIFY:
      on_sc_notify(static_cast<ScTarget*>(ev->owner), events);
      break;
    case EV_SC_OUT:
      on_sc_out(static_cast<ScOut*>(ev->owner));
      break;
    case EV_SC_ACCEPT:
      on_sc_accept(static_cast<ScAccept*>(ev->owner));
      break;
    case EV_SC_KEEPER:
      on_sc_keeper();
      break;
    default:
      break;
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
      if (sc->fds.size() < 8)
        sc->fds.push_back(fds[k]);
      else
        close_fd(fds[k]);
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
      logf(LOG_WARN, "seccomp: a state without %s: dropped",
           !ok                   ? "valid JSON"
           : st.metadata.empty() ? "metadata (the container id)"
                                 : "a seccompFd");
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
    if (ratelimit(11))
      logf(LOG_WARN, "seccomp: a state without %s: dropped",
           st.metadata.empty() ? "metadata (the container id)" : "valid JSON");
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
    if (sc->deadline <= now)
      kill_sc_conn(sc);
    else
      i++;
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

}  // namespace sf
