// The broker's end of the link with slimfast-seccomp-keeper, part of the seccomp agent
// (seccomp_agent.h; the keeper: native/keeper/keeper.c; the protocol and why the keeper exists:
// native/include/slimfast_keeper.h).
//
// Attached, the broker gets every notify fd from the keeper (SFK_TARGET) instead of from runc, and
// serves them as the agent does. It writes each notification it receives into the shared
// in-flight table and clears it once answered, so that the keeper can answer what a dead broker
// left. It tells the keeper of every steered listener it puts into a target (SFK_STEERED, with the
// container-side socket for plain clients, which would otherwise die with the broker) and of its
// end (SFK_UNSTEERED). A broker attaching after a restart takes those listeners over: the target's
// steered socket (pidfd_getfd) gets a slot and a channel again, as the preload's SF_STEER_AGAIN
// does; the notifications the keeper held meanwhile (blocking accepts) are answered after that.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "seccomp_agent.h"
#include "util.h"

namespace sf {

namespace {

constexpr int kAdoptWaitMs = 15000;  // a target's container not registered by then: give up

bool send_k(int fd, sfk_msg m, int pass_fd) {
  m.magic = SFK_MAGIC;
  int e = send_buf(fd, &m, sizeof m, pass_fd);
  if (e) errno = e;
  return e == 0;
}

}  // namespace

bool SeccompAgent::attach_keeper() {
  const std::string& path = cfg.seccomp_keeper;
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) return false;
  memcpy(a.sun_path, path.c_str(), path.size() + 1);
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) {
    logf(LOG_WARN,
         "seccomp: no keeper at %s (%s): the agent listens on %s itself, and a broker restart cuts its containers off",
         path.c_str(), strerror(errno), cfg.seccomp_path.c_str());
    close_fd(fd);
    return false;
  }
  int sz = 4 << 20;  // a container state of up to SFK_STATE_MAX comes in one datagram
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz);
  set_nonblock(fd, true);
  sc_keeper.fd = fd;
  sc_keeper_hello = false;
  if (!ep_add(sc_keeper, EPOLLIN | EPOLLRDHUP)) {
    close_fd(fd);
    sc_keeper.fd = -1;
    return false;
  }
  return true;
}

void SeccompAgent::detach_keeper(bool hand_back) {
  if (sc_keeper.fd < 0) return;
  for (size_t i = 0; i < sc_targets.size();) {
    ScTarget* t = sc_targets[i];
    if (!t->kidx) {
      i++;
      continue;
    }
    if (!hand_back) {  // the keeper is gone: these are the broker's alone now
      t->kidx = 0;
      i++;
      continue;
    }
    // Held accepts stay unanswered in the in-flight table: the keeper holds them for the next
    // broker. Held connects get CONTINUE (kill_sc_target).
    while (!t->accepts.empty()) {
      ScAccept* a = t->accepts.back();
      a->slot = -1;
      sc_drop_accept(a);
    }
    kill_sc_target(t);  // erases t from sc_targets
  }
  ep_del(sc_keeper);
  close_fd(sc_keeper.fd);
  sc_keeper.fd = -1;
  ctr.seccomp_keeper.store(0);
  if (sc_slots) munmap(sc_slots, SFK_SLOTS * sizeof(sfk_slot));
  sc_slots = nullptr;
  sc_free_slots.clear();
}

