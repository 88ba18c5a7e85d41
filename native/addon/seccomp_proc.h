// The seccomp agent's view of a calling process (no agent or engine state): what it reads in
// /proc/PID (status, fdinfo, maps), the sockaddr the program's socket would report, and the notify
// fd's ioctls that act on the caller (ID_VALID, ADDFD). The caller's memory itself is read and
// written through /proc/PID/mem by the handlers, after ID_VALID.
#pragma once
#include <sys/socket.h>

#include <cstdint>

namespace sf {

// The thread group a thread id belongs to (notifications name the calling thread); -1: gone.
int tgid_of(int tid);
// FD_CLOEXEC of the target's fd, from /proc/PID/fdinfo/FD ("flags:" in octal, O_CLOEXEC set).
bool target_cloexec(int pid, int fd);
// Whether the process has the preload mapped (libslimfast*.so): its listen() is the preload's
// business (SF_LISTEN), not the agent's.
bool has_preload(int pid);
// The address as the kernel would write it for the program's socket: sockaddr_in, or for an
// AF_INET6 (dual-stack) one sockaddr_in6 with ::ffff:a.b.c.d (:: for the any address).
socklen_t program_sockaddr(bool v6, uint32_t ip, uint16_t port, sockaddr_storage* out);
// SECCOMP_IOCTL_NOTIF_ID_VALID: notification id is still pending, so its pid still names the caller.
bool id_valid(int nfd, uint64_t id);
// SECCOMP_IOCTL_NOTIF_ADDFD (EINTR retried): src installed in the caller of notification id,
// with SECCOMP_ADDFD_FLAG_SETFD as its fd newfd, with SECCOMP_ADDFD_FLAG_SEND as the call's return
// value (answering it). The fd number in the caller, or -1 and errno (ENOENT: the caller is gone).
int notif_addfd(int nfd, uint64_t id, uint32_t flags, int src, int newfd, bool cloexec);

}  // namespace sf
