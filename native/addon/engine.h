// The SlimFast broker engine: one epoll thread that owns the per-connection hot path.
//
// Threads and locks
//   * The engine thread runs Engine::run(): epoll_wait without any lock, then takes `mu` once for
//     the whole batch of events (plus timer expiry and garbage collection) and drops it before
//     the next epoll_wait.
//   * JS calls (addContainer, removeContainer, setPeers, ...) take `mu` for a short time and change
//     the tables directly; epoll_ctl is thread-safe, so no hand-off to the thread is needed.
//     The eventfd only wakes the thread for stop().
//   * Objects that are registered in epoll are never freed while an epoll_wait might still return
//     them: killing marks them dead (handlers skip dead owners), and they are freed (or returned
//     to a free list) at the end of the engine thread's next locked batch.
//   * Counters are atomics and are read without the lock.
//   * Events to JS go through EventSink (events.cc: a queue plus one ThreadSafeFunction).
//
// Subsystems
//   The Engine keeps the epoll loop, dispatch, the objects registered in it (containers, preload
//   connections, listeners, channels, pools, connects in progress) and the glue between the parts
//   below. Each of those owns its state behind a narrow interface; the Engine holds one of each and
//   calls it under `mu` like everything else, so the rules above hold for them unchanged.
//   * RouteTable (routing.h), Engine::routes: the peers' subnets with their longest-prefix match,
//     and each peer's remote-listener view. peers.cc edits it for JS.
//   * HeaderAuthority (header_authority.h), Engine::auth: this host's key and the nonces it signs,
//     the cluster key's root, the peers' keys and the replay cache; it signs host headers and checks
//     them. The engine counts and logs refusals and keeps the steering program's keys and replay
//     cache in step (cluster_checks.cc, steered.cc).
//   * ListenerTable (listener_table.h), Engine::listeners: which listener is at a vIP:port. The
//     listeners and their channels are the engine's (listeners.cc: made, counted, announced, freed).
//   * PoolStock (pool_stock.h), Engine::pools: what the connection pools share (the pooled
//     connections each peer holds, capped per peer; the pools whose reports wait a moment; the size
//     of a queued SF_POOLED) and the arithmetic of one pool's stock (backoff, target, what a report
//     says was taken). The pools, their channels and stocking connects are the engine's (pool.cc).
//   * ReservedPort (reserved_port.h), Engine::rport: the reserved-port connections whose header is
//     not complete yet (their deadlines, how many wait per source address) and a free list of them.
//     The listener, the accepts, the header checks and the hand-off are the engine's (reserved_port.cc).
//   * SeccompAgent (seccomp_agent.h), Engine::seccomp: the seccomp agent's connections, targets and
//     held notifications; it sees the engine only through SeccompHost (seccomp_host.cc).
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <array>
#include <cstdarg>
#include <deque>
#include <memory>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "counters.h"
#include "guard.h"
#include "header_authority.h"
#include "header_read.h"
#include "latency.h"
#include "listener_table.h"
#include "policy.h"
#include "pool_stock.h"
#include "reserved_port.h"
#include "routing.h"
#include "slimfast_wire.h"
#include "steering.h"
#include "timer_list.h"
#include "view_page.h"