std::vector<int> SeccompAgent::keeper_guard() {
  std::vector<int> v;
  if (sc_keeper.fd < 0) return v;
  // The keeper sends on accept: SFK_GUARD first when it holds a guard, else SFK_HELLO. A keeper
  // that does not answer within a second (or took another broker) leaves a fresh guard.
  pollfd p{sc_keeper.fd, POLLIN, 0};
  if (poll(&p, 1, 1000) != 1) return v;
  sfk_msg m{};
  if (recv(sc_keeper.fd, &m, sizeof m, MSG_PEEK | MSG_DONTWAIT) != ssize_t(sizeof m) || m.magic != SFK_MAGIC ||
      m.type != SFK_GUARD)
    return v;
  int fds[SFK_GUARD_FDS], nfds = 0;
  ssize_t n = recv_fds(sc_keeper.fd, &m, sizeof m, fds, SFK_GUARD_FDS, &nfds, nullptr);
  v.assign(fds, fds + std::max(nfds, 0));
  if (n != ssize_t(sizeof m) || m.len != nfds) {
    for (int fd : v) close_fd(fd);
    v.clear();
  }
  return v;
}

void SeccompAgent::keeper_hold_guard(const std::vector<int>& fds) {
  if (sc_keeper.fd < 0) return;
  if (fds.empty() || fds.size() > SFK_GUARD_FDS) return;
  sfk_msg m{};
  m.magic = SFK_MAGIC;
  m.type = SFK_GUARD;
  m.len = uint16_t(fds.size());
  static_assert(SFK_GUARD_FDS <= kMaxSendFds, "the guard's descriptors fit one message");
  if (int e = send_fds(sc_keeper.fd, &m, sizeof m, fds.data(), int(fds.size())))
    logf(LOG_WARN, "confinement guard: the keeper did not take it (%s): it ends with this broker", strerror(e));
}

void SeccompAgent::keeper_drop_guard() {
  sfk_msg m{};
  m.type = SFK_GUARD_DROP;
  send_k(sc_keeper.fd, m, -1);
}

