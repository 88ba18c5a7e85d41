// The seccomp agent: connect(), listen() and accept() of programs the preload does not reach
// (statically linked binaries), answered through runc's seccomp notify fds.
//
// A container annotated io.slimfast.seccomp=true gets a seccomp rule SCMP_ACT_NOTIFY for connect,
// getsockname, getpeername, listen, accept and accept4 (runtime-wrapper/modifiers/seccomp.ts)
// whose listenerPath is cfg.seccomp_path. runc connects there once per container process tree
// (create, and every exec) and sends, in one message on a stream socket, the container process
// state as JSON (seccomp_state.h) with the notify fd attached (SCM_RIGHTS); it does not always
// close its end soon (seen with runc exec), so a whole state with its fd is taken as soon as it is
// here. Each notify fd sits in the epoll set; every notification it reports gets exactly one
// answer:
//   * a connect to a SlimFast destination (the same decision as SF_CONNECT, classify_connect())
//     from an IPv4 TCP socket: the broker makes the host connection (header first, as for the
//     preload), puts it on the target's fd number (SECCOMP_IOCTL_NOTIF_ADDFD with
//     SECCOMP_ADDFD_FLAG_SETFD) and answers 0 once it is connected (non-blocking sockets too);
//   * a connect the policy denies: EACCES;
//   * getsockname/getpeername of a socket put in place that way: the virtual addresses;
//   * listen() with kernel steering on, from a process without the preload, of an IPv4 socket (or
//     an IPv6 dual-stack one: :: or ::ffff:vIP) bound to the container's vIP or any address: a
//     steered listener (sc_listen_call), its steered host socket on the target's fd number;
//     accept()/accept4() on it: the connection, installed with SECCOMP_ADDFD_FLAG_SEND
//     (sc_accept_call), held while a blocking listener has none;
//   * everything else (another family, not a socket we understand, an unknown container, a
//     destination that is not a SlimFast listener, any error, the connect deadline passing):
//     SECCOMP_USER_NOTIF_FLAG_CONTINUE, i.e. the kernel runs the call as if nothing were here.
// The target's memory (the sockaddr) is read through /proc/PID/mem after checking
// SECCOMP_IOCTL_NOTIF_ID_VALID, so the pid still names the process that made the call.
// With slimfast-seccomp-keeper (seccomp_keeper.cc) the notify fds outlive the broker: the keeper
// owns cfg.seccomp_path, answers while no broker is attached and hands everything to the next one.
// Without it (the agent listening on cfg.seccomp_path itself), a broker's death fails the held
// notifications and, nobody listening on the filter any more, every later notified call of those
// processes with ENOSYS.
//
// The engine holds one SeccompAgent while cfg.seccomp_path is set (Engine::seccomp), hands it the
// epoll events of its registrations (EV_SC_*) and its timers, and tells it of listeners leaving
// the table. The agent owns everything below and reaches the rest of the engine only through
// SeccompHost. It runs on the engine thread (or in a JS call) with the engine mutex held.
//
//   seccomp_agent.cc    its socket for runc, runc's connections, targets, timers, event dispatch
//   seccomp_state.{h,cc} runc's container state (a pure parser)
//   seccomp_notify.cc   receiving notifications, one handler per system call, answering them;
//                       getsockname/getpeername
//   seccomp_connect.cc  connect(): a host connection in place of the caller's socket
//   seccomp_listen.cc   listen(): a steered listener in place of the caller's socket
//   seccomp_accept.cc   accept()/accept4() on one: the connection, or the call held until it comes
//   seccomp_proc.{h,cc} the calling process: /proc readers, its memory, the notify fd's ioctls
//   seccomp_keeper.cc   the link with slimfast-seccomp-keeper
//   seccomp_host.cc     the engine's side: SeccompHost on the Engine, the agent in start/stop
#pragma once

#include <cstdarg>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine.h"
#include "slimfast_keeper.h"