namespace sf {

struct Engine;
class SeccompAgent;

// What an epoll registration points at (epoll_event.data.ptr is an Ev*).
enum EvKind : uint8_t {
  EV_WAKE,       // eventfd (stop)
  EV_RESERVED,   // reserved-port TCP listener
  EV_LOOPBACK,   // 127.0.0.1 listener for same-host pairs (drains strays)
  EV_CONTAINER,  // a container's SOCK_SEQPACKET broker socket
  EV_PRELOAD,    // one preload connection
  EV_HEADER,     // reserved-port connection whose header is incomplete
  EV_OUT,        // cross-host connect in progress
  EV_CHAN,       // broker end of a listener channel (HUP = every app copy closed)
  EV_REAL,       // the app's real listening socket (plain, non-SlimFast clients)
  EV_POOL,       // broker end of a preload's pool channel (SF_POOL_TOOK reports)
  EV_SC_LISTEN,  // the seccomp agent's Unix listener (runc sends notify fds there)
  EV_SC_CONN,    // one runc connection: container state JSON + the notify fd
  EV_SC_NOTIFY,  // a seccomp notify fd (a container's processes' connect() calls)
  EV_SC_OUT,     // host connect in progress for a held connect() notification
  EV_SC_ACCEPT,  // a steered listener a held (blocking) accept() notification waits on
  EV_SC_KEEPER,  // the link with slimfast-seccomp-keeper (seccomp_keeper.cc)
};

// Base of everything that can be killed while an epoll event may still point at it.
struct Obj {
  bool dead = false;
  virtual ~Obj() = default;
  virtual void recycle(Engine&) { delete this; }
};

struct Ev {
  EvKind kind;
  int fd = -1;
  Obj* owner = nullptr;
  explicit Ev(EvKind k, Obj* o = nullptr) : kind(k), owner(o) {}
};

struct Container;
struct Listener;
struct Channel;
struct PreloadConn;
struct Pool;
struct PoolBatch;

struct HeaderConn : Obj {
  Ev ev{EV_HEADER, this};
  uint32_t peer_ip = 0;
  HdrState st;
  uint64_t accepted_ns = 0;  // mono_ns() at accept (handoff latency)
  int64_t deadline = 0;
  HeaderConn *tprev = nullptr, *tnext = nullptr;
  bool timed = false;
  void recycle(Engine& e) override;
};

struct OutConn : Obj {
  Ev ev{EV_OUT, this};
  PreloadConn* pc = nullptr;
  uint32_t seq = 0;
  uint32_t dst = 0;  // host order
  uint16_t dport = 0, sport = 0;
  int64_t deadline = 0;
  OutConn *tprev = nullptr, *tnext = nullptr;
  bool timed = false;
  OutConn *pprev = nullptr, *pnext = nullptr;  // the preload connection's pending list
  Pool* pool = nullptr;                        // set: a connect that stocks this pool (no reply to the preload)
  bool in_epoll = false;                       // registered (EPOLLOUT): only then is there anything to remove
  bool hdr_sent = false;                       // the header went in the SYN (TCP Fast Open)
  bool local = false;                          // to a steered listener on this host (counted as same_host)
  uint64_t asked_ns = 0;                       // mono_ns() when the preload asked (handoff latency)
  void recycle(Engine& e) override;
};

struct PreloadConn : Obj {
  Ev ev{EV_PRELOAD, this};
  Container* c = nullptr;
  // The connecting process could bind ports below the container's ip_unprivileged_port_start:
  // CAP_NET_BIND_SERVICE in its user namespace, which owns the container's network namespace (or
  // is an ancestor of its owner). Read once, when the connection is accepted (limits.cc).
  bool low_ports = false;
  OutConn* outs = nullptr;   // pending cross-host connects of this connection
  std::vector<Pool*> pools;  // one per peer route this process connects to
};

// Pre-established host connections to one peer, pushed ahead of demand to one preload connection
// (pool.cc). The process takes them without a round trip and reports what it took.
struct Pool : Obj {
  Ev ev{EV_POOL, this};
  PreloadConn* pc = nullptr;
  Route route{};
  uint32_t target = 0;      // sockets to keep in the channel; doubles when the process finds it empty
  uint32_t queued = 0;      // sent into the channel and not reported taken
  uint32_t connecting = 0;  // connects in progress for it
  // Our copy of the process's end: dropping the pool empties the channel through it first, so
  // that nothing queued can be taken after (the process never polls for the hangup).
  int app_fd = -1;
  // Takes seen in the channel's depth (SIOCOUTQ) before the process reported them: counted as
  // connections already, so the report's own count skips them.
  uint32_t presumed = 0;
  bool blocking = false;  // the process's applications want blocking sockets (SF_TOOK_BLOCKING)
  int backoff_ms = 0;     // after failed stocking connects: none before retry_at
  int64_t retry_at = 0;
  bool parked = false;  // its reports are not watched for a moment (Engine::pools holds when it was parked)
};

struct Container : Obj {
  std::string id;
  uint32_t ip = 0;  // host order
  std::string path;
  dev_t path_dev = 0;  // identity of the socket file we created (unlink only our own)
  ino_t path_ino = 0;
  Ev ev{EV_CONTAINER, this};
  std::vector<PreloadConn*> conns;
  std::vector<Channel*> channels;
  bool restricted = false;  // policy.restricts(ip): no pools (kept up to date by set_policy)
  // What the container holds of the broker, against the per-container limits (Limits).
  uint32_t n_pools = 0;    // pools of its preload connections
  uint32_t n_pending = 0;  // cross-host connects in progress for its processes (not pool stocking)
  // Its network namespace (limits.cc): net.ipv4.ip_unprivileged_port_start there, when it was
  // last read, and the user namespaces whose CAP_NET_BIND_SERVICE counts in it (the namespace's
  // owner and that one's ancestors, as (dev, ino)).
  std::string netns;                      // path given at registration ("" : the broker's own)
  uint64_t netns_dev = 0, netns_ino = 0;  // its identity (0: unreadable); the seccomp agent looks it up
  uint32_t port_start = 1024;
  bool port_start_fixed = false;  // given by the caller: never read again
  int64_t port_start_read_ms = 0;
  std::vector<std::pair<uint64_t, uint64_t>> userns_chain;
};

struct Listener : Obj {
  uint32_t vip = 0;
  uint16_t port = 0;
  Container* c = nullptr;
  std::vector<Channel*> chans;
  uint32_t rr = 0;
  // Kernel steering (steered.cc): the host listening socket made for it, held here until the
  // preload fetches it (SF_STEER_SOCKET), then only in the application; its slot in the BPF map.
  int steer_fd = -1;
  int steer_slot = -1;
  uint64_t steer_ino = 0;  // st_ino of that socket (adoption after exec)
};

struct Channel : Obj {
  Ev chan{EV_CHAN, this};  // broker end of the socketpair
  Ev real{EV_REAL, this};  // the app's real listening socket
  Listener* l = nullptr;
  Container* c = nullptr;
  uint64_t ino = 0;        // st_ino of the app end (SF_QUERY_CHANNEL)
  uint32_t bound_vip = 0;  // as the app bound it (0.0.0.0 allowed), host order
  uint16_t port = 0;
  int held_end = -1;  // the app end, held by the broker for a listener the seccomp agent set up
};

struct Config {
  uint32_t host_ip = 0;
  uint16_t port = SF_DEFAULT_PORT;
  uint32_t overlay_net = 0;
  uint8_t overlay_prefix = 0;
  uint32_t local_net = 0;
  uint8_t local_prefix = 32;
  bool debug = false;
  int header_timeout_ms = 5000;
  int connect_timeout_ms = 3000;
  uint32_t pool_depth = 4;        // first stock of a new pool (0: no pools, every connect asks)
  uint32_t pool_max = 64;         // largest a pool grows
  uint32_t pool_peer_max = 1024;  // pooled connections to one peer, all processes together
  // Reserved-port connections waiting for their header: from one source address, and in all.
  // Past either, a new one is closed at once (header_overload), so one peer with many slow or
  // idle connections cannot take the descriptors that serve the others.
  uint32_t header_peer_max = 1024;
  uint32_t header_pending_max = 16384;
  bool fast_open = true;  // TCP Fast Open: pooled sockets carry the header in their SYN
  bool steer = true;      // kernel steering to listeners (needs fast_open, CAP_BPF)
  bool guard = true;      // false: act as a host without the guard (hands out nothing; tests)
  // Cluster key (SF_CLUSTER_KEY_MIN..MAX bytes) or empty: derived host keys and checked senders,
  // nonces and replays (cluster_checks.cc). The window is how old a header's nonce may be.
  std::vector<uint8_t> cluster_key;
  int header_window_ms = SF_HDR_WINDOW_MS;
  // Unix socket for runc's seccomp notify fds (OCI linux.seccomp.listenerPath); empty: no agent.
  std::string seccomp_path;
  // slimfast-seccomp-keeper's broker socket: attach there (it owns seccomp_path then); if nobody
  // listens there, the agent listens on seccomp_path itself.
  std::string seccomp_keeper;
  // Per-container limits (0: sized at start() from RLIMIT_NOFILE, see size_limits()) and the
  // descriptors kept for the control plane (0: sized too).
  uint32_t container_conns_max = 0;
  uint32_t container_pools_max = 0;
  uint32_t container_listeners_max = 0;
  uint32_t container_pending_max = 0;
  uint32_t fd_reserve = 0;
};

// Defaults when RLIMIT_NOFILE allows them (a container at every limit holds about 10k descriptors).
constexpr uint32_t kDefaultConns = 1024, kDefaultPools = 4096, kDefaultListeners = 1024, kDefaultPending = 1024;
// What start() made of Config's limits and the process's RLIMIT_NOFILE (limits.cc).
struct Limits {
  uint64_t nofile = 0;   // the soft RLIMIT_NOFILE at start
  uint32_t reserve = 0;  // descriptors left to the control plane (JS, gRPC, sync streams, etcd)
  uint32_t budget = 0;   // nofile - reserve: the engine takes no new long-lived descriptor numbered above (0: none)
  uint32_t conns = kDefaultConns, pools = kDefaultPools, listeners = kDefaultListeners,
           pending = kDefaultPending;  // per container
};
// The sizing alone (pure; the self-test checks it): explicit limits as given, the others at their
// defaults scaled down so that one container at all of them holds at most a quarter of the budget.
Limits size_limits(uint64_t nofile, const Config& cfg);
// Raises RLIMIT_NOFILE's soft limit to the hard one (and first, with CAP_SYS_RESOURCE, the hard one
// to min(fs.nr_open, 1048576) where that is higher); with cap > 0 sets the soft limit to cap (at
// most the hard one) instead. Returns the limits before and after.
struct FdLimit {
  uint64_t soft_before, hard_before, soft, hard;
};
FdLimit raise_fd_limit(uint64_t cap = 0);
// What a new container's network namespace says (limits.cc); netns "" : the broker's own.
struct NetnsInfo {
  uint64_t dev = 0, ino = 0;  // the namespace's identity (0: unreadable)
  bool port_start_ok = false;
  uint32_t port_start = 1024;
  std::vector<std::pair<uint64_t, uint64_t>> userns_chain;
};
NetnsInfo read_netns_info(const std::string& netns, bool chain);

// What a connect to dst:dport from a container gets (classify_connect).
enum DestKind { DEST_FALLBACK, DEST_DENY, DEST_PEER, DEST_STEERED_LOCAL, DEST_PAIR };

enum LogLevel { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

// Where events go (events.cc implements it with a ThreadSafeFunction). Thread-safe.
struct EventSink {
  virtual ~EventSink() = default;
  virtual void listener(bool add, uint32_t ip, uint16_t port, const std::string& container) = 0;
  // false: nobody will take the fd (engine stopping); the caller closes it.
  virtual bool sync(int fd, uint32_t peer_ip) = 0;
  // container: the id of the container the line is about, or empty.
  virtual void log(int level, std::string msg, std::string container) = 0;
};

struct Error {
  int code = 0;  // errno, 0 = no error
  std::string msg;
  explicit operator bool() const { return code != 0 || !msg.empty(); }
};

struct ListenerRow {
  uint32_t ip;
  uint16_t port;
  std::string container;
  uint32_t channels;
};

struct Engine {
  Engine();
  ~Engine();

