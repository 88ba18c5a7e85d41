// Engine lifecycle and the epoll loop: start/stop, dispatch, timers, deferred frees, logging.
#include <arpa/inet.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "engine.h"
#include "seccomp_agent.h"
#include "util.h"

namespace sf {

Engine::Engine() {}

Engine::~Engine() { stop(); }

sf_msg make_msg(uint16_t type, uint32_t seq, int32_t status, uint32_t vip_a, uint16_t port_a, uint32_t vip_b,
                uint16_t port_b, uint64_t a) {
  sf_msg m;
  memset(&m, 0, sizeof m);
  m.type = type;
  m.version = SF_MSG_VERSION;
  m.seq = seq;
  m.status = status;
  m.vip_a = htonl(vip_a);
  m.vip_b = htonl(vip_b);
  m.port_a = htons(port_a);
  m.port_b = htons(port_b);
  m.a = a;
  return m;
}

bool Engine::ensure_epoll(Error* err) {
  if (epfd >= 0) return true;
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) {
    if (err) *err = Error{errno, std::string("epoll_create1: ") + strerror(errno)};
    return false;
  }
  return true;
}

bool Engine::ep_add(Ev& ev, uint32_t events) {
  epoll_event e{};
  e.events = events;
  e.data.ptr = &ev;
  return epoll_ctl(epfd, EPOLL_CTL_ADD, ev.fd, &e) == 0;
}

bool Engine::ep_mod(Ev& ev, uint32_t events) {
  epoll_event e{};
  e.events = events;
  e.data.ptr = &ev;
  return epoll_ctl(epfd, EPOLL_CTL_MOD, ev.fd, &e) == 0;
}

void Engine::ep_del(Ev& ev) {
  if (ev.fd >= 0 && epfd >= 0) epoll_ctl(epfd, EPOLL_CTL_DEL, ev.fd, nullptr);
}

void Engine::bury(Obj* o) {
  o->dead = true;
  garbage.push_back(o);
}

void Engine::collect_garbage() {
  // Swap first: recycle() never buries, but keep this robust against re-entry.
  std::vector<Obj*> g;
  g.swap(garbage);
  for (Obj* o : g) o->recycle(*this);
  if (garbage.empty()) {
    g.clear();
    garbage.swap(g);  // keep the capacity: no allocation per batch
  }
}

Error Engine::start(const Config& c, EventSink* s) {
  std::lock_guard<std::mutex> lk(mu);
  if (running_) return Error{EALREADY, "the engine is already started; call stop() first"};
  Error err;
  if (!ensure_epoll(&err)) return err;
  cfg = c;
  ctr.port.store(0);
  {
    rlimit r{};
    lim = size_limits(getrlimit(RLIMIT_NOFILE, &r) == 0 ? uint64_t(r.rlim_cur) : 1024, cfg);
  }
  // The host key: derived from the cluster key, else a fresh random one.
  if (!auth.start(cfg.host_ip, cfg.local_net, cfg.local_prefix, cfg.cluster_key, cfg.header_window_ms))
    return Error{errno ? errno : EIO, std::string("getrandom: ") + strerror(errno)};
  auto failed = [&](Error e) {
    close_core();
    if (by_id.empty()) {  // nothing else lives in the epoll set: leave no descriptor behind
      close_fd(epfd);
      epfd = -1;
    }
    return e;
  };
  // The keeper first: it may hold the confinement guard's marks from the broker before this one.
  new_seccomp_agent();
  open_guard();
  view.open();  // without it, processes confirm destinations for a second at a time
  if ((err = open_reserved())) return failed(err);
  open_steering();
  if ((err = open_loopback())) return failed(err);
  if ((err = open_seccomp())) return failed(err);
  wake.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake.fd < 0 || !ep_add(wake, EPOLLIN)) return failed(Error{errno, std::string("eventfd: ") + strerror(errno)});
  spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  sink = s;
  stopping.store(false);
  try {
    thr = std::thread([this] { run(); });
  } catch (...) {
    sink = nullptr;
    return failed(Error{EAGAIN, "cannot start the engine thread"});
  }
  running_ = true;
  return err;
}