namespace sf {

// What the agent asks of the engine (seccomp_host.cc implements it on the Engine).
struct SeccompHost {
  virtual ~SeccompHost() = default;
  // The epoll loop
  virtual bool ep_add(Ev& ev, uint32_t events) = 0;
  virtual void ep_del(Ev& ev) = 0;
  virtual void bury(Obj* o) = 0;                  // o is dead: freed after the current batch
  virtual int accept_fd(int lfd, int flags) = 0;  // accept4 with the engine's EMFILE shedding
  virtual void vlog(int level, const char* fmt, va_list ap) = 0;
  virtual bool ratelimit(int slot) = 0;  // the engine's log slots: true at most once a second each
  // Containers
  virtual Container* container(const std::string& id) = 0;
  // A registered container whose network namespace is (dev, ino), or null.
  virtual Container* container_in_netns(uint64_t dev, uint64_t ino) = 0;
  virtual uint64_t containers_gen() = 0;            // changes with every registration
  virtual void at_pending_limit(Container* c) = 0;  // counted (limit_pending) and logged
  virtual bool fd_room(int fd) = 0;                 // false (counted): fd is past the engine's descriptor budget
  // The connect path
  virtual DestKind classify_connect(Container* c, uint32_t dst, uint16_t dport, Route* r, Listener** l) = 0;
  virtual bool policy_denies(Container* c, uint32_t dst, uint16_t dport) = 0;  // counts and logs a denial
  virtual uint16_t next_src_port() = 0;
  // A host connection for c's connect to dst:dport over r, from source port sport: with TCP Fast
  // Open, the header in its SYN (*hdr_sent); *pending while it connects. -1: none (a failure to
  // open one is counted and logged, a descriptor past the budget only counted).
  virtual int open_connect(Container* c, const Route& r, uint32_t dst, uint16_t dport, uint16_t sport, bool* pending,
                           bool* hdr_sent) = 0;
  // The same connection's header, after the handshake (not sent in the SYN).
  virtual bool write_connect_header(int fd, Container* c, uint32_t dst, uint16_t dport, uint16_t sport) = 0;
  // Listeners and kernel steering
  virtual bool steering() = 0;
  virtual Listener* find_listener(uint32_t vip, uint16_t port) = 0;
  virtual bool keep_steered(Listener* l) = 0;  // l's steered socket is still held by its process
  virtual void remove_listener(Listener* l, bool emit) = 0;
  // A new listener at c's vIP:port for a program's socket real_fd (listening; the channel's
  // real socket, for plain clients) bound to bound_vip: its channel, whose app end the broker holds
  // (held_end), and a steered host socket with a slot (l->steer_fd). null: nothing made, real_fd
  // closed.
  virtual Channel* add_steered_listener(Container* c, uint16_t port, int real_fd, uint32_t bound_vip, int backlog) = 0;
  // l's steered socket is the program's now: the broker's copy closed, the listener counted and
  // announced.
  virtual void steered_listener_placed(Listener* l) = 0;
  // A steered listener a process kept while no broker ran (Engine::take_over_steered).
  virtual Listener* take_over_steered(Container* c, uint32_t vip, uint16_t port, int steered_fd, int real, int* app_end,
                                      int* err) = 0;
};

struct SeccompConfig {
  std::string seccomp_path;                // runc's listenerPath (Config::seccomp_path)
  std::string seccomp_keeper;              // slimfast-seccomp-keeper's broker socket, or "" (Config::seccomp_keeper)
  int connect_timeout_ms = 3000;           // how long a connect() is held before it continues
  uint32_t pending_max = kDefaultPending;  // held connects and accepts per target (Limits::pending)
  bool debug = false;
};

// runc's connection while its state and fd arrive.
struct ScConn : Obj {
  Ev ev{EV_SC_CONN, this};
  std::string buf;
  std::vector<int> fds;
  int64_t deadline = 0;
};

struct ScOut;
struct ScAccept;

// One seccomp notify fd: the processes of one container (or one exec) that share a filter.
struct ScTarget : Obj {
  Ev ev{EV_SC_NOTIFY, this};
  std::string id;                        // listenerMetadata: the container id registered with this broker, or the one
                                         // whose network namespace it shares (sc_container())
  int pid = 0;                           // the process runc reported (for logs)
  uint64_t ns_dev = 0, ns_ino = 0;       // pid's network namespace when the fd came (0: unreadable)
  uint64_t resolved_gen = ~uint64_t(0);  // containers_gen at the last failed lookup by namespace
  std::vector<ScOut*> outs;              // held notifications
  // Sockets the agent put in place, by (tgid << 32 | fd): getsockname/getpeername answer their
  // virtual addresses while the fd still holds that socket (same inode).
  struct Swapped {
    uint64_t ino;
    uint32_t lip, rip;  // host order
    uint16_t lport, rport;
    bool listener = false;  // a steered listener: getpeername is ENOTCONN
    bool v6 = false;        // the program's socket is AF_INET6 (dual-stack): addresses as ::ffff:a.b.c.d
  };
  std::unordered_map<uint64_t, Swapped> swapped;
  // Steered host sockets the agent put on listening fds, by inode: the listener's address.
  struct SteeredFd {
    uint32_t vip;  // host order
    uint16_t port;
    bool v6 = false;  // listened on as an AF_INET6 dual-stack socket
  };
  std::unordered_map<uint64_t, SteeredFd> steered;
  std::vector<ScAccept*> accepts;  // held accept() notifications (blocking listeners)
  uint32_t kidx = 0;               // its number with the keeper (0: runc sent it to this broker directly)
  // From the keeper after a restart: steered listeners to take over, and the notifications held
  // meanwhile (answered once those are taken over, or given up).
  struct Adopt {
    sfk_msg m;
    int real_fd;
    int64_t give_up_at;
  };
  std::vector<Adopt> adopt;
  std::vector<std::vector<unsigned char>> redeliver;
};

// A held accept()/accept4() on a blocking steered listener: answered when a connection comes.
struct ScAccept : Obj {
  Ev ev{EV_SC_ACCEPT, this};  // fd: the broker's copy of the steered socket
  ScTarget* t = nullptr;
  uint64_t id = 0;
  uint64_t ino = 0;  // the steered socket's inode
  int pid = 0, tgid = 0, flags = 0;
  uint64_t addr = 0, lenp = 0;
  int64_t check_at = 0;  // next SECCOMP_IOCTL_NOTIF_ID_VALID (a signal ends the call)
  int slot = -1;         // in the keeper's in-flight table
};

// A held connect() notification: the host connection being made for it.
struct ScOut : Obj {
  Ev ev{EV_SC_OUT, this};
  ScTarget* t = nullptr;
  uint64_t id = 0;       // notification id
  int target_fd = -1;    // the fd number in the target
  int copy_fd = -1;      // the target's socket (pidfd_getfd): its flags and options
  int tgid = 0;          // the target's thread group (its fd table)
  bool cloexec = false;  // the target's fd has FD_CLOEXEC
  uint32_t dst = 0;      // host order
  uint16_t dport = 0, sport = 0;
  bool hdr_sent = false, local = false, in_epoll = false;
  int64_t deadline = 0;
  int slot = -1;  // in the keeper's in-flight table
};

class SeccompAgent {
 public:
  // ctr: the engine's counters (atomics), which the agent counts in too.
  SeccompAgent(std::unique_ptr<SeccompHost> host, Counters& ctr, const SeccompConfig& cfg);
  ~SeccompAgent();
  SeccompAgent(const SeccompAgent&) = delete;
  SeccompAgent& operator=(const SeccompAgent&) = delete;

