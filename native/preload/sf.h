/* SlimFast preload library: internal declarations shared by the source files.
 *
 * Layout (one concern per file), in layers: a file calls only files listed below it (checked by
 * tests/layers.sh; README.md "Files"):
 *   forkexec.c  constructor, fork handling (atfork, vfork as fork)
 *   sockcalls.c socket/bind/connect
 *   accept.c    listen/accept/accept4/shutdown
 *   sockopt.c   getsockname/getpeername/setsockopt/getsockopt
 *   fdops.c     dup/dup2/dup3/fcntl/ioctl/close/fclose/close_range/closefrom
 *   epoll.c     epoll_create/epoll_create1/epoll_ctl bookkeeping
 *   --- the interposed calls above; the machinery below
 *   relisten.c  the watcher thread: listeners registered again after a broker restart
 *   listen.c    listeners handed to the broker (channel or steered socket), falling back, relistening
 *   adopt.c     listener channels inherited across exec; an fd's entry as the socket calls see it
 *   swap.c      putting a new socket onto the app's fd number (claims, flags, options, epoll sets),
 *               pooled sockets replaced by ordinary ones, hidden fds
 *   broker.c    the per-process broker connection, request/reply matching (leader/follower)
 *   pool.c      pre-established host connections pushed by the broker: connect without asking
 *   fdtable.c   sparse two-level fd table (lock-free lookups, per-slot spinlocks, signal-handler safe)
 *   inet6.c     AF_INET6 sockets on IPv4 overlay addresses: v4-mapped addresses, IPPROTO_IPV6 options
 *   util.c      configuration from the environment, debug log, clocks, cached pid, internal fd placement
 *   real.c      dlsym(RTLD_NEXT) pointers to the libc functions we interpose
 *   ../common/fdpass.c  SCM_RIGHTS messages sent and received (beside real.c: calls none of ours)
 */
#ifndef SF_PRELOAD_H
#define SF_PRELOAD_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "slimfast_wire.h"

#define SF_EXPORT __attribute__((visibility("default")))
#define SF_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ---------- real.c ---------- */
struct sf_real {
  int (*socket)(int, int, int);
  int (*bind)(int, const struct sockaddr *, socklen_t);
  int (*listen)(int, int);
  int (*accept)(int, struct sockaddr *, socklen_t *);
  int (*accept4)(int, struct sockaddr *, socklen_t *, int);
  int (*connect)(int, const struct sockaddr *, socklen_t);
  int (*getsockname)(int, struct sockaddr *, socklen_t *);
  int (*getpeername)(int, struct sockaddr *, socklen_t *);
  int (*setsockopt)(int, int, int, const void *, socklen_t);
  int (*getsockopt)(int, int, int, void *, socklen_t *);
  int (*shutdown)(int, int);
  int (*dup)(int);
  int (*dup2)(int, int);
  int (*dup3)(int, int, int);
  int (*fcntl)(int, int, ...);
  int (*fcntl64)(int, int, ...);
  int (*close)(int);
  int (*close_range)(unsigned, unsigned, int);
  void (*closefrom)(int);
  int (*epoll_create)(int);
  int (*epoll_create1)(int);
  int (*epoll_ctl)(int, int, int, struct epoll_event *);
  int (*ioctl)(int, unsigned long, ...);
  int (*fclose)(void *);
};
extern struct sf_real sf_real;
extern int sf_real_ready;
void sf_real_init(void);
#define REAL(f) (SF_UNLIKELY(!sf_real_ready) ? (sf_real_init(), sf_real.f) : sf_real.f)