void Engine::stop() {
  {
    std::lock_guard<std::mutex> lk(mu);
    if (!running_) {
      teardown();  // containers added without start() still own sockets
      return;
    }
    stopping.store(true);
    nudge();
  }
  if (thr.joinable()) thr.join();
  tid.store(0);
  std::lock_guard<std::mutex> lk(mu);
  running_ = false;
  teardown();
  sink = nullptr;
}

// Closes every socket and frees every object (thread not running, mu held).
void Engine::teardown() {
  // First: the keeper keeps the steered listeners' records (removing the containers' listeners
  // below would tell it they are gone) and the held accepts, for the next broker.
  // With no container registered, no handed socket should be left anywhere: the keeper need not
  // keep the guard. Otherwise it does, for the sockets the containers hold and the next broker.
  if (seccomp) seccomp->leave_keeper(by_id.empty());
  std::vector<Container*> cs;
  for (auto& kv : by_id) cs.push_back(kv.second);
  for (Container* c : cs) kill_container(c, false);
  while (HeaderConn* h = rport.first()) drop_header(h, false);
  // Every OutConn belongs to a preload connection, all killed above.
  close_core();
  collect_garbage();
  rport.clear();  // the counts (none left) and the free list
  for (OutConn* o : free_out) delete o;
  free_out.clear();
  close_fd(epfd);
  epfd = -1;
}

// The reserved port, the loopback listener and the eventfd.
void Engine::close_core() {
  close_seccomp();
  for (const Bell& b : bells) close_fd(b.fd);
  bells.clear();
  steer.reset();
  guard.reset();
  view.close();
  for (Ev* ev : {&reserved, &loopback, &wake}) {
    ep_del(*ev);
    close_fd(ev->fd);
    ev->fd = -1;
  }
  close_fd(spare_fd);
  spare_fd = -1;
  ctr.port.store(0);
}

int Engine::next_timeout(int64_t now) {
  int64_t t = -1;
  if (HeaderConn* h = rport.first()) t = h->deadline;
  if (out_timers.head && (t < 0 || out_timers.head->deadline < t)) t = out_timers.head->deadline;
  if (!bells.empty() && (t < 0 || now + 10 < t)) t = now + 10;                           // doorbells to close
  if (steer && steer->ok() && (t < 0 || next_sweep < t)) t = std::max(next_sweep, now);  // the sweep
  if (seccomp) {
    int64_t s = seccomp->next_deadline();
    if (s >= 0 && (t < 0 || s < t)) t = s;
  }
  if (t < 0) return -1;
  // +10 ms: CLOCK_MONOTONIC_COARSE ticks every few ms, avoid waking just before the deadline.
  return t <= now ? 0 : int(t - now + 10);
}

uint64_t Engine::thread_cpu_ns() const {
  int t = tid.load();
  if (!t) return 0;
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%d/schedstat", t);
  FILE* f = fopen(path, "re");
  if (!f) return 0;
  unsigned long long ns = 0;
  if (fscanf(f, "%llu", &ns) != 1) ns = 0;
  fclose(f);
  return ns;
}

void Engine::run() {
  pthread_setname_np(pthread_self(), "sf-engine");
  // SCHED_BATCH: a waking engine thread does not preempt the running task. Nothing an application
  // waits for gets slower (a blocked app leaves the CPU free at once), but the work it does not wait
  // for — stocking pools after a take — no longer lands in the middle of the app's connect() when
  // both share a CPU. Measured on 2 vCPUs (bench conn-1): connect p50 1.19x -> 0.91x the host's.
  sched_param sp{};
  if (sched_setscheduler(0, SCHED_BATCH, &sp) != 0) logf(LOG_DEBUG, "SCHED_BATCH: %s", strerror(errno));
  tid.store(int(gettid()));
  constexpr int kMaxEvents = 256;
  epoll_event evs[kMaxEvents];
  int timeout;
  {
    std::lock_guard<std::mutex> lk(mu);
    timeout = next_timeout(now_ms());
  }
  while (!stopping.load(std::memory_order_relaxed)) {
    int n = epoll_wait(epfd, evs, kMaxEvents, timeout);
    if (n < 0) {
      if (errno != EINTR) {
        logf(LOG_ERROR, "epoll_wait: %s", strerror(errno));
        usleep(10000);
      }
      n = 0;
    }
    std::lock_guard<std::mutex> lk(mu);
    for (int i = 0; i < n; i++) dispatch(static_cast<Ev*>(evs[i].data.ptr), evs[i].events);
    int64_t now = now_ms();
    expire_headers(now);
    expire_outs(now);
    if (seccomp) seccomp->expire(now);
    if (!bells.empty() || steering()) tend_steering(now);
    if (pools.any_parked()) unpark_pools(int64_t(mono_ns()));
    collect_garbage();
    timeout = next_timeout(now);
    if (pools.any_parked() && (timeout < 0 || timeout > 1)) timeout = 1;  // unpark them soon
  }
}

