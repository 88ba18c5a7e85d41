// Engine counters: plain atomics, written by the engine thread (or by JS calls under the engine
// mutex), read lock-free by counters().
#pragma once
#include <atomic>
#include <cstdint>

#define SF_COUNTERS(X)                                                                                     \
  X(handed_out)            /* cross-host connects handed to a preload (round trip or from a pool)  */      \
  X(handed_in)             /* reserved-port connections pushed down a listener channel             */      \
  X(same_host)             /* local container-to-container connects (loopback pair or steered)     */      \
  X(same_host_steered)     /* of those, steered by the kernel to the listener (not in handed_in)     */    \
  X(fallbacks)             /* CONNECT answered with SF_STATUS_FALLBACK                             */      \
  X(refused)               /* reserved-port CONNECT for an unknown listener (reset)                */      \
  X(header_errors)         /* malformed, truncated or timed-out host headers (and, without a cluster       \
                              key, headers whose MAC failed)                                       */      \
  X(header_forged)         /* cluster key: reserved-port headers whose MAC failed (reset)          */      \
  X(header_stale)          /* cluster key: nonce outside the window (reset)                        */      \
  X(header_replayed)       /* cluster key: (sender, nonce) accepted before (reset)                 */      \
  X(header_not_member)     /* cluster key: not from the member owning the source subnet (reset)    */      \
  X(header_overload)       /* reserved-port connections closed at once: their source address (or           \
                              everyone) already had headerPeerMax (headerPendingMax) headers waiting */    \
  X(connect_failures)      /* cross-host connects that failed or timed out                         */      \
  X(policy_denied)         /* CONNECTs refused by the policy (EACCES; nothing sent)                 */     \
  X(plain_accepts)         /* ordinary clients accepted on an app's real listening socket          */      \
  X(channel_full)          /* connections reset because every channel of the listener was full     */      \
  X(sync_streams)          /* SYNC streams handed to JS (with a cluster key: once verified)        */      \
  X(bad_msgs)              /* malformed preload messages (connection closed)                       */      \
  X(listen_ok)             /* listener channels created                                            */      \
  X(events_dropped)        /* log events dropped because the event queue was full                  */      \
  X(preload_conns)         /* gauge: open preload connections                                      */      \
  X(containers)            /* gauge: registered containers                                         */      \
  X(listeners)             /* gauge: listener table entries (vIP:port keys)                        */      \
  X(pending_headers)       /* gauge: reserved-port connections waiting for their header            */      \
  X(pending_connects)      /* gauge: cross-host connects in progress                               */      \
  X(pools)                 /* gauge: pool channels (one per process and peer)                      */      \
  X(pooled)                /* gauge: pooled connections in channels (not reported taken) or connecting */  \
  X(pool_stocked)          /* pre-established connections pushed into pools                        */      \
  X(pool_taken)            /* of those, taken by an application connect() (also in handed_out)     */      \
  X(pool_failures)         /* connects to stock a pool that failed (the pool backs off)            */      \
  X(pool_expired)          /* receiving side: connections closed or timed out before sending a byte        \
                              (pooled ones nobody took)                                            */      \
  X(steered_listeners)     /* listeners given a kernel-steered host socket                         */      \
  X(steered_again)         /* steered listeners a process kept through a broker restart, steered again */  \
  X(doorbells)             /* doorbells rung for connections a steered listener takes from its channel */  \
  X(seccomp_handed)        /* connect() of programs without the preload (seccomp agent) answered with      \
                              a host connection put on their fd (also in handed_out / same_host)  */       \
  X(seccomp_continued)     /* seccomp notifications let through unchanged (not a SlimFast                  \
                             destination, not an IPv4 TCP socket, unknown container, errors)     */        \
  X(seccomp_fds)           /* gauge: seccomp notify fds held (one per container process tree)      */      \
  X(seccomp_pending)       /* gauge: connect() notifications held while their host connect runs    */      \
  X(seccomp_listeners)     /* listen() of programs without the preload given a steered host socket */      \
  X(seccomp_accepted)      /* accept() of programs without the preload answered with a connection  */      \
  X(seccomp_accepts_held)  /* gauge: blocking accept() notifications waiting for a connection */           \
  X(seccomp_accepts_ended) /* of those, dropped unanswered: the caller was interrupted (signal) or gone */ \
  X(seccomp_taken_over)    /* steered listeners of seccomp targets taken over after a broker restart */    \
  X(seccomp_keeper)        /* gauge: 1 while attached to slimfast-seccomp-keeper                   */      \
  X(peer_outside)          /* broker connections refused (EACCES): the connecting socket was not made      \
                              in the container's network namespace (another container's or a host          \
                              process that found the socket path)                                */        \
  X(limit_conns)           /* broker connections refused: the container had containerConnsMax open         \
                              (the process is told EMFILE and stays off SlimFast for a while)      */      \
  X(limit_pools)           /* pools not made: the container had containerPoolsMax (its connects            \
                              ask the broker each time instead)                                  */        \
  X(limit_listeners)       /* listens left to the application's own socket: the container had              \
                              containerListenersMax listener channels                            */        \
  X(limit_pending)         /* connects answered FALLBACK (seccomp: CONTINUE) and blocking seccomp          \
                              accepts answered EMFILE: the container had containerPendingMax               \
                              handoffs in progress                                               */        \
  X(limit_fds)             /* any of the above refused because the broker's descriptors reached            \
                              its budget (RLIMIT_NOFILE less the control plane's reserve): ENFILE */       \
  X(sport_denied)          /* CONNECTs refused (EACCES): a source port below the container's               \
                              ip_unprivileged_port_start from a process without                            \
                              CAP_NET_BIND_SERVICE                                                */       \
  X(lport_denied)          /* LISTENs left to the application's own socket (FALLBACK) for the same         \
                              reason: a listening port it could not have bound                    */       \
  X(header_low_sport)      /* reserved-port POOLED headers with a source port below 1024 (reset):          \
                              pooled connections never carry one                                  */       \
  X(port)                  /* the reserved port actually bound (useful with port 0)                */

namespace sf {

struct Counters {
#define SF_X(n) std::atomic<uint64_t> n{0};
  SF_COUNTERS(SF_X)
#undef SF_X
};

inline void inc(std::atomic<uint64_t>& c) { c.fetch_add(1, std::memory_order_relaxed); }
inline void dec(std::atomic<uint64_t>& c) { c.fetch_sub(1, std::memory_order_relaxed); }

}  // namespace sf