/* ---------- util.c ---------- */
struct sf_conf {
  int enabled;        /* SLIMFAST_SOCKET set and usable */
  int debug;          /* SLIMFAST_DEBUG=1 */
  int timeout_ms;     /* SLIMFAST_TIMEOUT_MS, default 3000 */
  int spin_max_us;    /* SLIMFAST_SPIN_US, default 20; 0 = never poll before blocking */
  int pool_at_socket; /* SLIMFAST_POOL_AT_SOCKET, default 1: socket() may hand out a pooled
                           socket (0 for programs that connect libc's sockets without connect()) */
  char sock_path[108];
};
extern struct sf_conf sf_conf;
void sf_conf_init(void); /* idempotent */
void sf_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define SF_DEBUG(...)                                    \
  do {                                                   \
    if (SF_UNLIKELY(sf_conf.debug)) sf_log(__VA_ARGS__); \
  } while (0)
/* A misconfiguration the operator must hear of without SLIMFAST_DEBUG: sf_log, but only when fd 2
   looks like a log (tty, pipe, file, stream or datagram Unix socket), never a TCP socket or a
   listener channel that a daemon which closed its stderr got as fd 2. */
void sf_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int64_t sf_now_ns(void);
/* Move an internal fd (broker connection, hidden listener) out of the app's low range, CLOEXEC.
   Returns the new fd (the old one is closed) or the old fd if it cannot be moved. */
int sf_fd_move_high(int fd);
/* Duplicate fd into the high range (CLOEXEC); -1 on failure. */
int sf_fd_dup_high(int fd);
uint64_t sf_fd_ino(int fd);         /* st_ino, 0 on error */
int sf_fd_nonblock(int fd, int on); /* set/clear O_NONBLOCK on the open file description */
/* The netmask of a prefix length (network order; 0 for /0, all ones from /32 on). */
static inline uint32_t sf_prefix_mask(uint32_t len) {
  return len == 0 ? 0 : htonl(len >= 32 ? 0xffffffffu : ~(0xffffffffu >> len));
}
#define SF_IS_LOOPBACK(ip) ((ntohl(ip) >> 24) == 127) /* ip in network order */
ssize_t sf_recv_fd(int fd, void *buf, size_t len, int flags, int *rfd, int *trunc);
/* This process's pid, kept by the atfork child handler instead of asking the kernel each time. */
pid_t sf_pid(void);
/* 0 in a process that must not edit the table. vfork() is fork() under the preload (forkexec.c),
   so that is only a child made by a raw clone() before it reaches our atfork handler. */
int sf_table_owner(void);
/* Cache getpid(): at load and in a fork child (forkexec.c). */
void sf_pid_reset(void);

/* ---------- fdtable.c ---------- */
enum sf_kind {
  SF_K_NONE = 0,
  SF_K_SOCK,     /* AF_INET or AF_INET6 TCP socket, not yet connected or listening through SlimFast */
  SF_K_CONN,     /* connected socket handed over by the broker: virtual addresses */
  SF_K_CHAN,     /* listener channel (AF_UNIX SEQPACKET fed by the broker) on the app's fd */
  SF_K_CAND,     /* inherited across exec, AF_UNIX SEQPACKET: may be a channel, not asked yet */
  SF_K_NOTCHAN,  /* inherited unix fd the broker said is not a channel (negative cache) */
  SF_K_EPOLL,    /* an epoll instance (generation number identifies it) */
  SF_K_INTERNAL, /* our own fd (broker connection, hidden listener): invisible to the app */
  SF_K_STEER,    /* a kernel-steered host listening socket on the app's fd (connections come
                    with their sf_hdr first); hidden_fd = its listener channel */
  SF_K_ORPHAN,   /* a listener that was SlimFast's until its broker went away: the app's own
                    listening socket again, registered anew once a broker answers (relisten.c);
                    l_ip:l_port = its virtual address */
  SF_K_POOLED    /* socket() handed the app a pooled host socket (pool.c, tk): connect() to a
                    destination its pool covers only sends the header; anything else first puts
                    an ordinary socket in its place (SF_K_SOCK) */
};
/* Entries that own a hidden fd: duplicated, moved and closed with the app's fd. */
#define SF_HAS_HIDDEN(e) (((e)->kind == SF_K_CHAN || (e)->kind == SF_K_STEER) && (e)->hidden_fd >= 0)