  // ---- JS-facing API (JS thread; each takes mu) ----
  Error start(const Config& cfg, EventSink* sink);  // sink is owned by the caller; kept until stop
  void stop();                                      // joins the thread, closes everything
  // netns: the container's network namespace (its port sysctl and owner are read there; "" : the
  // broker's own); port_start >= 0 fixes net.ipv4.ip_unprivileged_port_start instead (tests).
  Error add_container(const std::string& id, uint32_t ip, const std::string& path, const std::string& netns = "",
                      int port_start = -1);
  bool remove_container(const std::string& id);
  // peers.cc: the route table and the remote-listener views, then the steering keys and view page
  void set_peers(const std::vector<Route>& routes);
  void set_remote_listeners(uint32_t peer_ip, const std::vector<uint64_t>* keys);  // null = unknown
  // Installs a policy (inactive: none). Containers it restricts lose their pools at once.
  void set_policy(Policy p);
  std::vector<ListenerRow> listener_rows();
  bool running() const { return running_; }
  uint64_t thread_cpu_ns() const;  // CPU time used by the engine thread so far (0 if unknown)
  // Takes in the pool reports processes sent and the engine thread (which does not preempt
  // anybody) has not read yet, so that handed_out counts every connect made so far.
  void read_pool_reports();

  Counters ctr;
  Latencies lat;  // handoff latency histograms (latency.h)
  Limits lim;     // set by start(); read by limits() under mu

