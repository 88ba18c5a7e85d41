// Kernel steering (native/addon/steering.cc + native/bpf/steer.bpf.c) end to end, without Node.
//
//   make -C native/addon/tests steer   (builds build/tests/steer_test and runs it; needs root)
//
// A child process unshares a network namespace of its own (anonymous: it disappears with the
// child, whatever happens), brings lo up, enables server TFO there and plays both hosts on
// 127.0.0.1: a reserved-port listener (slot 0) and application listeners in one reuseport group,
// clients sending TFO SYNs with headers; then the same with the cluster-key program (sf_steer_auth)
// on a second port, clients also from 127.0.0.2. The parent bounds the whole run. Exit 0 = all passed,
// 77 = skipped (not root), else failed. -v prints every check.
#include <arpa/inet.h>
#include <endian.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "siphash.h"
#include "slimfast_wire.h"
#include "steer_shared.h"
#include "steering.h"

using namespace sf;

static bool verbose = false;
static int passed = 0, failed = 0;

static void check(bool ok, const std::string& name, const std::string& detail = "") {
  if (ok)
    passed++;
  else
    failed++;
  bool say = !ok && !detail.empty();  // details (often errno) only explain failures
  if (!ok || verbose)
    printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", name.c_str(), say ? " -- " : "", say ? detail.c_str() : "");
}

static const uint16_t kPort = SF_DEFAULT_PORT;
static const uint16_t kAuthPort = SF_DEFAULT_PORT + 1;      // the cluster-key phase's group
static uint16_t port_now = kPort;                           // where deliver() connects
static const char* bind_now = nullptr;                      // and from which address (null: the kernel's choice)
static uint32_t ip(const char* s) { return inet_addr(s); }  // network order

// ---------- headers ----------
struct Key {
  uint8_t b[16];
};
static Key random_key() {
  Key k;
  if (getrandom(k.b, 16, 0) != 16)
    for (int i = 0; i < 16; i++) k.b[i] = uint8_t(rand());
  return k;
}

static sf_hdr make_hdr(uint8_t type, const char* dst, uint16_t dport, const char* src, uint16_t sport) {
  sf_hdr h{};
  h.magic = htonl(SF_HDR_MAGIC);
  h.version = SF_HDR_VERSION;
  h.type = type;
  h.hdr_len = htons(SF_HDR_LEN);
  h.dst_vip = ip(dst);
  h.dst_port = htons(dport);
  h.src_port = htons(sport);
  h.src_vip = ip(src);
  h.key_id = htonl(SF_KEY_HOST);
  uint64_t ns = uint64_t(time(nullptr)) * 1000000000ull + uint64_t(rand());
  memcpy(&h.nonce, &ns, 8);
  return h;
}
static uint64_t realtime_ns() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}
static void set_nonce(sf_hdr& h, uint64_t ns) { h.nonce = htobe64(ns); }
static void sign(sf_hdr& h, const Key& k) { sf_siphash(&h, offsetof(sf_hdr, tag), k.b, h.tag, 16); }
static sf_hdr connect_hdr(const char* dst, uint16_t dport, const char* src, const Key& k) {
  sf_hdr h = make_hdr(SF_HDR_CONNECT, dst, dport, src, 40000 + rand() % 20000);
  sign(h, k);
  return h;
}
// As a broker makes it (destination fields zero), then completed by the taking process.
static sf_hdr pooled_hdr(const char* dst, uint16_t dport, const char* src, const Key& k) {
  sf_hdr h = make_hdr(SF_HDR_POOLED, "0.0.0.0", 0, src, 0);
  sign(h, k);
  h.dst_vip = ip(dst);
  h.dst_port = htons(dport);
  h.src_port = htons(40000 + rand() % 20000);
  return h;
}

// ---------- traffic ----------
enum { SLOT0 = 0, APP1, APP2, APP3, NLISTEN };
static int lfd[NLISTEN] = {-1, -1, -1, -1};
static const char* lname[NLISTEN] = {"slot0", "app1", "app2", "app3"};

struct Outcome {
  int where = -1;          // index into lfd, -1 = nowhere within the wait
  bool data_ok = false;    // the bytes sent were read from the accepted socket
  bool immediate = false;  // ... all of them right after accept, without waiting
  int client_err = 0;      // SO_ERROR of the client after the wait (ECONNREFUSED when dropped)
  std::string name() const { return where < 0 ? "nowhere" : lname[where]; }
};