#define SF_MAX_OPTS 10
#define SF_MAX_EPS 8
#define SF_OPT_MAXLEN 16

struct sf_opt {
  int32_t level, name;
  uint32_t len;
  uint8_t val[SF_OPT_MAXLEN];
};

struct sf_ep {
  int32_t epfd;
  uint32_t events;
  uint64_t data;
  uint64_t gen; /* generation of the epoll instance (0 = unknown) */
};

#define SF_F_NONBLOCK 0x01 /* O_NONBLOCK: SOCK_NONBLOCK at socket(), then as fcntl/ioctl(FIONBIO) set it */
#define SF_F_CLOEXEC 0x02  /* created with SOCK_CLOEXEC */
#define SF_F_BOUND 0x04    /* bind() succeeded */
#define SF_F_OPTLOST 0x08  /* more options than we could record */
#define SF_F_EPLOST 0x10   /* more epoll sets than we could record */
#define SF_F_SWAPPING 0x20 /* a thread is replacing the fd (channel fallback) */
/* The app sees an AF_INET6 socket: addresses are v4-mapped sockaddr_in6 (the socket itself may be
   an AF_INET host socket). */
#define SF_F_V6 0x40
#define SF_F_SHUT 0x80 /* CHAN: the app shut the listener down (accept fails with EINVAL) */

/* A pooled host socket handed out at socket() time and not connected yet (SF_K_POOLED). */
struct sf_ticket {
  struct sf_hdr h;        /* the broker's signed header; the destination goes in at connect() */
  int64_t made_ns;        /* when the broker made the socket (CLOCK_MONOTONIC) */
  int64_t taken_ns;       /* when socket() took it */
  uint32_t pool;          /* the pool it came from (pool.c's id; 0: none, settled) */
  uint16_t sport;         /* virtual source port (network order) */
  uint8_t deferred;       /* TCP Fast Open, SYN not sent yet */
  uint8_t nonblock;       /* the socket came O_NONBLOCK (SF_POOLED_NONBLOCK) */
  uint8_t said_connected; /* CONN from a pooled socket: a blocking connect() returned 0, so the
                             kernel never saw it complete; later connects say EISCONN */
};

struct sf_entry {
  uint8_t kind, flags, nopts, neps;
  int32_t hidden_fd; /* CHAN: CLOEXEC dup of the real listening socket (-1 = none);
                             STEER: CLOEXEC dup of the listener channel;
                             INTERNAL: the app fd that owns this hidden fd (-1 = broker conn) */
  uint32_t bound_ip; /* network order (AF_INET6: the v4 of ::ffff:a.b.c.d, 0 for ::) */
  uint16_t bound_port;
  uint16_t l_port, p_port;
  uint32_t l_ip, p_ip; /* virtual local / peer (network order) */
  uint64_t ino;        /* st_ino of the socket the entry describes (staleness check) */
  uint64_t gen;        /* EPOLL: instance generation */
  struct sf_ticket tk; /* POOLED */
  struct sf_opt opts[SF_MAX_OPTS];
  struct sf_ep eps[SF_MAX_EPS];
};

#define SF_TAB_MAXFD (1 << 24)

/* Lock-free hint: nonzero if fd may have an entry. */
int sf_tab_has(int fd);
/* Copy fd's entry into *out; 1 if present, 0 if not. */
int sf_tab_get(int fd, struct sf_entry *out);
/* Create or replace fd's entry; the replaced one (if any) is copied into *old (may be NULL) and
   1 is returned; 0 if there was none; -1 if the fd cannot be tracked. */
int sf_tab_set(int fd, const struct sf_entry *in, struct sf_entry *old);
/* Remove fd's entry unless it is SF_K_INTERNAL; copy it into *old. Returns 1 if removed,
   0 if absent, 2 if the fd is internal (nothing removed). */
