/* What native/bpf/guard.bpf.c and the broker (native/addon/guard.cc, connect.cc) agree on. */
#ifndef SLIMFAST_GUARD_SHARED_H
#define SLIMFAST_GUARD_SHARED_H

/* A socket's value in the `guarded` map. */
#define SF_GUARD_CONFINED 1u /* handed out (or about to be): no connect, bind, reuseport change */
#define SF_GUARD_ARMED 2u    /* the broker's own bind and first connect still to come; then CONFINED */

/* setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &SF_GUARD_ARM, 4) arms a socket that has no
 * mark yet, with no syscall of its own (the broker sets that option on every peer socket anyway;
 * any non-zero value means "on" to the kernel). Anyone may arm a socket of its own: that only
 * confines it. A marked socket is never armed again. */
#define SF_GUARD_ARM 0x53464152u /* "SFAR" */

/* The programs, in the order of their links (Guard::fds(), SFK_GUARD). */
#define SF_GUARD_PROGRAMS \
  { "sf_guard", "sf_connect4", "sf_connect6", "sf_bind4", "sf_bind6" }

#endif