void SeccompAgent::on_sc_keeper() {
  for (int k = 0; k < 256 && sc_keeper.fd >= 0; k++) {
    ssize_t size = recv(sc_keeper.fd, nullptr, 0, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
    if (size < 0 && errno == EINTR) continue;
    if (size < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (size <= 0) {
      bool was = sc_keeper_hello;
      if (was)
        logf(LOG_WARN, "seccomp: the keeper at %s is gone (%s): the agent listens on %s itself",
             cfg.seccomp_keeper.c_str(), size == 0 ? "closed" : strerror(errno), cfg.seccomp_path.c_str());
      else
        logf(LOG_ERROR,
             "seccomp: the keeper at %s did not take this broker (another broker attached to it?): no seccomp agent",
             cfg.seccomp_keeper.c_str());
      detach_keeper(false);
      if (was) {
        if (Error e = listen_seccomp()) logf(LOG_ERROR, "seccomp: %s", e.msg.c_str());
      }
      return;
    }
    std::vector<char> buf(std::max<size_t>(size_t(size), sizeof(sfk_msg)));
    int fds[4], nfds = 0;
    ssize_t n = recv_fds(sc_keeper.fd, buf.data(), buf.size(), fds, 4, &nfds, nullptr);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return;
    }
    int fd = nfds > 0 ? fds[0] : -1;
    for (int i = 1; i < nfds; i++) close_fd(fds[i]);
    sfk_msg m{};
    if (size_t(n) < sizeof m) {
      close_fd(fd);
      continue;
    }
    memcpy(&m, buf.data(), sizeof m);
    if (m.magic != SFK_MAGIC) {
      close_fd(fd);
      continue;
    }
    auto target = [&]() -> ScTarget* {
      for (ScTarget* t : sc_targets)
        if (t->kidx == m.idx && !t->dead) return t;
      return nullptr;
    };
    switch (m.type) {
      case SFK_HELLO: {
        void* p = fd >= 0 ? mmap(nullptr, SFK_SLOTS * sizeof(sfk_slot), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                          : MAP_FAILED;
        close_fd(fd);
        if (p == MAP_FAILED) {
          logf(LOG_WARN, "seccomp: the keeper's in-flight table: %s", strerror(errno));
          break;
        }
        if (sc_slots) munmap(sc_slots, SFK_SLOTS * sizeof(sfk_slot));
        sc_slots = static_cast<sfk_slot*>(p);
        sc_free_slots.clear();
        for (int i = SFK_SLOTS - 1; i >= 0; i--) sc_free_slots.push_back(i);
        sc_keeper_hello = true;
        ctr.seccomp_keeper.store(1);
        logf(LOG_INFO, "seccomp: attached to the keeper at %s", cfg.seccomp_keeper.c_str());
        break;
      }
      case SFK_TARGET:
        if (fd < 0 || m.idx == 0 || target()) {
          close_fd(fd);
          break;
        }
        sc_new_target(std::string(buf.data() + sizeof m, size_t(n) - sizeof m), fd, m.idx);
        break;
      case SFK_STEERED: {
        ScTarget* t = target();
        if (!t || fd < 0) {
          close_fd(fd);
          break;
        }
        t->adopt.push_back(ScTarget::Adopt{m, fd, now_ms() + kAdoptWaitMs});
        sc_adopt_pending(now_ms());
        break;
      }
      case SFK_HELD: {
        ScTarget* t = target();
        if (!t || m.len < sizeof(seccomp_notif) || m.len > SFK_NOTIF_MAX || size_t(n) < sizeof m + m.len) break;
        std::vector<unsigned char> notif(SFK_NOTIF_MAX, 0);
        memcpy(notif.data(), buf.data() + sizeof m, m.len);
        if (!t->adopt.empty()) {
          t->redeliver.push_back(std::move(notif));
        } else {
          alignas(8) unsigned char nb[SFK_NOTIF_MAX];
          memcpy(nb, notif.data(), sizeof nb);
          sc_handle(t, nb);
        }
        break;
      }
      case SFK_READY:
        SF_DLOG("seccomp: the keeper handed over %zu target(s)", sc_targets.size());
        break;
      default:
        close_fd(fd);
    }
  }
}

void SeccompAgent::keeper_steered(ScTarget* t, Listener* l, int tgid, int tfd, int real_fd, bool v6) {
  kept_listeners[l] = KeptListener{t->kidx, l->steer_ino};
  if (sc_keeper.fd < 0 || real_fd < 0) return;
  sfk_msg m{};
  m.type = SFK_STEERED;
  m.idx = t->kidx;
  m.tgid = uint32_t(tgid);
  m.tfd = tfd;
  m.vip = l->vip;
  m.port = l->port;
  m.ino = l->steer_ino;
  m.flags = v6 ? SFK_F_V6 : 0;
  if (!send_k(sc_keeper.fd, m, real_fd) && ratelimit(11))
    logf(LOG_WARN, "seccomp: telling the keeper of %s:%u: %s", ip_str(l->vip).c_str(), l->port, strerror(errno));
}

void SeccompAgent::listener_gone(Listener* l) {
  auto it = kept_listeners.find(l);
  if (it == kept_listeners.end()) return;
  KeptListener k = it->second;
  kept_listeners.erase(it);
  if (sc_keeper.fd < 0 || !k.kidx) return;
  sfk_msg m{};
  m.type = SFK_UNSTEERED;
  m.idx = k.kidx;
  m.ino = k.ino;
  send_k(sc_keeper.fd, m, -1);
}

bool SeccompAgent::sc_try_adopt(ScTarget* t, ScTarget::Adopt& a, int64_t now) {
  const sfk_msg& m = a.m;
  auto forget = [&](const char* why) {
    if (ratelimit(11))
      logf(LOG_WARN, "seccomp: steered listener %s:%u of %s not taken over: %s", ip_str(m.vip).c_str(), m.port,
           t->id.c_str(), why);
    close_fd(a.real_fd);
    sfk_msg u{};
    u.type = SFK_UNSTEERED;
    u.idx = m.idx;
    u.ino = m.ino;
    if (sc_keeper.fd >= 0) send_k(sc_keeper.fd, u, -1);
    return true;
  };
  Container* owner = sc_container(t);
  if (!owner) return now >= a.give_up_at ? forget("its container is not registered") : false;
  if (!host.steering()) return forget("kernel steering is off");
  int copy = copy_process_fd(int(m.tgid), m.tfd);
  struct stat st;
  if (copy < 0 || fstat(copy, &st) < 0 || uint64_t(st.st_ino) != m.ino) {
    close_fd(copy);
    return forget("the process closed it");
  }
  sockaddr_storage self{};
  socklen_t sl = sizeof self;
  uint32_t bound =
      getsockname(a.real_fd, reinterpret_cast<sockaddr*>(&self), &sl) == 0 ? sockaddr_ip(self, nullptr) : 0;
  bool v6 = (m.flags & SFK_F_V6) != 0;
  int app_end = -1, err = 0;
  int real = fcntl(a.real_fd, F_DUPFD_CLOEXEC, 0);
  Listener* l = real >= 0 ? host.take_over_steered(owner, m.vip, m.port, copy, real, &app_end, &err) : nullptr;
  close_fd(copy);
  if (!l) {
    // EBUSY: the socket is still in the dead broker's steering map, which the kernel frees a
    // moment after this broker's program replaced its own in the reuseport group.
    if (real >= 0 && err == EBUSY && now < a.give_up_at) return false;
    return forget(strerror(real < 0 ? errno : err));
  }
  close_fd(a.real_fd);
  Channel* ch = l->chans.empty() ? nullptr : l->chans.back();
  if (ch) {
    ch->held_end = app_end;
    ch->bound_vip = bound;
  } else {
    close_fd(app_end);
  }
  kept_listeners[l] = KeptListener{t->kidx, m.ino};
  t->steered[m.ino] = ScTarget::SteeredFd{m.vip, m.port, v6};
  ScTarget::Swapped sw{m.ino, bound, 0, m.port, 0, true, v6};
  t->swapped[(uint64_t(m.tgid) << 32) | uint32_t(m.tfd)] = sw;
  inc(ctr.seccomp_taken_over);
  logf(LOG_INFO, "seccomp: steered listener %s:%u of %s taken over", ip_str(m.vip).c_str(), m.port, t->id.c_str());
  return true;
}

void SeccompAgent::sc_adopt_pending(int64_t now) {
  for (size_t i = 0; i < sc_targets.size(); i++) {
    ScTarget* t = sc_targets[i];
    if (t->adopt.empty()) continue;
    for (size_t k = 0; k < t->adopt.size();) {
      if (sc_try_adopt(t, t->adopt[k], now))
        t->adopt.erase(t->adopt.begin() + long(k));
      else
        k++;
    }
    if (!t->adopt.empty()) continue;
    // Everything taken over (or given up): the notifications held meanwhile.
    std::vector<std::vector<unsigned char>> held;
    held.swap(t->redeliver);
    for (auto& n : held) {
      if (t->dead) break;
      alignas(8) unsigned char nb[SFK_NOTIF_MAX];
      memcpy(nb, n.data(), sizeof nb);
      sc_handle(t, nb);
    }
  }
}

int SeccompAgent::sc_claim_slot(ScTarget* t, const void* notif) {
  if (!sc_slots || !t->kidx || sc_free_slots.empty()) return -1;
  int i = sc_free_slots.back();
  sc_free_slots.pop_back();
  sfk_slot* s = &sc_slots[i];
  memcpy(s->notif, notif, std::min<size_t>(sc_notif_size, SFK_NOTIF_MAX));
  s->idx = t->kidx;
  __atomic_store_n(&s->used, 1u, __ATOMIC_RELEASE);
  return i;
}

void SeccompAgent::sc_release_slot(int slot) {
  if (!sc_slots || slot < 0 || slot >= SFK_SLOTS) return;
  __atomic_store_n(&sc_slots[slot].used, 0u, __ATOMIC_RELEASE);
  sc_free_slots.push_back(slot);
}

}  // namespace sf