int sf_tab_del(int fd, struct sf_entry *old);
/* Remove fd's entry whatever its kind (our own fds). */
void sf_tab_drop(int fd);
/* Mark fd as one of our own (INTERNAL, owner = app fd or -1). */
void sf_tab_mark_internal(int fd, int owner);
/* Run fn on the entry under the slot lock (e is NULL-kind-zeroed scratch when absent and create
   is set). fn returns SF_UPD_KEEP, SF_UPD_STORE or SF_UPD_DELETE; fn must not block or call
   anything that takes another slot lock. Returns fn's result, or -1 if absent and !create. */
enum { SF_UPD_KEEP = 0, SF_UPD_STORE = 1, SF_UPD_DELETE = 2 };
typedef int (*sf_upd_fn)(struct sf_entry *e, int present, void *arg);
int sf_tab_update(int fd, sf_upd_fn fn, void *arg);
/* Visit every entry in [lo, hi]; cb gets a copy; entries for which it returns nonzero are
   removed. Used by close_range. */
void sf_tab_scan(unsigned lo, unsigned hi, int (*cb)(int fd, const struct sf_entry *e, void *arg), void *arg);
/* Nonzero when this thread is inside the table (so we are in a signal handler that interrupted
   it): the broker client and the pools must not be waited for (they come first in lock order). */
int sf_tab_busy(void);
void sf_tab_atfork_prepare(void);
void sf_tab_atfork_parent(void);
void sf_tab_atfork_child(void);

/* ---------- inet6.c ---------- */
/* An AF_INET6 address SlimFast can serve: :: (*ip = 0) or ::ffff:a.b.c.d (*ip = a.b.c.d, network
   order). 1 if so (port in *port, network order), 0 for every other address (::1, link-local, ...). */
int sf_v6_to_v4(const struct sockaddr *addr, socklen_t len, uint32_t *ip, uint16_t *port);
/* IPV6_V6ONLY of fd (1 on error: treat as IPv6-only, i.e. leave it alone). */
int sf_v6only(int fd);
/* An IPPROTO_IPV6 option that has an IPPROTO_IP equivalent on an AF_INET socket:
   IPV6_TCLASS -> IP_TOS, IPV6_UNICAST_HOPS -> IP_TTL. 1 and *name4 set, else 0. */
int sf_v6_opt_v4(int name, int *name4);
/* setsockopt/getsockopt at IPPROTO_IPV6 on fd, an AF_INET host socket the app sees as AF_INET6. */
int sf_v6_setsockopt(int fd, int name, const void *val, socklen_t len);
int sf_v6_getsockopt(int fd, int name, void *val, socklen_t *len);

/* ---------- pool.c ---------- */
/* A pool channel arrived for the route net/prefix (network order / length); takes fd. */
void sf_pool_add(int fd, uint32_t net, uint32_t prefix);
/* The broker connection died: its pools go too. */
void sf_pool_drop_all(void);
/* 1 when this thread holds the pools' mutex (a signal handler interrupted it there). */
int sf_pool_busy(void);
void sf_pool_atfork_prepare(void);
void sf_pool_atfork_parent(void);
void sf_pool_atfork_child(void);
/* The broker confirmed ip:port (network order) as a cross-host SlimFast listener. Good while the
   view page's gone counter stays (30 s at most), or for a second without a page. */
void sf_pool_confirm(uint32_t ip, uint16_t port);
/* The broker said ip:port is not SlimFast's (SF_STATUS_FALLBACK): connects there skip the broker
   while the view page's found counter stays (30 s at most; without a page, not at all). */
void sf_pool_note_plain(uint32_t ip, uint16_t port);
int sf_pool_is_plain(uint32_t ip, uint16_t port);
/* The live broker connection's view page (NULL: none). */
void sf_pool_set_view(const struct sf_view *v);
/* A connected host socket for ip:port with its header sent, *sport the virtual source port
   (network order; bound_port when nonzero). 0, or -1: ask the broker instead. */