static bool wait_fd(int fd, short ev, int ms) {
  pollfd p{fd, ev, 0};
  return poll(&p, 1, ms) == 1;
}

// One connection to 127.0.0.1:kPort carrying buf: in the SYN (tfo) or after the handshake.
static Outcome deliver(const void* buf, size_t len, bool tfo, int wait_ms = 2000) {
  Outcome o;
  int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (tfo && (setsockopt(c, IPPROTO_TCP, TCP_FASTOPEN_CONNECT, &one, sizeof one) < 0 ||
              setsockopt(c, IPPROTO_TCP, TCP_FASTOPEN_NO_COOKIE, &one, sizeof one) < 0)) {
    perror("TFO client options");
    close(c);
    return o;
  }
  if (bind_now) {
    sockaddr_in b{};
    b.sin_family = AF_INET;
    b.sin_addr.s_addr = ip(bind_now);
    if (bind(c, reinterpret_cast<sockaddr*>(&b), sizeof b) < 0) perror("bind client");
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port_now);
  a.sin_addr.s_addr = ip("127.0.0.1");
  int r = connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a);
  if (tfo) {
    // TCP_FASTOPEN_CONNECT: connect() returns at once; the first send() emits the SYN with the data.
    if (r < 0 || send(c, buf, len, MSG_NOSIGNAL) != ssize_t(len)) {
      perror("TFO connect/send");
      close(c);
      return o;
    }
  } else {
    if ((r < 0 && errno != EINPROGRESS) || !wait_fd(c, POLLOUT, wait_ms) ||
        send(c, buf, len, MSG_NOSIGNAL) != ssize_t(len)) {
      perror("connect/send");
      close(c);
      return o;
    }
  }
  pollfd p[NLISTEN];
  for (int i = 0; i < NLISTEN; i++) p[i] = {lfd[i], POLLIN, 0};  // fd -1 is ignored by poll
  if (poll(p, NLISTEN, wait_ms) > 0) {
    for (int i = 0; i < NLISTEN; i++) {
      if (!(p[i].revents & POLLIN)) continue;
      int s = accept4(lfd[i], nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (s < 0) continue;
      o.where = i;
      std::vector<uint8_t> got(len);
      size_t n = 0;
      ssize_t k = recv(s, got.data(), len, MSG_DONTWAIT);
      if (k > 0) n = size_t(k);
      o.immediate = n == len;
      while (n < len && wait_fd(s, POLLIN, wait_ms) && (k = recv(s, got.data() + n, len - n, 0)) > 0) n += size_t(k);
      o.data_ok = n == len && memcmp(got.data(), buf, len) == 0;
      close(s);
      break;
    }
  }
  if (o.where < 0) {
    wait_fd(c, POLLOUT, 200);  // a refused SYN: the reset may still be on its way
    socklen_t el = sizeof o.client_err;
    getsockopt(c, SOL_SOCKET, SO_ERROR, &o.client_err, &el);
  }
  close(c);
  return o;
}

// ---------- stats ----------
static const char* stat_name[SF_ST_COUNT] = {"steered", "no_header",   "not_steerable", "no_key",
                                             "bad_tag", "no_listener", "closed",        "dropped",
                                             "stale",   "replayed",    "not_member"};
static std::string stat_diff(const SteerStats& a, const SteerStats& b) {
  const uint64_t* x = &a.steered;
  const uint64_t* y = &b.steered;
  std::string s;
  for (int i = 0; i < SF_ST_COUNT; i++)
    if (x[i] != y[i]) s += std::string(s.empty() ? "" : " ") + stat_name[i] + "+" + std::to_string(y[i] - x[i]);
  return s.empty() ? "none" : s;
}

static Steering st;
static Steering* stp = &st;  // the one expect() reads the stats of

