// The engine's side of the seccomp agent (seccomp_agent.h): SeccompHost, what the agent may ask of
// the engine, answered from the engine's tables and paths; the agent's place in start/stop; and the
// engine's calls that go through it (the keeper's hold on the confinement guard, listeners leaving
// the table).
#include <arpa/inet.h>

#include <cerrno>
#include <cstring>
#include <new>

#include "engine.h"
#include "seccomp_agent.h"
#include "util.h"

namespace sf {

namespace {

class EngineSeccompHost final : public SeccompHost {
 public:
  explicit EngineSeccompHost(Engine& engine) : e(engine) {}

  bool ep_add(Ev& ev, uint32_t events) override { return e.ep_add(ev, events); }
  void ep_del(Ev& ev) override { e.ep_del(ev); }
  void bury(Obj* o) override { e.bury(o); }
  int accept_fd(int lfd, int flags) override { return e.accept_fd(lfd, flags, nullptr, nullptr); }
  void vlog(int level, const char* fmt, va_list ap) override { e.vlog(level, std::string(), fmt, ap); }
  bool ratelimit(int slot) override { return e.ratelimit(slot); }

  Container* container(const std::string& id) override {
    auto it = e.by_id.find(id);
    return it == e.by_id.end() ? nullptr : it->second;
  }
  Container* container_in_netns(uint64_t dev, uint64_t ino) override {
    for (auto& kv : e.by_id)
      if (kv.second->netns_ino == ino && kv.second->netns_dev == dev) return kv.second;
    return nullptr;
  }
  uint64_t containers_gen() override { return e.containers_gen; }
  void at_pending_limit(Container* c) override {
    e.at_limit(c, e.ctr.limit_pending, "handoffs in progress", e.lim.pending);
  }
  bool fd_room(int fd) override { return e.fd_room(fd); }

  DestKind classify_connect(Container* c, uint32_t dst, uint16_t dport, Route* r, Listener** l) override {
    return e.classify_connect(c, dst, dport, r, l);
  }
  bool policy_denies(Container* c, uint32_t dst, uint16_t dport) override { return e.policy_denies(c, dst, dport); }
  uint16_t next_src_port() override { return e.next_src_port(); }
  int open_connect(Container* c, const Route& r, uint32_t dst, uint16_t dport, uint16_t sport, bool* pending,
                   bool* hdr_sent) override {
    int fd = e.cfg.fast_open
                 ? e.open_fast_connect(r, e.auth.signed_header(SF_HDR_CONNECT, c->ip, dst, dport, sport), pending)
                 : -1;
    *hdr_sent = fd >= 0;
    if (fd < 0) fd = e.open_peer_socket(r, pending);
    if (fd >= 0 && !e.fd_room(fd)) {
      close_fd(fd);
      return -1;
    }
    if (fd < 0) {
      if (e.ratelimit(3))
        e.logf(LOG_WARN, "connect to peer %s:%u: %s", ip_str(r.peer_ip).c_str(), r.peer_port, strerror(errno));
      inc(e.ctr.connect_failures);
    }
    return fd;
  }
  bool write_connect_header(int fd, Container* c, uint32_t dst, uint16_t dport, uint16_t sport) override {
    return e.write_header(fd, e.auth.signed_header(SF_HDR_CONNECT, c->ip, dst, dport, sport));
  }

  bool steering() override { return e.steering(); }
  Listener* find_listener(uint32_t vip, uint16_t port) override { return e.find_listener(vip, port); }
  bool keep_steered(Listener* l) override { return e.keep_steered(l); }
  void remove_listener(Listener* l, bool emit) override { e.remove_listener(l, emit); }
  Channel* add_steered_listener(Container* c, uint16_t port, int real_fd, uint32_t bound_vip, int backlog) override {
    Listener* l = new (std::nothrow) Listener;
    if (!l) {
      close_fd(real_fd);
      return nullptr;
    }
    l->vip = c->ip;
    l->port = port;
    l->c = c;
    e.listeners.insert(l->vip, l->port, l);
    e.view.found();
    inc(e.ctr.listeners);
    int app_end = -1;
    Channel* ch = e.open_channel(l, c, real_fd, &app_end);
    auto fail = [&]() -> Channel* {
      if (!ch) close_fd(real_fd);
      e.remove_listener(l, false);
      return nullptr;
    };
    if (!ch) return fail();
    ch->held_end = app_end;
    ch->bound_vip = bound_vip;
    e.make_steered(l, backlog);
    if (l->steer_fd < 0) return fail();
    int slot = e.steer->add(htonl(l->vip), htons(l->port), l->steer_fd);
    if (slot < 0) {
      if (e.ratelimit(5)) e.logf(LOG_WARN, "cannot steer %s:%u: %s", ip_str(l->vip).c_str(), l->port, strerror(errno));
      return fail();
    }
    l->steer_slot = slot;
    return ch;
  }
  void steered_listener_placed(Listener* l) override {
    close_fd(l->steer_fd);
    l->steer_fd = -1;
    inc(e.ctr.listen_ok);
    inc(e.ctr.steered_listeners);
    if (e.sink) e.sink->listener(true, l->vip, l->port, l->c->id);
  }
  Listener* take_over_steered(Container* c, uint32_t vip, uint16_t port, int steered_fd, int real, int* app_end,
                              int* err) override {
    return e.take_over_steered(c, vip, port, steered_fd, real, app_end, err);
  }

 private:
  Engine& e;
};

}  // namespace

void Engine::new_seccomp_agent() {
  seccomp.reset();
  if (cfg.seccomp_path.empty()) return;
  SeccompConfig sc;
  sc.seccomp_path = cfg.seccomp_path;
  sc.seccomp_keeper = cfg.seccomp_keeper;
  sc.connect_timeout_ms = cfg.connect_timeout_ms;
  sc.pending_max = lim.pending;
  sc.debug = cfg.debug;
  std::unique_ptr<SeccompHost> host(new (std::nothrow) EngineSeccompHost(*this));
  if (host) seccomp.reset(new (std::nothrow) SeccompAgent(std::move(host), ctr, sc));
  if (seccomp && !cfg.seccomp_keeper.empty()) seccomp->attach_keeper();
}

Error Engine::open_seccomp() {
  if (cfg.seccomp_path.empty()) return Error{};
  if (!seccomp) return Error{ENOMEM, "seccomp agent: out of memory"};
  return seccomp->start();
}

void Engine::close_seccomp() {
  if (!seccomp) return;
  seccomp->stop();
  seccomp.reset();
}

std::vector<int> Engine::keeper_guard() { return seccomp ? seccomp->keeper_guard() : std::vector<int>{}; }

void Engine::keeper_hold_guard() {
  if (seccomp && confined()) seccomp->keeper_hold_guard(guard->fds());
}

void Engine::keeper_unsteered(Listener* l) {
  if (seccomp) seccomp->listener_gone(l);
}

}  // namespace sf