int sf_pool_take(uint32_t ip, uint16_t port, uint16_t bound_port, int *fd, uint16_t *sport);
/* socket(): a pooled host socket from the pool this process's connects are expected to use, on
   the lowest free fd (O_CLOEXEC with cloexec; O_NONBLOCK if t->nonblock; nonblock: what the app
   asked for, which the pool's reports tell the broker, so that it stocks sockets so). 0 and *fd,
   *t; -1: make an ordinary one. */
int sf_pool_hand(int cloexec, int nonblock, int *fd, struct sf_ticket *t);
/* connect() of a POOLED socket to ip:port: sends the header if t's pool covers the destination
   (route, confirmation, age, source port); 0 = connected (t settled as used); -1 = not covered or
   the send failed (t still open: the caller replaces the socket and settles it as gone). */
int sf_pool_connect(int fd, struct sf_ticket *t, uint32_t ip, uint16_t port, uint16_t bound_port);
/* The ticket's socket is gone unused (closed, replaced; SF_TK_MISSED: because the app connected
   somewhere its pool does not go): tell its pool. No-op when settled. */
enum { SF_TK_GONE = 1, SF_TK_MISSED };
void sf_pool_settle(struct sf_ticket *t, int how);
int sf_pool_is_fd(int fd);
void sf_pool_relocate(int fd);

/* ---------- broker.c ---------- */
struct sf_info {
  uint32_t vip, net, mask; /* network order */
  uint16_t features;       /* SF_FEAT_* from SF_HELLO_OK */
};
/* Make sure the broker connection is up (opening it lazily); fills *info. 0 or -1. */
int sf_broker_info(struct sf_info *info);
/* One request/reply. send_fd (or -1) travels with the request. On 0, *rep is the reply and
   *rep_fd the attached fd (or -1; the caller owns it). -1: broker unreachable, dead or too slow
   (the caller falls back). */
int sf_broker_call(struct sf_msg *req, int send_fd, struct sf_msg *rep, int *rep_fd);
/* The same with up to two fds (in that order). */
int sf_broker_call_fds(struct sf_msg *req, const int *fds, int nfds, struct sf_msg *rep, int *rep_fd);
/* The live connection's fd, or -1 (lock-free; for the watcher's poll only). */
int sf_broker_watch_fd(void);
/* The watcher saw fd hang up: see broker.c. */
void sf_broker_hangup(int fd);
/* sf_broker_info without waiting out the reconnect back-off (the caller paces itself). */
int sf_broker_reconnect(struct sf_info *info);
int sf_broker_is_fd(int fd);
/* After close() of a listener (chan_ino: st_ino of its channel): see broker.c. */
void sf_broker_listen_closed(uint64_t chan_ino);
/* The app wants fd number `fd` and it is our broker connection: move ours away. */
void sf_broker_relocate(int fd);
/* fork(): prepare takes the broker's mutex then the pools' (sf_pool_atfork_prepare); parent
   releases them; child starts afresh (the pools too). */
void sf_broker_atfork_prepare(void);
void sf_broker_atfork_parent(void);
void sf_broker_atfork_child(void);

/* ---------- swap.c ---------- */
/* Replace the app's fd with newfd (consumed): keeps FD_CLOEXEC of the app's fd and O_NONBLOCK
   of `flags` (the app fd's F_GETFL, read now when -1), replays recorded options (if replay_opts),
   re-registers fd in the recorded epoll sets. Returns 0, or -1 with errno (newfd closed). */
int sf_swap_in(int fd, int newfd, const struct sf_entry *e, int replay_opts, int flags);
/* Release resources held by an entry that is gone (closes a channel's hidden fd). */
void sf_entry_release(const struct sf_entry *e);
/* Remove fd's entry (unless INTERNAL) and release it: from now on fd is an ordinary fd. */
void sf_forget(int fd);
/* Close (really) one of our hidden fds and drop its INTERNAL entry. */
void sf_hidden_close(int hfd);
/* Create a hidden (high, CLOEXEC, INTERNAL) dup of fd owned by app fd `owner`; -1 on failure. */
int sf_hidden_dup(int fd, int owner);
/* The app wants fd number `fd` (dup2 target) and it is one of our internal fds: move it. */
void sf_internal_relocate(int fd);
/* Claim fd's entry of `kind` (and st_ino *ino unless ino is NULL) for a swap: SF_F_SWAPPING, one
   thread at a time. 1 = claimed (*out, if not NULL, is the entry); 0 = no such entry; -1 = another
   thread holds it. sf_unclaim clears the flag on an entry of kind (SF_K_NONE: whatever fd has). */
