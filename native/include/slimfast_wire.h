/* SlimFast wire formats shared by the preload library and the broker addon.
 *
 * Two formats live here:
 *   1. sf_msg: the fixed-size messages on the SOCK_SEQPACKET Unix connection between a process's
 *      preload library and its host's broker (one connection per process), and on listener channels.
 *   2. sf_hdr: the fixed 48-byte header a client host's broker writes as the first bytes of every
 *      host TCP connection to a peer's reserved port. docs/protocol.md describes both in prose.
 *
 * All addresses and ports are in network byte order; every other integer is in host byte order for
 * sf_msg (both ends run on the same host) and big-endian for sf_hdr (it crosses hosts).
 */
#ifndef SLIMFAST_WIRE_H
#define SLIMFAST_WIRE_H

#include <stdint.h>

#ifdef __cplusplus
#define SF_STATIC_ASSERT static_assert
#else
#define SF_STATIC_ASSERT _Static_assert
#endif

/* ---------- preload <-> broker (SOCK_SEQPACKET, one message per packet) ---------- */

#define SF_MSG_VERSION 1

enum sf_msg_type {
  /* preload -> broker */
  SF_HELLO = 1,         /* a = pid. Reply SF_HELLO_OK.                                       */
  SF_CONNECT = 2,       /* vip_b:port_b = destination, port_a = port the app bound (0 = any). */
  SF_LISTEN = 3,        /* carries the app's bound+listening TCP socket (SCM_RIGHTS);
                           vip_a:port_a = its bound address (0.0.0.0 allowed), a = backlog.   */
  SF_QUERY_CHANNEL = 4, /* a = st_ino of an inherited AF_UNIX/SEQPACKET fd (after exec).
                           Reply SF_CHANNEL_INFO, status 0 with vip_a:port_a when it is one of
                           this broker's listener channels, else status ENOENT.              */
  SF_POOL_TOOK = 5,     /* on a pool channel: sockets removed from it since the last report,
                           a = used | (discarded as stale or dead) << 32; status bits:
                           SF_TOOK_EMPTY the pool was found empty, SF_TOOK_BLOCKING the
                           process's applications want blocking sockets (stock them so).      */
  SF_STEER_SOCKET = 6,  /* after an SF_LISTEN_OK with SF_LISTEN_STEERED: a = st_ino of the
                           channel it attached. Reply SF_STEER_OK.                             */
  SF_LISTEN_CLOSED = 7, /* the process closed a listener: a = st_ino of its channel. If no
                           process holds the channel any more, the broker drops it now, and with
                           it its copy of the app's listening socket, so that the port is free
                           when close() returns. Reply SF_LISTEN_CLOSED_OK.                    */
  SF_STEER_AGAIN = 8,   /* after a broker restart: a steered listener the process still holds.
                           Carries its steered host socket and, optionally, a fresh listening
                           socket on the virtual address for plain clients (SCM_RIGHTS, in that
                           order); vip_a:port_a = the listener's virtual address. The broker
                           puts the socket back into its steering group. Reply SF_LISTEN_OK:
                           status 0 with a new channel attached and a = SF_LISTEN_STEERED, or a
                           positive errno (the process then listens afresh).                    */

  /* broker -> preload (replies echo the request's seq) */
  SF_HELLO_OK = 101,         /* vip_a = container vIP, vip_b = overlay network, a = prefix length,
                           port_b = SF_FEAT_* bits (network order): requests this broker answers
                           beyond the first ones (an older broker ignores unknown requests).  */
  SF_CONNECT_OK = 102,       /* status 0: one connected TCP socket attached (SCM_RIGHTS);
                           vip_a:port_a = virtual local address, vip_b:port_b = virtual peer.
                           status SF_STATUS_FALLBACK: not SlimFast's; connect the app's own
                           socket as usual. status > 0: fail connect() with that errno.
                           a & SF_CONNECT_POOLABLE: a cross-host SlimFast listener; the next
                           connects to it may use the route's pool (SF_POOL_CHANNEL).         */
  SF_LISTEN_OK = 103,        /* status 0: the listener channel is attached (SCM_RIGHTS);
                           vip_a:port_a = virtual listening address. status FALLBACK: keep the
                           app's own listening socket. status > 0: errno for listen().         */
  SF_CHANNEL_INFO = 104,     /* status 0: vip_a:port_a = the listener's virtual address. For an
                           inherited steered socket (below) a = SF_LISTEN_STEERED and a fresh
                           channel for it is attached.                                         */
  SF_POOL_CHANNEL = 105,     /* unsolicited (seq 0), sent before the CONNECT_OK that needed it: a
                           pool channel (SCM_RIGHTS) for the route vip_a/a (net/prefix length)
                           to peer host vip_b. The broker keeps it stocked with SF_POOLED.    */
  SF_STEER_OK = 106,         /* status 0: the listener's kernel-steered host listening socket is
                           attached (SCM_RIGHTS): bound to the reserved port, in its SO_REUSEPORT
                           group, and the kernel's BPF program gives it the connections whose
                           verified header names this listener. Each starts with its sf_hdr;
                           an SF_HDR_DOORBELL one means "take one SF_ACCEPTED from the channel".
                           status > 0: keep using the channel alone.                           */
  SF_LISTEN_CLOSED_OK = 107, /* status 0 (whether or not the channel was dropped).          */

