// Notifications in, answers out: receiving from a notify fd (SECCOMP_IOCTL_NOTIF_RECV), the
// in-flight slot with the keeper around each one, one handler per system call, and the answer
// (SECCOMP_IOCTL_NOTIF_SEND). getsockname/getpeername are answered here: they only read what the
// other handlers recorded (ScTarget::swapped).
#include <fcntl.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "seccomp_agent.h"
#include "seccomp_proc.h"
#include "util.h"

namespace sf {

void SeccompAgent::on_sc_notify(ScTarget* t, uint32_t events) {
  if (events & EPOLLIN) {
    // RECV blocks when nothing is pending, so receive only while poll says something is.
    for (int i = 0; i < 64 && !t->dead; i++) {
      pollfd p{t->ev.fd, POLLIN, 0};
      if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN)) break;
      alignas(8) char buf[512];
      if (sc_notif_size > sizeof buf) break;  // a kernel far newer than this file: never reached
      memset(buf, 0, sc_notif_size);
      if (ioctl(t->ev.fd, SECCOMP_IOCTL_NOTIF_RECV, buf) < 0) {
        if (errno == EINTR || errno == ENOENT) continue;  // ENOENT: the caller was killed meanwhile
        if (ratelimit(11)) logf(LOG_WARN, "seccomp: receive for %s: %s", t->id.c_str(), strerror(errno));
        break;
      }
      sc_handle(t, buf);
    }
  }
  if (!t->dead && (events & (EPOLLHUP | EPOLLERR)) && !(events & EPOLLIN)) {
    // Every process using the filter has exited.
    while (!t->outs.empty()) sc_drop_out(t->outs.back());
    while (!t->accepts.empty()) sc_drop_accept(t->accepts.back());
    kill_sc_target(t);
  }
}

void SeccompAgent::sc_handle(ScTarget* t, const void* notif) {
  sc_cur_slot = sc_claim_slot(t, notif);
  sc_notification(t, notif);
  if (sc_cur_slot >= 0) sc_release_slot(sc_cur_slot);  // answered (or the caller is gone)
  sc_cur_slot = -1;
}

// Every notification gets exactly one answer, from its handler (or none when the caller is gone).
void SeccompAgent::sc_notification(ScTarget* t, const void* raw) {
  const seccomp_notif* n = static_cast<const seccomp_notif*>(raw);
  switch (n->data.nr) {
    case __NR_connect:
      return sc_connect_call(t, raw);
    case __NR_getsockname:
      return sc_sockname(t, raw, false);
    case __NR_getpeername:
      return sc_sockname(t, raw, true);
    case __NR_listen:
      return sc_listen_call(t, raw);
    case __NR_accept:
    case __NR_accept4:
      return sc_accept_call(t, raw);
    default:
      sc_respond(t, n->id, 0, true);
  }
}

bool SeccompAgent::sc_respond(ScTarget* t, uint64_t id, int error, bool cont) {
  alignas(8) char buf[256] = {};
  seccomp_notif_resp* r = reinterpret_cast<seccomp_notif_resp*>(buf);
  r->id = id;
  r->val = 0;
  r->error = cont ? 0 : -error;
  r->flags = cont ? SECCOMP_USER_NOTIF_FLAG_CONTINUE : 0;
  if (cont) inc(ctr.seccomp_continued);
  for (;;) {
    if (ioctl(t->ev.fd, SECCOMP_IOCTL_NOTIF_SEND, r) == 0) return true;
    if (errno == EINTR) continue;
    // ENOENT: the target is gone (killed), nothing to answer.
    if (errno != ENOENT && ratelimit(11)) logf(LOG_WARN, "seccomp: answer for %s: %s", t->id.c_str(), strerror(errno));
    return false;
  }
}

// getsockname/getpeername on a socket the agent swapped: the virtual address, written into the
// target's memory as the kernel would (truncated to its buffer, the full length reported).
// Every other socket: CONTINUE.
void SeccompAgent::sc_sockname(ScTarget* t, const void* raw, bool peer) {
  const seccomp_notif* n = static_cast<const seccomp_notif*>(raw);
  const uint64_t id = n->id;
  auto cont = [&] { sc_respond(t, id, 0, true); };
  if (t->swapped.empty()) return cont();
  int pid = int(n->pid);
  uint32_t tfd = uint32_t(n->data.args[0]);
  uint64_t addr = n->data.args[1], lenp = n->data.args[2];
  auto it = t->swapped.find((uint64_t(uint32_t(pid)) << 32) | tfd);
  if (it == t->swapped.end()) {  // a thread: the table is its thread group's
    int tg = tgid_of(pid);
    if (tg <= 0 || tg == pid) return cont();
    it = t->swapped.find((uint64_t(uint32_t(tg)) << 32) | tfd);
    if (it == t->swapped.end()) return cont();
  }
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fd/%u", pid, tfd);
  struct stat st;
  if (stat(path, &st) != 0 || uint64_t(st.st_ino) != it->second.ino) {
    if (errno != EACCES) t->swapped.erase(it);  // closed or replaced since
    return cont();
  }
  if (peer && it->second.listener) {  // a listening socket has no peer
    if (id_valid(t->ev.fd, id)) sc_respond(t, id, ENOTCONN, false);
    return;
  }
  snprintf(path, sizeof path, "/proc/%d/mem", pid);
  int mfd = open(path, O_RDWR | O_CLOEXEC);
  if (mfd < 0) return cont();
  bool valid = id_valid(t->ev.fd, id);
  socklen_t len = 0;
  int err = 0;
  if (valid && (!lenp || pread(mfd, &len, sizeof len, off_t(lenp)) != ssize_t(sizeof len))) err = EFAULT;
  if (valid && !err && int(len) < 0) err = EINVAL;
  if (valid && !err) {
    sockaddr_storage sa;
    socklen_t full = program_sockaddr(it->second.v6, peer ? it->second.rip : it->second.lip,
                                      peer ? it->second.rport : it->second.lport, &sa);
    size_t k = std::min<size_t>(len, full);
    if ((k && (!addr || pwrite(mfd, &sa, k, off_t(addr)) != ssize_t(k))) ||
        pwrite(mfd, &full, sizeof full, off_t(lenp)) != ssize_t(sizeof full))
      err = EFAULT;
  }
  close_fd(mfd);
  if (!valid) return;  // the caller is gone
  sc_respond(t, id, err, false);
}

}  // namespace sf