int sf_claim(int fd, int kind, const uint64_t *ino, struct sf_entry *out);
void sf_unclaim(int fd, int kind);
/* The app's view of (ip, port): sockaddr_in, or with v6 a sockaddr_in6 (::ffff:ip, :: for ip 0);
   truncated to *len like the kernel does, *len set to the full size. */
void sf_fill_addr(struct sockaddr *addr, socklen_t *len, int v6, uint32_t ip, uint16_t port);
/* A POOLED fd (claimed by the caller, entry *e) gets an ordinary socket in its place (options and
   epoll registrations carried over) and becomes SF_K_SOCK: the app is about to bind, listen, dup
   or connect somewhere its pool does not go. how: SF_TK_GONE or SF_TK_MISSED. 0, or -1 (errno). */
int sf_unpool_claimed(int fd, struct sf_entry *e, int how);
/* fd, if the app holds it as a POOLED socket, gets an ordinary socket in its place (its pooled one
   is counted as gone). 0 (also when fd is not POOLED), or -1 with errno. */
int sf_unpool(int fd);

/* ---------- adopt.c ---------- */
/* At load: mark inherited fds that may be SlimFast listeners (SF_K_CAND). */
void sf_scan_inherited(void);
/* An SF_K_CAND fd is being used: ask the broker whether it is a channel; updates the table.
   Returns the new kind. */
int sf_adopt(int fd);
/* Copy of fd's entry if it still describes the socket at fd (an fd closed behind our back, e.g.
   by fclose(), leaves a stale entry: drop it). Adopts exec-inherited channels on first use.
   Returns the kind (SF_K_NONE when untracked). */
int sf_entry_of(int fd, struct sf_entry *e);

/* ---------- listen.c ---------- */
/* A fresh listening socket on e's virtual address in this network namespace (CLOEXEC), or -1. */
int sf_relisten(const struct sf_entry *e);
/* A steered listener's fd (entry *e) gets a fresh listening socket on its virtual address, trying
   for up to wait_ms while the address is in use, and becomes `kind` with its channel closed; *e is
   its new entry. 0, or -1 with errno (*e unchanged). */
int sf_unsteer(int fd, struct sf_entry *e, int kind, int wait_ms);
/* fd (entry *e, kind SF_K_SOCK or SF_K_ORPHAN) listens: hand it to the broker. 0 = it is a
   SlimFast listener now; 1 = the broker cannot be reached (fd unchanged, try again later);
   2 = the broker does not serve it (its entry is gone: an ordinary socket); -1 = error (errno):
   listen() must fail with it. */
int sf_listen_register(int fd, struct sf_entry *e, int backlog);
/* A listener channel whose broker is gone: put the real listening socket back on fd, as an
   SF_K_ORPHAN. See listen.c. */
int sf_channel_fallback(int fd, struct sf_entry *was);
/* The channel's real listening socket was shut down (shutdown(SHUT_RD|SHUT_RDWR) on this fd, a
   dup of it or in another process sharing it): what the kernel's listener would then answer. */
int sf_channel_is_shut(const struct sf_entry *e);

/* ---------- relisten.c ---------- */
/* Start this process's watcher thread if it is not running (after fork it is not): it notices a
   broker that went away and registers the listeners again with the next one. */
void sf_watch_ensure(void);
void sf_watch_atfork_child(void);

/* ---------- forkexec.c ---------- */
void sf_init(void); /* idempotent; the constructor calls it */

#endif