  // ---- the engine's side ----
  bool attach_keeper();  // connected to cfg.seccomp_keeper (first, so that keeper_guard() can ask it)
  Error start();         // attached to the keeper: nothing more; else listening on cfg.seccomp_path
  void stop();           // answers every held notification (CONTINUE), closes every fd
  // At stop, before the containers go: the targets go back to the keeper with their steered
  // listeners' records and held accepts; drop_guard: it need not keep the guard either.
  void leave_keeper(bool drop_guard);
  void on_event(Ev* ev, uint32_t events);  // one of its registrations (EV_SC_*) reported by epoll
  void expire(int64_t now);
  int64_t next_deadline() const;  // -1: none
  // The confinement guard and the keeper: an earlier broker's guard (its map and links, if the
  // keeper holds them: the keeper sends them before SFK_HELLO), and this broker's guard (its
  // descriptors, Guard::fds()) handed to the keeper to hold (SFK_GUARD).
  std::vector<int> keeper_guard();
  void keeper_hold_guard(const std::vector<int>& fds);
  void listener_gone(Listener* l);  // l leaves the listener table (SFK_UNSTEERED if the keeper knew it)

 private:
  std::unique_ptr<SeccompHost> host_;
  SeccompHost& host;
  Counters& ctr;
  const SeccompConfig cfg;