  // ---- everything below is engine state, guarded by mu ----
  std::mutex mu;
  Config cfg;
  EventSink* sink = nullptr;
  int epfd = -1;
  Ev wake{EV_WAKE}, reserved{EV_RESERVED}, loopback{EV_LOOPBACK};
  uint32_t loop_port = 0;  // loopback listener port, network order
  std::thread thr;
  std::atomic<int> tid{0};  // engine thread id (its CPU time is in /proc/self/task/TID/schedstat)
  std::atomic<bool> stopping{false};
  bool running_ = false;

  std::unordered_map<std::string, Container*> by_id;
  uint64_t containers_gen = 0;  // bumped by every registration (the seccomp agent retries a miss then)
  std::unordered_map<uint32_t, Container*> by_ip;
  ListenerTable listeners;  // vIP:port -> listener (listener_table.h)

  RouteTable routes;  // the peers' subnets and their remote-listener views (routing.h)
  Policy policy;

  std::vector<Obj*> garbage;
  // This broker's host key and nonces, the peers' keys, the replay cache (header_authority.h).
  HeaderAuthority auth{routes};
  bool clustered() const { return !cfg.cluster_key.empty(); }
  TimerList<OutConn> out_timers;
  std::vector<OutConn*> free_out;
  uint16_t next_port = 32768;
  int64_t last_log[16] = {};
  int spare_fd = -1;                // held open so that EMFILE on accept can shed a connection instead of spinning
  std::unique_ptr<Steering> steer;  // null or not ok: no kernel steering (the broker hands everything)
  // The confinement guard: without it (guard null or not ok) no host socket leaves the broker:
  // connects fall back, listens stay the application's own, nothing is steered (open_guard()).
  std::unique_ptr<Guard> guard;
  ViewPage view;               // shared with the preloads: when their confirmations lapse (view_page.h)
  std::string unconfined_why;  // why not, for status and doctor ("" when confined)
  struct Bell {
    int fd;
    int64_t deadline;
  };
  std::vector<Bell> bells;  // doorbell connections until their handshake is done
  int64_t next_sweep = 0;
  // The seccomp agent (seccomp_agent.h) while cfg.seccomp_path is set: made by start(), gone with
  // close_core(). It owns its state; seccomp_host.cc is what it sees of the engine.
  std::unique_ptr<SeccompAgent> seccomp;
  // What the pools share: the pooled connections per peer, the parked pools, the size of a queued
  // SF_POOLED (pool_stock.h); the pools themselves are their preload connections' (pool.cc).
  PoolStock pools;
  // Reserved-port connections waiting for their header: deadlines, counts per source address, a
  // free list (reserved_port.h). The listener's registration is `reserved` above.
  ReservedPort rport;