// Sends buf and checks where it landed, that its bytes arrived, and which counters moved.
static void expect(const std::string& name, const void* buf, size_t len, bool tfo, int want,
                   const std::string& want_stats) {
  SteerStats before = stp->stats();
  Outcome o = deliver(buf, len, tfo, want < 0 ? 500 : 2000);  // a refused one: wait less
  SteerStats after = stp->stats();
  check(o.where == want, name + ": lands on " + (want < 0 ? "nothing" : lname[want]), "got " + o.name());
  if (want >= 0) check(o.data_ok, name + ": bytes readable after accept");
  if (want > SLOT0) check(o.immediate, name + ": header there right at accept (came in the SYN)");
  if (want < 0) check(o.client_err == ECONNREFUSED, name + ": client refused", strerror(o.client_err));
  std::string d = stat_diff(before, after);
  check(d == want_stats, name + ": stats " + want_stats, d);
}

static void expect_hdr(const std::string& name, const sf_hdr& h, int want, const std::string& want_stats) {
  expect(name, &h, sizeof h, true, want, want_stats);
}

static bool lo_up() {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq ifr{};
  strcpy(ifr.ifr_name, "lo");
  bool ok = s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags |= IFF_UP, ioctl(s, SIOCSIFFLAGS, &ifr) == 0);
  if (s >= 0) close(s);
  return ok;
}