  /* broker -> application, on a listener channel: one per incoming connection */
  SF_ACCEPTED = 201, /* one connected TCP socket attached (SCM_RIGHTS);
                           vip_a:port_a = local (virtual) address, vip_b:port_b = peer.      */

  /* broker -> preload, on a pool channel: one pre-established host connection, as an sf_pooled */
  SF_POOLED = 202 /* one connected TCP socket to the peer's reserved port (SCM_RIGHTS) on
                           which nothing was sent yet; a = CLOCK_MONOTONIC ns when it was
                           established, port_a = the virtual source port, status =
                           SF_POOLED_DEFERRED or 0, seq = how many takes the taker may report
                           together (0 or 1: each). The taker fills dst_vip, dst_port and
                           src_port into the attached header and sends it.                    */
};

/* SF_POOLED status: a TCP Fast Open socket whose connect() was deferred — the SYN leaves with the
   header, so nothing can have arrived on it (no liveness check needed). */
#define SF_POOLED_DEFERRED 1
/* SF_POOLED status: the socket is O_NONBLOCK (as most applications want theirs; the taker clears
   it for a blocking one). Without it, the socket is blocking. */
#define SF_POOLED_NONBLOCK 2
#define SF_TOOK_EMPTY 1
#define SF_TOOK_BLOCKING 2

#define SF_FEAT_LISTEN_CLOSED 1u /* SF_HELLO_OK.port_b: SF_LISTEN_CLOSED is answered */
#define SF_FEAT_STEER_AGAIN 2u   /* SF_HELLO_OK.port_b: SF_STEER_AGAIN is answered */
#define SF_FEAT_VIEW 4u          /* SF_HELLO_OK.port_b: the view page (struct sf_view) is attached */
#define SF_CONNECT_POOLABLE 1u
/* SF_CONNECT_OK.a with SF_STATUS_FALLBACK: no SlimFast listener there for this container (not a
   failure): the process may connect there directly until the view page's found counter moves. */
#define SF_CONNECT_NOT_OURS 2u
#define SF_LISTEN_STEERED 1u /* SF_LISTEN_OK.a: fetch the steered socket with SF_STEER_SOCKET */
/* A pooled socket older than this is not used: the receiving host holds an established connection
   that has sent nothing for SF_POOL_HOLD_S (TCP_DEFER_ACCEPT on the reserved port). */
#define SF_POOL_MAX_AGE_NS (20ull * 1000000000ull)
#define SF_POOL_HOLD_S 30
/* The source port of a POOLED header is the taker's to fill in (outside the MAC), so receivers
   refuse one below this: a process that bound a privileged port connects through its broker,
   which checks that it could bind it and signs the port (SF_HDR_CONNECT). */
#define SF_POOLED_SPORT_MIN 1024

/* status value meaning "not SlimFast's business: use the ordinary socket call". Any other
   negative status means the same, and -status says why: EMFILE, the container is at one of its
   broker's per-container limits; ENFILE, the broker keeps its remaining descriptors for its
   control plane. (SF_HELLO_OK answers a connection beyond those limits with status EMFILE or
   ENFILE, then closes it: the process stays off SlimFast for a while.) */
#define SF_STATUS_FALLBACK (-1)

struct sf_msg {
  uint16_t type;    /* enum sf_msg_type                                    */
  uint16_t version; /* SF_MSG_VERSION                                      */
  uint32_t seq;     /* request id chosen by the preload, echoed in replies */
  int32_t status;   /* replies: 0, SF_STATUS_FALLBACK or a positive errno  */
  uint32_t vip_a;   /* network order */
  uint32_t vip_b;   /* network order */
  uint16_t port_a;  /* network order */
  uint16_t port_b;  /* network order */
  uint64_t a;       /* type-specific */
};                  /* 32 bytes */

SF_STATIC_ASSERT(sizeof(struct sf_msg) == 32, "sf_msg must stay 32 bytes");

/* ---------- host connection header (client broker -> server broker, reserved port) ---------- */

#define SF_HDR_MAGIC 0x534c4631u /* "SLF1" */
#define SF_HDR_VERSION 1
#define SF_HDR_LEN 48
#define SF_DEFAULT_PORT 4800