  // engine_loop.cc
  void run();
  void dispatch(Ev* ev, uint32_t events);
  bool ensure_epoll(Error* err);
  bool ep_add(Ev& ev, uint32_t events);
  bool ep_mod(Ev& ev, uint32_t events);  // change what ev is watched for
  void ep_del(Ev& ev);
  void bury(Obj* o);  // o is dead: free it after the current batch
  void collect_garbage();
  int next_timeout(int64_t now);
  void teardown();
  void close_core();
  void logf(int level, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
  // The same for a line about one container: its id goes along as a field of its own.
  void logc(int level, const std::string& container, const char* fmt, ...) __attribute__((format(printf, 4, 5)));
  void vlog(int level, const std::string& container, const char* fmt, va_list ap);
  bool ratelimit(int slot);                                           // true at most once per second per slot
  int accept_fd(int lfd, int flags, sockaddr* addr, socklen_t* len);  // accept4 + EMFILE shedding
  void nudge();  // wake the thread (after JS killed objects, so they are freed)

  // reserved_port.cc
  Error open_reserved();
  void on_reserved();
  // accepted_ns: mono_ns() when the connection was accepted (handoff latency).
  void process_header(int fd, uint32_t peer_ip, const HdrState& st, uint64_t accepted_ns);
  void park_header(int fd, uint32_t peer_ip, const HdrState& st, uint64_t accepted_ns);
  void on_header(HeaderConn* h);
  void drop_header(HeaderConn* h, bool count_error);
  void expire_headers(int64_t now);

  // samehost.cc
  Error open_loopback();
  void on_loopback();
  bool loopback_pair(int* client, int* server, uint16_t* client_port);
  void same_host(PreloadConn* pc, const sf_msg& req, Listener* l, uint16_t sport);

  // connect.cc
  // The decision every connect from container c gets (the preload's SF_CONNECT and the seccomp
  // agent): *r is the route for DEST_PEER / DEST_STEERED_LOCAL, *l the listener for DEST_PAIR.
  // DEST_DENY is counted and logged.
  DestKind classify_connect(Container* c, uint32_t dst, uint16_t dport, Route* r, Listener** l);
  void on_connect(PreloadConn* pc, const sf_msg& req);
  uint16_t next_src_port();
  void start_out(PreloadConn* pc, const sf_msg& req, const Route& r, uint16_t sport, bool local = false);
  OutConn* new_out(PreloadConn* pc, int fd, Pool* pool);
  void on_out(OutConn* o);
  void finish_out(OutConn* o);
  void fail_out(OutConn* o);
  void kill_out(OutConn* o);
  void unlink_out(OutConn* o);
  void expire_outs(int64_t now);
  // Non-blocking connect from host_ip; -1 on error. fast_open: a TCP Fast Open socket whose SYN
  // waits for the first send (nothing goes on the wire yet; *pending is false).
  int open_peer_socket(const Route& r, bool* pending, bool fast_open = false, bool* deferred = nullptr);
  bool write_header(int fd, const sf_hdr& h);
  int open_fast_connect(const Route& r, const sf_hdr& h, bool* pending);

  // cluster_checks.cc (with a cluster key)
  // auth.check(), then the steering program's replay cache.
  AuthResult auth_header(uint32_t peer_ip, const sf_hdr& h);
  void count_refusal(AuthResult r, uint32_t peer_ip);
  void watch_seen_rate(int64_t now);  // warns when the kernel's replay cache may overflow

  // steered.cc
  // Before anything is handed out: attach and check (logs why not); with the keeper, the marks
  // of the broker before this one stay in force, and the guard outlives this broker.
  void open_guard();
  bool confined() const { return guard && guard->ok(); }
  // Marks a host socket before it leaves the broker; false (errno set): it must not leave.
  bool confine(int fd) { return confined() && guard->protect(fd); }
  void open_steering();  // after open_reserved(): load, attach, keys (logs why not)
  bool steering() const { return steer && steer->ok(); }
  void update_steer_keys();                     // own subnet and every peer with a known key
  void make_steered(Listener* l, int backlog);  // a host socket for a new listener
  void on_steer_socket(PreloadConn* pc, const sf_msg& req);
  bool adopt_steered(PreloadConn* pc, const sf_msg& req);                    // SF_QUERY_CHANNEL for a steered socket
  void steer_again(PreloadConn* pc, const sf_msg& req, int* fds, int nfds);  // SF_STEER_AGAIN
  Listener* take_over_steered(Container* c, uint32_t vip, uint16_t port, int steered_fd, int real, int* app_end,
                              int* err);
  Channel* open_channel(Listener* l, Container* c, int real_fd, int* app_end);
  void unsteer(Listener* l);       // drop its slot and socket
  bool keep_steered(Listener* l);  // no channel left: true if the app still has the socket
  void ring_doorbell(Listener* l);
  void tend_steering(int64_t now);               // closes finished doorbells; sweeps closed steered listeners
  void remove_listener(Listener* l, bool emit);  // with every channel and its steered socket
  void drop_listener(Listener* l, bool emit);    // its last channel is gone

  // pool.cc
  Pool* pool_for(PreloadConn* pc, const Route& r);  // creates it (and sends the channel) if needed
  void fill_pool(Pool* p);
  void flush_pool_batch(Pool* p, PoolBatch& b);
  sf_pooled pooled_msg(Pool* p, bool deferred);
  void pool_connected(OutConn* o, int fd);
  void pool_failed(Pool* p);  // a counted stocking connect failed: uncount it, back off
  void pool_backoff(Pool* p);
  void pool_stock(Pool* p, int dq, int dc);  // queued += dq, connecting += dc, ctr.pooled and pools.add()
  void on_pool(Pool* p);
  void park_pool(Pool* p);
  void unpark_pools(int64_t now_ns);
  bool read_reports(Pool* p, int max, bool* refill);  // true: the channel is closed
  bool take_report(Pool* p, const sf_msg& m, ssize_t n);
  void kill_pool(Pool* p);
  uint32_t drain_app_end(Pool* p);
  void sync_pool(Pool* p);
  void count_taken(Pool* p, uint64_t used);

  // policy_enforce.cc
  bool policy_denies(Container* c, uint32_t dst, uint16_t dport);  // counts and logs a denial
  bool may_pool(PreloadConn* pc) const { return cfg.pool_depth > 0 && !pc->c->restricted; }

  // listeners.cc
  Listener* find_listener(uint32_t vip, uint16_t port) const { return listeners.find(vip, port); }
  bool push_accepted(Listener* l, int fd, const sf_msg& m, Channel* prefer);
  void on_listen(PreloadConn* pc, const sf_msg& req, int* fds, int nfds);
  void on_real_accept(Channel* ch);
  void kill_channel(Channel* ch, bool emit);
  void query_channel(PreloadConn* pc, const sf_msg& req);
  void listen_closed(PreloadConn* pc, const sf_msg& req);  // SF_LISTEN_CLOSED

  // preload.cc
  void on_container_accept(Container* c);
  void on_preload(PreloadConn* pc);
  void handle_msg(PreloadConn* pc, const sf_msg& m, int* fds, int nfds);
  bool reply(PreloadConn* pc, uint32_t seq, uint16_t type, int32_t status, int fd, uint32_t vip_a = 0,
             uint16_t port_a = 0, uint32_t vip_b = 0, uint16_t port_b = 0, uint64_t a = 0);
  void kill_preload(PreloadConn* pc);

  // containers.cc
  void kill_container(Container* c, bool emit);

  // limits.cc
  // fd is a descriptor the engine would keep: false (counted in limit_fds) when its number is past
  // the budget, i.e. the process holds about that many already.
  bool fd_room(int fd);
  // A container at one of its limits: counts it in *ctr_field and logs it (at most once a second).
  void at_limit(Container* c, std::atomic<uint64_t>& ctr_field, const char* what, uint32_t max);
  // A new preload connection beyond a limit: told so in an SF_HELLO_OK (status EMFILE or ENFILE),
  // then closed; the process falls back to the container's own network.
  void refuse_preload(int fd, int err);
  // May pc's process use port (host order) as a bound source or listening port? Ports below the
  // container's ip_unprivileged_port_start need pc->low_ports; a refusal re-reads the sysctl first
  // (at most once a second), since the container may have lowered it since it registered.
  bool port_allowed(PreloadConn* pc, uint16_t port);
  bool peer_low_ports(Container* c, int fd);  // for a new preload connection (SO_PEERCRED / pidfd)
  // nullptr when the connecting socket was made in c's network namespace, else why it is refused
  const char* peer_outside(Container* c, int fd);

  // seccomp_host.cc: the seccomp agent in the engine
  void new_seccomp_agent();  // cfg.seccomp_path set: the agent, attached to cfg.seccomp_keeper if set
  Error open_seccomp();      // its socket for runc (unless the keeper owns that path)
  void close_seccomp();      // answers every held notification (CONTINUE), closes every fd, drops it
  // The confinement guard and the keeper: an earlier broker's guard (its map and links, if the
  // keeper holds them), and this broker's guard handed to the keeper to hold.
  std::vector<int> keeper_guard();
  void keeper_hold_guard();
  void keeper_unsteered(Listener* l);  // l leaves the table: the keeper forgets it, if it knew it
};

// Per-connection debug logging: arguments are not even evaluated unless cfg.debug is set.
#define SF_DLOG(...)                             \
  do {                                           \
    if (cfg.debug) logf(LOG_DEBUG, __VA_ARGS__); \
  } while (0)

// Builds an sf_msg with version and seq filled in (addresses/ports given in host order).
sf_msg make_msg(uint16_t type, uint32_t seq, int32_t status, uint32_t vip_a, uint16_t port_a, uint32_t vip_b,
                uint16_t port_b, uint64_t a);

}  // namespace sf