static int run() {
  check(lo_up(), "lo up in the test namespace", strerror(errno));
  check(!server_tfo_enabled(), "a fresh netns has no server TFO (tcp_fastopen = 1)");
  std::string e = enable_server_tfo();
  check(e.empty() && server_tfo_enabled(), "enable_server_tfo sets bit 0x2", e);

  e = st.open();
  check(e.empty() && st.ok(), "Steering::open", e);
  if (!st.ok()) return 1;
  check(st.open().empty(), "open() twice is harmless");

  const uint32_t lo = 0x7f000001;
  lfd[SLOT0] = steer_listen_socket(lo, kPort, 64, true);
  check(lfd[SLOT0] >= 0, "reserved listener", strerror(errno));
  e = st.attach(lfd[SLOT0]);
  check(e.empty() && st.slot_open(0), "attach puts the reserved listener in slot 0", e);
  int plain = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  check(!st.attach(plain).empty(), "attach refuses a socket without SO_REUSEPORT");
  close(plain);

  lfd[APP1] = steer_listen_socket(lo, kPort, 64, true);
  lfd[APP2] = steer_listen_socket(lo, kPort, 64, true);
  int s1 = st.add(ip("10.99.0.2"), htons(80), lfd[APP1]);
  int s2 = st.add(ip("10.99.0.3"), htons(8080), lfd[APP2]);
  check(s1 >= 1 && s2 >= 1 && s1 != s2, "two app listeners get their own slots",
        std::to_string(s1) + "," + std::to_string(s2));
  check(st.slot_open(s1) && st.slot_open(s2) && !st.slot_open(s2 + 1), "slot_open of used and unused slots");
  int unbound = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  check(st.add(ip("10.99.0.9"), htons(9), unbound) < 0, "add refuses a socket that is not listening");
  close(unbound);

  // Host A owns 10.98.0.0/24; host B owns 10.97.0.0/24 and changed its key (prev still valid).
  Key ka = random_key(), kb = random_key(), kb_prev = random_key(), other = random_key();
  check(st.set_key(ip("10.98.0.0"), 24, ka.b, nullptr), "set_key A");
  check(st.set_key(ip("10.97.0.0"), 24, kb.b, kb_prev.b), "set_key B with prev");
  check(!st.set_key(ip("10.97.0.0"), 33, kb.b, nullptr), "set_key refuses prefix 33");

  const std::string ST = "steered+1";
  expect_hdr("CONNECT to app1", connect_hdr("10.99.0.2", 80, "10.98.0.5", ka), APP1, ST);
  expect_hdr("CONNECT to app2", connect_hdr("10.99.0.3", 8080, "10.98.0.5", ka), APP2, ST);
  expect_hdr("POOLED completed after signing", pooled_hdr("10.99.0.3", 8080, "10.98.0.6", ka), APP2, ST);
  expect_hdr("CONNECT under B's current key", connect_hdr("10.99.0.2", 80, "10.97.0.9", kb), APP1, ST);
  expect_hdr("CONNECT under B's previous key", connect_hdr("10.99.0.2", 80, "10.97.0.9", kb_prev), APP1, ST);
  expect_hdr("POOLED under B's previous key", pooled_hdr("10.99.0.2", 80, "10.97.0.9", kb_prev), APP1, ST);

  // Random keys and headers: the program's SipHash must agree with siphash.h on all of them.
  int agree = 0;
  SteerStats before = st.stats();
  for (int i = 0; i < 24; i++) {
    Key k = random_key();
    st.set_key(ip("10.96.0.0"), 16, k.b, nullptr);
    char src[32];
    snprintf(src, sizeof src, "10.96.%d.%d", rand() % 256, 1 + rand() % 254);
    sf_hdr h = i % 2 ? pooled_hdr("10.99.0.2", 80, src, k) : connect_hdr("10.99.0.2", 80, src, k);
    Outcome o = deliver(&h, sizeof h, true);
    agree += o.where == APP1 && o.data_ok;
  }
  check(agree == 24, "24 random keys/headers all steered",
        std::to_string(agree) + "/24; " + stat_diff(before, st.stats()));
  st.drop_key(ip("10.96.0.0"), 16);

  // A doorbell (the broker to its own port) is signed like CONNECT and steered the same way.
  sf_hdr bell = make_hdr(SF_HDR_DOORBELL, "10.99.0.2", 80, "10.98.0.5", 0);
  sign(bell, ka);
  expect_hdr("signed doorbell", bell, APP1, "steered+1");
  bell.tag[3] ^= 0x40;
  expect_hdr("doorbell with a bad tag", bell, SLOT0, "bad_tag+1");

  // Everything else lands on slot 0.
  sf_hdr h = connect_hdr("10.99.0.2", 80, "10.98.0.5", ka);
  h.tag[7] ^= 0x10;
  expect_hdr("bad tag (first half)", h, SLOT0, "bad_tag+1");
  h = connect_hdr("10.99.0.2", 80, "10.98.0.5", ka);
  h.tag[15] ^= 0x01;
  expect_hdr("bad tag (second half)", h, SLOT0, "bad_tag+1");
  h = connect_hdr("10.99.0.2", 80, "10.98.0.5", ka);
  h.dst_port = htons(8080);  // CONNECT: the destination is signed
  expect_hdr("CONNECT destination changed after signing", h, SLOT0, "bad_tag+1");
  h = connect_hdr("10.99.0.2", 80, "10.98.0.5", ka);
  h.src_vip = ip("10.98.0.77");  // the source vIP is signed in every header
  expect_hdr("source vIP changed after signing", h, SLOT0, "bad_tag+1");
  h = make_hdr(SF_HDR_POOLED, "10.99.0.2", 80, "10.98.0.5", 41000);
  sign(h, ka);  // signed over the destination: a POOLED header's MAC leaves it out
  expect_hdr("POOLED signed with the destination", h, SLOT0, "bad_tag+1");
  expect_hdr("signed by another subnet's host", connect_hdr("10.99.0.2", 80, "10.98.0.5", kb), SLOT0, "bad_tag+1");
  expect_hdr("unknown source subnet", connect_hdr("10.99.0.2", 80, "10.95.0.7", other), SLOT0, "no_key+1");
  expect_hdr("unregistered destination port", connect_hdr("10.99.0.2", 81, "10.98.0.5", ka), SLOT0, "no_listener+1");
  expect_hdr("unregistered destination vIP", connect_hdr("10.99.0.4", 80, "10.98.0.5", ka), SLOT0, "no_listener+1");
  h = connect_hdr("10.99.0.2", 80, "10.98.0.5", ka);
  expect("header after the handshake (no TFO)", &h, sizeof h, false, SLOT0, "no_header+1");
  expect("short SYN payload", &h, 20, true, SLOT0, "no_header+1");
  uint8_t junk[48];
  for (auto& b : junk) b = uint8_t(rand());
  expect("garbage bytes", junk, sizeof junk, true, SLOT0, "not_steerable+1");
  h = make_hdr(SF_HDR_SYNC, "0.0.0.0", 0, "10.98.0.1", 0);
  sign(h, ka);
  expect_hdr("SYNC header", h, SLOT0, "not_steerable+1");
  h = make_hdr(SF_HDR_CONNECT, "10.99.0.2", 80, "10.98.0.5", 41000);
  h.key_id = htonl(SF_KEY_NONE);
  expect_hdr("unsigned CONNECT (key_id 0)", h, SLOT0, "not_steerable+1");
  uint8_t longer[64] = {};
  h = make_hdr(SF_HDR_CONNECT, "10.99.0.2", 80, "10.98.0.5", 41000);
  h.hdr_len = htons(64);
  sign(h, ka);
  memcpy(longer, &h, sizeof h);
  expect("hdr_len 64", longer, sizeof longer, true, SLOT0, "not_steerable+1");
  h = connect_hdr("10.99.0.2", 80, "10.98.0.5", ka);
  h.version = 2;
  sign(h, ka);
  expect_hdr("version 2", h, SLOT0, "not_steerable+1");

  // A closed app listener: the kernel empties its slot; its connections fall back to slot 0.
  close(lfd[APP1]);
  lfd[APP1] = -1;
  check(!st.slot_open(s1) && st.slot_open(s2) && st.slot_open(0), "closing app1 empties only its slot");
  expect_hdr("to a closed listener", connect_hdr("10.99.0.2", 80, "10.98.0.5", ka), SLOT0, "closed+1");
  st.remove(ip("10.99.0.2"), htons(80), s1);
  expect_hdr("to a removed listener", connect_hdr("10.99.0.2", 80, "10.98.0.5", ka), SLOT0, "no_listener+1");
  lfd[APP1] = steer_listen_socket(lo, kPort, 64, true);
  int s1b = st.add(ip("10.99.0.2"), htons(80), lfd[APP1]);
  check(s1b == s1, "a freed slot is reused", std::to_string(s1b));
  expect_hdr("to the new app1", connect_hdr("10.99.0.2", 80, "10.98.0.5", ka), APP1, ST);

  // A second listener for app2's destination replaces the mapping; removing the old slot then
  // leaves the destination pointing at the new one.
  lfd[APP3] = steer_listen_socket(lo, kPort, 64, true);
  int s3 = st.add(ip("10.99.0.3"), htons(8080), lfd[APP3]);
  check(s3 >= 1 && s3 != s1b && s3 != s2, "third slot", std::to_string(s3));
  st.remove(ip("10.99.0.3"), htons(8080), s2);
  check(!st.slot_open(s2), "remove empties the slot");
  expect_hdr("destination moved to app3", connect_hdr("10.99.0.3", 8080, "10.98.0.5", ka), APP3, ST);
  expect_hdr("app2's socket no longer selected", connect_hdr("10.99.0.3", 8080, "10.98.0.5", ka), APP3, ST);

  st.drop_key(ip("10.98.0.0"), 24);
  expect_hdr("after drop_key", connect_hdr("10.99.0.2", 80, "10.98.0.5", ka), SLOT0, "no_key+1");
  check(st.set_key(ip("10.98.0.0"), 24, ka.b, nullptr), "set_key A again");

  // Broker gone (slot 0 closed): what it would have taken is dropped, never given to an app
  // socket by the kernel's hash, while steered connections still work.
  close(lfd[SLOT0]);
  lfd[SLOT0] = -1;
  check(!st.slot_open(0), "slot 0 empty after the reserved listener closed");
  expect_hdr("slot 0 gone: unregistered destination is refused", connect_hdr("10.99.0.2", 81, "10.98.0.5", ka), -1,
             "no_listener+1 dropped+1");
  expect("slot 0 gone: garbage is refused", junk, sizeof junk, true, -1, "not_steerable+1 dropped+1");
  expect_hdr("slot 0 gone: steering still works", connect_hdr("10.99.0.2", 80, "10.98.0.5", ka), APP1, ST);

  SteerStats s = st.stats();
  printf(
      "steer stats: steered=%llu no_header=%llu not_steerable=%llu no_key=%llu bad_tag=%llu no_listener=%llu "
      "closed=%llu dropped=%llu\n",
      (unsigned long long)s.steered, (unsigned long long)s.no_header, (unsigned long long)s.not_steerable,
      (unsigned long long)s.no_key, (unsigned long long)s.bad_tag, (unsigned long long)s.no_listener,
      (unsigned long long)s.closed, (unsigned long long)s.dropped);
  for (int& fd : lfd)
    if (fd >= 0) close(fd), fd = -1;
  return failed ? 1 : 0;
}

