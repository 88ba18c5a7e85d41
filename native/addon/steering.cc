// Loader and map editor of the kernel steering program (native/bpf/steer.bpf.c, embedded as
// steer_bpf_obj.h by binding.gyp). No dependency on the engine: the self-test builds it alone.
#include "steering.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <vector>

#include "bpf_object.h"
#include "steer_bpf_obj.h"  // generated: sf_steer_bpf_obj[], sf_steer_bpf_obj_len
#include "steer_shared.h"

namespace sf {

static_assert(sizeof(SteerStats) == SF_ST_COUNT * sizeof(uint64_t), "SteerStats follows sf_steer_stat");

// libbpf prints warnings to stderr unless told otherwise, and its print callback is process-wide.
// Ours is installed once and forever: it only collects lines into the calling thread's open()
// buffer, so nothing of libbpf's ever reaches the broker's stderr.
static thread_local std::string* libbpf_capture = nullptr;

static int libbpf_print(enum libbpf_print_level level, const char* fmt, va_list ap) {
  if (!libbpf_capture || level == LIBBPF_DEBUG) return 0;
  char line[512];
  vsnprintf(line, sizeof line, fmt, ap);
  if (libbpf_capture->size() < 64 * 1024) *libbpf_capture += line;  // the verifier log can be long
  return 0;
}

// The tail of what libbpf said: its last "libbpf:" lines and, when the verifier refused the
// program, the last lines of its log (where the reason is).
static std::string libbpf_summary(const std::string& out) {
  std::vector<std::string> lib, vlog;
  bool in_log = false;
  size_t pos = 0;
  while (pos < out.size()) {
    size_t nl = out.find('\n', pos);
    std::string l = out.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? out.size() : nl + 1;
    if (l.find("-- BEGIN PROG LOAD LOG --") != std::string::npos)
      in_log = true;
    else if (l.find("-- END PROG LOAD LOG --") != std::string::npos)
      in_log = false;
    else if (in_log && !l.empty())
      vlog.push_back(l);
    else if (l.rfind("libbpf: ", 0) == 0)
      lib.push_back(l.substr(8));
  }
  std::string s;
  auto tail = [&s](const std::vector<std::string>& v, size_t n) {
    for (size_t i = v.size() > n ? v.size() - n : 0; i < v.size(); i++) s += (s.empty() ? "" : "; ") + v[i];
  };
  tail(vlog, 2);
  tail(lib, 2);
  return s;
}

static std::string errno_hint(int e) {
  switch (e) {
    case EPERM:
    case EACCES:
      return kBpfPrivilegeHint;
    case EINVAL:
    case ENOSYS:
    case EOPNOTSUPP:
    case 524:  // the kernel's ENOTSUPP
      return " (kernel too old or without SK_REUSEPORT programs / REUSEPORT_SOCKARRAY maps?)";
    default:
      return "";
  }
}

Steering::~Steering() { close_all(); }

void Steering::close_all() {
  if (obj_) bpf_object__close(obj_);  // closes the program and map fds
  obj_ = nullptr;
  prog_fd_ = socks_fd_ = dsts_fd_ = keys_fd_ = stats_fd_ = auth_fd_ = seen_fd_ = -1;
  auth_prog_ = auth_on_ = false;
  used_.clear();
}

std::string Steering::open(bool auth) {
  if (obj_) return auth == auth_prog_ ? "" : "steering is open with the other program";
  static std::once_flag print_once;
  std::call_once(print_once, [] { libbpf_set_print(libbpf_print); });
  std::string said;
  libbpf_capture = &said;
  bpf_program *plain = nullptr, *strict = nullptr;
  std::string err;
  bpf_object* obj = load_embedded_bpf(
      sf_steer_bpf_obj, sf_steer_bpf_obj_len, "sf_steer", "steering",
      [&](bpf_object* o) -> std::string {
        plain = bpf_object__find_program_by_name(o, "sf_steer");
        strict = bpf_object__find_program_by_name(o, "sf_steer_auth");
        bpf_map* seen = bpf_object__find_map_by_name(o, "seen");
        if (!plain || !strict || !seen) return "the embedded steering object lacks a program or the seen map";
        if (bpf_program__set_autoload(auth ? plain : strict, false) < 0 ||
            (!auth && bpf_map__set_max_entries(seen, 1) < 0))  // no replay cache without auth
          return "cannot choose the steering program";
        return "";
      },
      errno_hint, &err);
  libbpf_capture = nullptr;
  if (!obj) {
    std::string s = libbpf_summary(said);
    return s.empty() ? err : err + " [libbpf: " + s + "]";
  }
  obj_ = obj;
  auth_prog_ = auth;
  prog_fd_ = bpf_program__fd(auth ? strict : plain);
  if (!find_map_fds(obj, {{"socks", &socks_fd_},
                          {"dsts", &dsts_fd_},
                          {"keys", &keys_fd_},
                          {"stats", &stats_fd_},
                          {"auth", &auth_fd_},
                          {"seen", &seen_fd_}}) ||
      prog_fd_ < 0) {
    close_all();
    return "the embedded steering object lacks its program or a map";
  }
  used_.assign(SF_STEER_MAX_SLOTS, false);
  return "";
}

std::string Steering::attach(int reserved_fd) {
  if (!obj_) return "steering is not open";
  int on = 0;
  socklen_t len = sizeof on;
  if (getsockopt(reserved_fd, SOL_SOCKET, SO_REUSEPORT, &on, &len) < 0)
    return std::string("reserved listener: ") + strerror(errno);
  if (!on) return "the reserved listener has no SO_REUSEPORT";
  if (setsockopt(reserved_fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &prog_fd_, sizeof prog_fd_) < 0)
    return std::string("SO_ATTACH_REUSEPORT_EBPF: ") + strerror(errno);
  uint32_t slot = 0;
  uint64_t fd = uint64_t(reserved_fd);
  if (bpf_map_update_elem(socks_fd_, &slot, &fd, BPF_ANY) < 0)
    return std::string("reserved listener into slot 0: ") + strerror(errno);
  used_[0] = true;
  return "";
}

int Steering::add(uint32_t vip_be, uint16_t port_be, int listen_fd) {
  if (!obj_) {
    errno = ENODEV;
    return -1;
  }
  uint32_t slot = 1;
  while (slot < used_.size() && used_[slot]) slot++;  // lowest free (at most 4096 steps, rare call)
  if (slot >= used_.size()) {
    errno = ENOSPC;
    return -1;
  }
  // The kernel checks the socket: TCP/UDP, hashed (listening), SO_REUSEPORT. It does not check the
  // group; a socket of another group simply never selects (counted as "closed").
  uint64_t fd = uint64_t(listen_fd);
  if (bpf_map_update_elem(socks_fd_, &slot, &fd, BPF_ANY) < 0) return -1;
  sf_steer_dst d{vip_be, port_be, 0};
  if (bpf_map_update_elem(dsts_fd_, &d, &slot, BPF_ANY) < 0) {
    int e = errno;
    bpf_map_delete_elem(socks_fd_, &slot);
    errno = e;
    return -1;
  }
  used_[slot] = true;
  return int(slot);
}

void Steering::remove(uint32_t vip_be, uint16_t port_be, int slot) {
  if (!obj_ || slot < 1 || size_t(slot) >= used_.size()) return;
  sf_steer_dst d{vip_be, port_be, 0};
  uint32_t cur;
  if (bpf_map_lookup_elem(dsts_fd_, &d, &cur) == 0 && cur == uint32_t(slot)) bpf_map_delete_elem(dsts_fd_, &d);
  uint32_t k = uint32_t(slot);
  bpf_map_delete_elem(socks_fd_, &k);  // ENOENT when the kernel emptied it already
  used_[slot] = false;
}

bool Steering::slot_open(int slot) const {
  if (!obj_ || slot < 0 || slot >= SF_STEER_MAX_SLOTS) return false;
  uint32_t k = uint32_t(slot);
  uint64_t cookie;  // a user-space lookup returns the socket's cookie, ENOENT for an empty slot
  return bpf_map_lookup_elem(socks_fd_, &k, &cookie) == 0;
}

static bool net_key(uint32_t net_be, int prefix, sf_steer_net* k) {
  if (prefix < 0 || prefix > 32) return false;
  uint32_t mask = prefix ? 0xffffffffu << (32 - prefix) : 0;
  k->prefixlen = uint32_t(prefix);
  k->addr = htonl(ntohl(net_be) & mask);
  return true;
}

bool Steering::set_key(uint32_t net_be, int prefix, const uint8_t cur[16], const uint8_t* prev16_or_null,
                       uint32_t host_be) {
  sf_steer_net k;
  if (!obj_ || !net_key(net_be, prefix, &k)) return false;
  sf_steer_key v{};
  memcpy(v.cur, cur, 16);
  v.host = host_be;
  if (prev16_or_null) {
    memcpy(v.prev, prev16_or_null, 16);
    v.has_prev = 1;
  }
  return bpf_map_update_elem(keys_fd_, &k, &v, BPF_ANY) == 0;
}

void Steering::drop_key(uint32_t net_be, int prefix) {
  sf_steer_net k;
  if (obj_ && net_key(net_be, prefix, &k)) bpf_map_delete_elem(keys_fd_, &k);
}

int64_t tai_offset_ns() {
  timespec tai, real;
  clock_gettime(CLOCK_TAI, &tai);
  clock_gettime(CLOCK_REALTIME, &real);
  int64_t d = (int64_t(tai.tv_sec) - real.tv_sec) * 1000000000ll + (tai.tv_nsec - real.tv_nsec);
  // The kernel's TAI offset is whole seconds: rounding removes the time between the two reads.
  return (d >= 0 ? (d + 500000000ll) : (d - 500000000ll)) / 1000000000ll * 1000000000ll;
}

static bool write_auth(int fd, uint64_t window_ns, uint64_t future_ns, int64_t offset) {
  uint32_t zero = 0;
  sf_steer_auth a{};
  a.on = 1;
  a.tai_offset_ns = offset;
  a.window_ns = window_ns;
  a.future_ns = future_ns;
  return bpf_map_update_elem(fd, &zero, &a, BPF_ANY) == 0;
}

std::string Steering::set_auth(uint64_t window_ns, uint64_t future_ns) {
  if (!obj_ || !auth_prog_) return "the steering program without sender checks is loaded";
  int64_t off = tai_offset_ns();
  if (!write_auth(auth_fd_, window_ns, future_ns, off)) return std::string("auth map: ") + strerror(errno);
  window_ns_ = window_ns;
  future_ns_ = future_ns;
  tai_offset_ns_ = off;
  auth_on_ = true;
  return "";
}

bool Steering::refresh_clock() {
  if (!auth_on_) return true;
  int64_t off = tai_offset_ns();
  if (off == tai_offset_ns_) return true;
  if (!write_auth(auth_fd_, window_ns_, future_ns_, off)) return false;
  tai_offset_ns_ = off;
  return true;
}

int Steering::remember(uint32_t host_be, uint64_t nonce_wire) {
  if (!auth_on_) return ENODEV;
  sf_steer_seen k{};
  k.host = host_be;
  k.nonce = nonce_wire;
  uint32_t one = 1;
  return bpf_map_update_elem(seen_fd_, &k, &one, BPF_NOEXIST) == 0 ? 0 : errno;
}

SteerStats Steering::stats() const {
  uint64_t sum[SF_ST_COUNT] = {};
  int ncpu = obj_ ? libbpf_num_possible_cpus() : 0;
  if (ncpu > 0) {
    std::vector<uint64_t> per(static_cast<size_t>(ncpu));  // a per-CPU lookup fills one 8-byte value per CPU
    for (uint32_t i = 0; i < SF_ST_COUNT; i++)
      if (bpf_map_lookup_elem(stats_fd_, &i, per.data()) == 0)
        for (uint64_t v : per) sum[i] += v;
  }
  SteerStats s;
  memcpy(&s, sum, sizeof s);
  return s;
}

int steer_listen_socket(uint32_t ip_host_order, uint16_t port_host_order, int backlog, bool nonblock) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) return -1;
  int one = 1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port_host_order);
  a.sin_addr.s_addr = htonl(ip_host_order);
  // TCP_FASTOPEN's value is the queue of TFO children whose handshake is not complete yet;
  // NO_COOKIE makes the listener take SYN data from any client (the header is its own proof).
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
      bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN, &backlog, sizeof backlog) < 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN_NO_COOKIE, &one, sizeof one) < 0 || listen(fd, backlog) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

static const char kTfoSysctl[] = "/proc/sys/net/ipv4/tcp_fastopen";  // per netns (the caller's)

static int read_tfo() {
  int fd = ::open(kTfoSysctl, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char b[32];
  ssize_t n = read(fd, b, sizeof b - 1);
  close(fd);
  if (n <= 0) return -1;
  b[n] = 0;
  return int(strtol(b, nullptr, 0));
}

bool server_tfo_enabled() {
  int v = read_tfo();
  return v >= 0 && (v & 0x2);
}

std::string enable_server_tfo() {
  int v = read_tfo();
  if (v < 0) return std::string("cannot read ") + kTfoSysctl + ": " + strerror(errno);
  if (v & 0x2) return "";
  int fd = ::open(kTfoSysctl, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return std::string("cannot open ") + kTfoSysctl + ": " + strerror(errno);
  std::string s = std::to_string(v | 0x2) + "\n";
  ssize_t n = write(fd, s.data(), s.size());
  int e = errno;
  close(fd);
  if (n != ssize_t(s.size())) return std::string("cannot write ") + kTfoSysctl + ": " + strerror(e);
  return "";
}

}  // namespace sf