enum sf_hdr_type {
  SF_HDR_CONNECT = 1, /* a container connection: hand this socket to the listener of dst */
  SF_HDR_SYNC = 2,    /* a broker-to-broker control stream (listener table sync). key_id =
                         SF_KEY_HOST; without a cluster key the tag is the subscriber's key, with
                         one it is the MAC of bytes 0..31 under the subscriber's derived key.  */
  SF_HDR_POOLED = 3,  /* a pre-established container connection: signed by the broker, completed
                         and sent by the process that takes the socket, which fills in dst_vip,
                         dst_port and src_port. key_id = SF_KEY_HOST; the tag covers bytes
                         0..31 with bytes 8..15 (those three fields) zero, so the process can
                         choose where to connect but cannot change the source vIP.           */
  SF_HDR_DOORBELL = 4 /* from a broker to its own reserved port, for a steered listener: a
                         connection waits on the listener's channel (plain clients and
                         connections the kernel did not steer). Signed like CONNECT.          */
};

/* key_id values. SF_KEY_HOST: the sending host's key (SipHash-2-4, 128-bit tag over bytes 0..31).
   Without a cluster key it is the broker's own random key, which it announces to each peer in the
   tag of the SYNC header it subscribes with. With one (below) it is derived from the cluster key
   and the host's address, every member computes every other member's, and the SYNC header is
   signed like the others: nothing secret is ever sent. */
#define SF_KEY_NONE 0u
#define SF_KEY_HOST 1u

/* Cluster key (16..64 secret bytes, the same on every host; docs/protocol.md "Cluster key"):
 *   root         = its first 16 bytes; then for each further chunk c of up to 16 bytes,
 *                  root = SipHash-2-4-128(root, c)
 *   host key(ip) = SipHash-2-4-128(root, SF_HOST_KEY_LABEL (20 bytes) || ip (4 bytes, network order))
 * A receiver then also refuses a header whose nonce is older than the window (SF_HDR_WINDOW_MS by
 * default) or more than SF_HDR_FUTURE_NS ahead of its own clock, one whose (sending host, nonce)
 * it accepted before, and one from an address that is not the member owning the source vIP's
 * subnet (for SYNC: not a member). Senders keep their nonces unique (strictly increasing). */
#define SF_HOST_KEY_LABEL "slimfast host key v1"
#define SF_HOST_KEY_LABEL_LEN 20
#define SF_CLUSTER_KEY_MIN 16
#define SF_CLUSTER_KEY_MAX 64
/* A pooled header is signed when its socket is made and sent when a process takes it, at most
   SF_POOL_MAX_AGE_NS (20 s) later: the window must be longer, with room for clock skew. */
#define SF_HDR_WINDOW_MS 30000
#define SF_HDR_WINDOW_MIN_POOLED_MS 25000
#define SF_HDR_FUTURE_NS (5ull * 1000000000ull)

/* Byte layout, all integers big-endian, addresses and ports as on the wire:
 *  off size field
 *    0    4 magic      "SLF1"
 *    4    1 version    SF_HDR_VERSION
 *    5    1 type       enum sf_hdr_type
 *    6    2 hdr_len    SF_HDR_LEN (lets a receiver skip fields a later version appends)
 *    8    4 dst_vip
 *   12    2 dst_port
 *   14    2 src_port
 *   16    4 src_vip    stamped by the client's broker from the container's registration
 *   20    4 key_id     0 = unauthenticated
 *   24    8 nonce      sender's CLOCK_REALTIME in ns, unique per sender (freshness / replay window)
 *   32   16 tag        MAC over bytes 0..31 when key_id != 0, else zero
 */
struct sf_hdr {
  uint32_t magic;
  uint8_t version;
  uint8_t type;
  uint16_t hdr_len;
  uint32_t dst_vip;
  uint16_t dst_port;
  uint16_t src_port;
  uint32_t src_vip;
  uint32_t key_id;
  uint64_t nonce;
  uint8_t tag[16];
} __attribute__((packed));

SF_STATIC_ASSERT(sizeof(struct sf_hdr) == SF_HDR_LEN, "sf_hdr must stay 48 bytes");

/* The view page: one read-only shared page (a sealed memfd the broker attaches to SF_HELLO_OK)
   whose counters move when the broker's answer to "is vIP:port a SlimFast listener this container
   may reach?" may have changed. gone moves when one may have stopped being so (a listener closed
   here or on a peer, a peer lost, a new policy): a process's confirmations from before are void.
   found moves when one may have become so (a listener opened, a peer came, a new policy): its
   "not SlimFast's" answers from before are void. Between moves, answers stay good without asking. */
struct sf_view {
  uint32_t magic; /* SF_VIEW_MAGIC */
  uint32_t version;
  uint64_t gone;
  uint64_t found;
};
#define SF_VIEW_MAGIC 0x53465657u /* "SFVW" */

/* One message on a pool channel (broker -> preload): SF_POOLED plus the header to send. */
struct sf_pooled {
  struct sf_msg m;
  struct sf_hdr h;
};

SF_STATIC_ASSERT(sizeof(struct sf_pooled) == 80, "sf_pooled must stay 80 bytes");

#endif