// With a cluster key (sf_steer_auth): only fresh, new headers from the subnet's own host are steered;
// forged, stale, replayed and misplaced ones are refused in the kernel, never given to slot 0.
static int run_auth() {
  std::string e = st.set_auth(30000000000ull, SF_HDR_FUTURE_NS);
  check(!e.empty(), "the plain program refuses set_auth");
  Steering sa;
  e = sa.open(true);
  check(e.empty() && sa.ok(), "Steering::open(auth)", e);
  if (!sa.ok()) return 1;
  check(!sa.open(false).empty(), "open() with the other program is refused");
  check(sa.remember(ip("127.0.0.1"), 1) == ENODEV, "remember before set_auth: ENODEV");
  e = sa.set_auth(30000000000ull, SF_HDR_FUTURE_NS);
  check(e.empty(), "set_auth", e);
  check(sa.refresh_clock(), "refresh_clock");
  stp = &sa;
  port_now = kAuthPort;
  const uint32_t lo = 0x7f000001;
  lfd[SLOT0] = steer_listen_socket(lo, kAuthPort, 64, true);
  e = sa.attach(lfd[SLOT0]);
  check(e.empty(), "auth: attach", e);
  lfd[APP1] = steer_listen_socket(lo, kAuthPort, 64, true);
  check(sa.add(ip("10.99.0.2"), htons(80), lfd[APP1]) >= 1, "auth: app listener");

  // Host A (127.0.0.1) owns 10.98.0.0/24, host B (127.0.0.2) owns 10.97.0.0/24.
  Key ka = random_key(), kb = random_key();
  check(sa.set_key(ip("10.98.0.0"), 24, ka.b, nullptr, ip("127.0.0.1")), "auth: set_key A with its host");
  check(sa.set_key(ip("10.97.0.0"), 24, kb.b, nullptr, ip("127.0.0.2")), "auth: set_key B with its host");
  auto fresh = [](uint8_t type, const char* src, const Key& k, int64_t age_ns = 0, uint16_t dport = 80) {
    sf_hdr h = make_hdr(type, type == SF_HDR_POOLED ? "0.0.0.0" : "10.99.0.2", type == SF_HDR_POOLED ? 0 : dport, src,
                        type == SF_HDR_POOLED ? 0 : 41000);
    set_nonce(h, realtime_ns() - uint64_t(age_ns));
    sign(h, k);
    if (type == SF_HDR_POOLED) {
      h.dst_vip = ip("10.99.0.2");
      h.dst_port = htons(dport);
      h.src_port = htons(42000);
    }
    return h;
  };
  const int64_t S = 1000000000ll;
  const std::string ST = "steered+1";

  sf_hdr h = fresh(SF_HDR_CONNECT, "10.98.0.5", ka);
  expect_hdr("auth: fresh CONNECT from its host", h, APP1, ST);
  expect_hdr("auth: the same header again (replay)", h, -1, "replayed+1");
  check(sa.remember(ip("127.0.0.1"), h.nonce) == EEXIST, "auth: the broker finds a steered header in the cache");
  sf_hdr p = fresh(SF_HDR_POOLED, "10.98.0.6", ka);
  expect_hdr("auth: fresh POOLED", p, APP1, ST);
  p.src_port = htons(42001);  // the same pooled header, completed again by its process
  expect_hdr("auth: a pooled header sent twice", p, -1, "replayed+1");
  h = fresh(SF_HDR_CONNECT, "10.98.0.5", ka);
  h.tag[9] ^= 1;
  expect_hdr("auth: bad tag is refused in the kernel", h, -1, "bad_tag+1");
  expect_hdr("auth: 31 s old", fresh(SF_HDR_CONNECT, "10.98.0.5", ka, 31 * S), -1, "stale+1");
  expect_hdr("auth: 29 s old", fresh(SF_HDR_CONNECT, "10.98.0.5", ka, 29 * S), APP1, ST);
  expect_hdr("auth: 6 s in the future", fresh(SF_HDR_CONNECT, "10.98.0.5", ka, -6 * S), -1, "stale+1");
  expect_hdr("auth: 4 s in the future", fresh(SF_HDR_CONNECT, "10.98.0.5", ka, -4 * S), APP1, ST);
  h = fresh(SF_HDR_CONNECT, "10.98.0.5", ka);
  h.nonce = 0;
  sign(h, ka);
  expect_hdr("auth: nonce 0", h, -1, "stale+1");

  // B's header is good, but only from B's address.
  h = fresh(SF_HDR_CONNECT, "10.97.0.9", kb);
  expect_hdr("auth: B's header from A's address", h, -1, "not_member+1");
  bind_now = "127.0.0.2";
  expect_hdr("auth: the same from B's address", h, APP1, ST);
  expect_hdr("auth: A's header from B's address", fresh(SF_HDR_CONNECT, "10.98.0.5", ka), -1, "not_member+1");
  expect_hdr("auth: B's POOLED from B", fresh(SF_HDR_POOLED, "10.97.0.3", kb), APP1, ST);
  bind_now = nullptr;

  // The broker's path and the kernel's share the cache.
  h = fresh(SF_HDR_CONNECT, "10.98.0.5", ka);
  check(sa.remember(ip("127.0.0.1"), h.nonce) == 0, "auth: remember a header the broker accepted");
  expect_hdr("auth: that header steered later (replay)", h, -1, "replayed+1");
  h = fresh(SF_HDR_CONNECT, "10.98.0.5", ka);
  check(sa.remember(ip("127.0.0.2"), h.nonce) == 0, "auth: the same nonce from another host is another entry");
  expect_hdr("auth: so A's header with it is steered", h, APP1, ST);
  h = fresh(SF_HDR_CONNECT, "10.98.0.5", ka, 0, 81);
  expect_hdr("auth: fresh header, no listener: to the broker", h, SLOT0, "no_listener+1");
  check(sa.remember(ip("127.0.0.1"), h.nonce) == 0, "auth: the kernel did not record what it gave the broker");
  h = fresh(SF_HDR_CONNECT, "10.98.0.5", ka);
  expect("auth: header after the handshake: to the broker", &h, sizeof h, false, SLOT0, "no_header+1");
  expect_hdr("auth: unknown subnet: to the broker", fresh(SF_HDR_CONNECT, "10.95.0.7", ka), SLOT0, "no_key+1");
  h = make_hdr(SF_HDR_SYNC, "0.0.0.0", 0, "0.0.0.0", 0);
  sign(h, ka);
  expect_hdr("auth: SYNC: to the broker", h, SLOT0, "not_steerable+1");

  int agree = 0;
  SteerStats before = sa.stats();
  for (int i = 0; i < 24; i++) {
    sf_hdr x = fresh(i % 2 ? SF_HDR_POOLED : SF_HDR_CONNECT, "10.98.0.7", ka, int64_t(rand() % 20000) * 1000000);
    Outcome o = deliver(&x, sizeof x, true);
    agree += o.where == APP1 && o.data_ok;
  }
  check(agree == 24, "auth: 24 fresh headers of all ages steered",
        std::to_string(agree) + "/24; " + stat_diff(before, sa.stats()));

  for (int& fd : lfd)
    if (fd >= 0) close(fd), fd = -1;
  stp = &st;
  port_now = kPort;
  return failed ? 1 : 0;
}