  // The loop and logging, through the host (the names the engine's own files use).
  bool ep_add(Ev& ev, uint32_t events) { return host.ep_add(ev, events); }
  void ep_del(Ev& ev) { host.ep_del(ev); }
  void bury(Obj* o) { host.bury(o); }
  bool ratelimit(int slot) { return host.ratelimit(slot); }
  void logf(int level, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
  static constexpr int kAcceptCheckMs = 200;  // how often a held accept's id is checked

  // seccomp_agent.cc: runc's connections and the targets
  Ev sc_listen{EV_SC_LISTEN};
  dev_t sc_path_dev = 0;
  ino_t sc_path_ino = 0;
  std::vector<ScConn*> sc_conns;
  std::vector<ScTarget*> sc_targets;
  size_t sc_notif_size = 0, sc_resp_size = 0;  // the kernel's struct sizes (SECCOMP_GET_NOTIF_SIZES)
  Error listen_seccomp();                      // the agent's own socket at cfg.seccomp_path
  void on_sc_listen();
  void on_sc_conn(ScConn* sc, uint32_t events);
  void sc_state(ScConn* sc);  // the whole state arrived: a new ScTarget
  void kill_sc_conn(ScConn* sc);
  // A notify fd and the container state JSON that came with it; kidx: its number with the keeper.
  ScTarget* sc_new_target(std::string_view state, int nfd, uint32_t kidx);
  Container* sc_container(ScTarget* t);
  void kill_sc_target(ScTarget* t);

  // seccomp_notify.cc: notifications in, answers out
  void on_sc_notify(ScTarget* t, uint32_t events);
  void sc_handle(ScTarget* t, const void* notif);                   // one notification: in-flight slot, then answer
  void sc_notification(ScTarget* t, const void* notif);             // to the system call's handler
  bool sc_respond(ScTarget* t, uint64_t id, int error, bool cont);  // SECCOMP_IOCTL_NOTIF_SEND
  void sc_sockname(ScTarget* t, const void* notif, bool peer);      // getsockname / getpeername

  // seccomp_connect.cc
  void sc_connect_call(ScTarget* t, const void* notif);
  void on_sc_out(ScOut* o);
  void sc_finish(ScOut* o);
  void sc_fail(ScOut* o);      // answer CONTINUE
  void sc_drop_out(ScOut* o);  // no answer (target gone); closes and buries

  // seccomp_listen.cc
  void sc_listen_call(ScTarget* t, const void* notif);  // listen(): a steered listener

  // seccomp_accept.cc
  void sc_accept_call(ScTarget* t, const void* notif);  // accept()/accept4() on one
  // One connection from the steered socket lfd into the caller: 1 answered (or the caller is
  // gone), 0 nothing queued.
  int sc_take_conn(ScTarget* t, uint64_t id, int pid, int tgid, int lfd, uint64_t ino, int flags, uint64_t addr,
                   uint64_t lenp);
  void on_sc_accept(ScAccept* a);
  void sc_drop_accept(ScAccept* a);  // no answer; closes and buries

  // seccomp_keeper.cc: its socket, the in-flight table it shares, free slots, and the slot of the
  // notification being handled (taken by a held connect or accept); the steered listeners it was
  // told of (SFK_STEERED): their target's number there and the steered socket's inode.
  Ev sc_keeper{EV_SC_KEEPER};
  bool sc_keeper_hello = false;
  sfk_slot* sc_slots = nullptr;
  std::vector<int> sc_free_slots;
  int sc_cur_slot = -1;
  struct KeptListener {
    uint32_t kidx;
    uint64_t ino;
  };
  std::unordered_map<const Listener*, KeptListener> kept_listeners;
  void on_sc_keeper();
  void detach_keeper(bool hand_back);
  void keeper_drop_guard();
  void keeper_steered(ScTarget* t, Listener* l, int tgid, int tfd, int real_fd, bool v6);  // SFK_STEERED
  bool sc_try_adopt(ScTarget* t, ScTarget::Adopt& a, int64_t now);  // true: done (taken over or given up)
  void sc_adopt_pending(int64_t now);
  int sc_claim_slot(ScTarget* t, const void* notif);
  void sc_release_slot(int slot);
};

}  // namespace sf
