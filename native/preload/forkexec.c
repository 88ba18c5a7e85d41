/* The constructor, fork handling (atfork handlers; vfork as fork) and, at load, the scan for
 * listener channels inherited across exec (adopt.c). Nothing in the library calls into this file. */
#include "sf.h"

#include <pthread.h>
#include <unistd.h>

/* A vfork() child shares our memory: any socket call it made would edit the parent's table. Under
   the preload it is an ordinary fork(), which POSIX allows (posix_spawn, system and popen use
   libc's internal clone and never come here). */
SF_EXPORT pid_t vfork(void) { return fork(); }

/* fork() in a multithreaded program: the child has only the forking thread, so a lock another
   thread held would stay held forever and a table half-way through an update would stay so.
   prepare takes every lock in lock order (broker mutex, pool mutex, fd-table page lock, every
   slot, the entry allocator: the order every code path takes them in), so the child's copy is
   consistent; the parent releases them and the child resets them. A fork() from a signal handler
   that interrupted one of those sections skips what its own thread holds (it cannot wait for
   itself); the child's resets cover that case too. */
static void atfork_prepare(void) {
  sf_broker_atfork_prepare();
  sf_pool_atfork_prepare();
  sf_tab_atfork_prepare();
}

static void atfork_parent(void) {
  sf_tab_atfork_parent();
  sf_pool_atfork_parent();
  sf_broker_atfork_parent();
}

static void atfork_child(void) {
  sf_pid_reset();
  sf_tab_atfork_child(); /* first: the broker reset below drops table entries */
  sf_broker_atfork_child();
  sf_watch_atfork_child();
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void init_once(void) {
  int saved = errno;
  sf_real_init();
  sf_conf_init();
  sf_pid_reset();
  if (sf_conf.enabled) {
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    sf_scan_inherited();
    SF_DEBUG("loaded, broker socket %s", sf_conf.sock_path);
  }
  errno = saved;
}

void sf_init(void) { pthread_once(&once, init_once); }

__attribute__((constructor)) static void sf_constructor(void) { sf_init(); }
