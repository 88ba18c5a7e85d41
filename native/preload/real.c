/* Pointers to the next definition (libc's) of every function we interpose. Resolved once, in the
 * constructor or on first use when another library's constructor calls us earlier. */
#include "sf.h"

#include <dlfcn.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

struct sf_real sf_real;
int sf_real_ready;

static int fallback_close_range(unsigned lo, unsigned hi, int flags) {
#ifdef SYS_close_range
  return (int)syscall(SYS_close_range, lo, hi, flags);
#else
  (void)lo, (void)hi, (void)flags;
  errno = ENOSYS;
  return -1;
#endif
}

#define LOAD(name)                                                  \
  do {                                                              \
    void *p_ = dlsym(RTLD_NEXT, #name);                             \
    __atomic_store_n((void **)&sf_real.name, p_, __ATOMIC_RELAXED); \
  } while (0)

void sf_real_init(void) {
  if (__atomic_load_n(&sf_real_ready, __ATOMIC_ACQUIRE)) return;
  int saved = errno;
  LOAD(socket);
  LOAD(bind);
  LOAD(listen);
  LOAD(accept);
  LOAD(accept4);
  LOAD(connect);
  LOAD(getsockname);
  LOAD(getpeername);
  LOAD(setsockopt);
  LOAD(getsockopt);
  LOAD(shutdown);
  LOAD(dup);
  LOAD(dup2);
  LOAD(dup3);
  LOAD(fcntl);
  LOAD(fcntl64);
  LOAD(close);
  LOAD(close_range);
  LOAD(closefrom);
  LOAD(epoll_create);
  LOAD(epoll_create1);
  LOAD(epoll_ctl);
  LOAD(ioctl);
  LOAD(fclose);
  if (!sf_real.fcntl64) sf_real.fcntl64 = sf_real.fcntl;
  if (!sf_real.close_range) sf_real.close_range = fallback_close_range;
  __atomic_store_n(&sf_real_ready, 1, __ATOMIC_RELEASE);
  errno = saved;
}