int main(int argc, char** argv) {
  verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
  setvbuf(stdout, nullptr, _IOLBF, 0);
  if (geteuid() != 0) {
    printf("skip steer_test: needs root (a network namespace and BPF)\n");
    return 77;
  }
  srand(unsigned(time(nullptr)) ^ unsigned(getpid()));
  pid_t child = fork();
  if (child < 0) return perror("fork"), 1;
  if (child == 0) {
    alarm(60);  // backstop; the parent's deadline is the real bound
    if (unshare(CLONE_NEWNET) < 0) {
      printf("FAIL unshare(CLONE_NEWNET): %s\n", strerror(errno));
      _exit(1);
    }
    int rc = run();
    rc |= run_auth();
    printf("%s steer_test: %d passed, %d failed\n", rc ? "FAIL" : "ok  ", passed, failed);
    fflush(stdout);
    _exit(rc);
  }
  int status = 0;
  for (int i = 0; i < 900; i++) {  // 90 s
    pid_t r = waitpid(child, &status, WNOHANG);
    if (r == child) {
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      printf("FAIL steer_test: child killed by signal %d\n", WTERMSIG(status));
      return 1;
    }
    usleep(100 * 1000);
  }
  kill(child, SIGKILL);
  waitpid(child, &status, 0);
  printf("FAIL steer_test: timed out\n");
  return 1;
}