void Engine::dispatch(Ev* ev, uint32_t events) {
  if (ev->owner && ev->owner->dead) return;
  switch (ev->kind) {
    case EV_WAKE: {
      uint64_t v;
      while (read(ev->fd, &v, sizeof v) < 0 && errno == EINTR) {}
      break;
    }
    case EV_RESERVED:
      on_reserved();
      break;
    case EV_LOOPBACK:
      on_loopback();
      break;
    case EV_CONTAINER:
      on_container_accept(static_cast<Container*>(ev->owner));
      break;
    case EV_PRELOAD:
      on_preload(static_cast<PreloadConn*>(ev->owner));
      break;
    case EV_HEADER:
      on_header(static_cast<HeaderConn*>(ev->owner));
      break;
    case EV_OUT:
      on_out(static_cast<OutConn*>(ev->owner));
      break;
    case EV_CHAN:
      kill_channel(static_cast<Channel*>(ev->owner), true);
      break;
    case EV_POOL:
      on_pool(static_cast<Pool*>(ev->owner));
      break;
    case EV_SC_LISTEN:
    case EV_SC_CONN:
    case EV_SC_NOTIFY:
    case EV_SC_OUT:
    case EV_SC_ACCEPT:
    case EV_SC_KEEPER:
      if (seccomp) seccomp->on_event(ev, events);
      break;
    case EV_REAL:
      if (events & EPOLLIN) on_real_accept(static_cast<Channel*>(ev->owner));
      break;
  }
}

int Engine::accept_fd(int lfd, int flags, sockaddr* addr, socklen_t* len) {
  for (;;) {
    int fd = accept4(lfd, addr, len, flags);
    if (fd >= 0) return fd;
    if (errno == EINTR) continue;
    if ((errno == EMFILE || errno == ENFILE) && spare_fd >= 0) {
      // Out of descriptors: a level-triggered listener would spin. Drop one connection using the
      // spare descriptor's slot, so every wakeup still makes progress.
      close(spare_fd);
      int x = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
      if (x >= 0) reset_close(x);
      spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (ratelimit(1)) logf(LOG_ERROR, "out of file descriptors: dropping incoming connections");
      errno = EMFILE;
    }
    return -1;
  }
}

void Engine::nudge() {
  if (!running_ || wake.fd < 0) return;
  uint64_t one = 1;
  if (write(wake.fd, &one, sizeof one) < 0) { /* counter saturated: the thread is waking anyway */
  }
}

bool Engine::ratelimit(int slot) {
  int64_t now = now_ms();
  if (now - last_log[slot] < 1000) return false;
  last_log[slot] = now;
  return true;
}

void Engine::vlog(int level, const std::string& container, const char* fmt, va_list ap) {
  if (!sink || (level == LOG_DEBUG && !cfg.debug)) return;
  char buf[512];
  vsnprintf(buf, sizeof buf, fmt, ap);
  sink->log(level, buf, container);
}

void Engine::logf(int level, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(level, std::string(), fmt, ap);
  va_end(ap);
}

void Engine::logc(int level, const std::string& container, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(level, container, fmt, ap);
  va_end(ap);
}

}  // namespace sf
