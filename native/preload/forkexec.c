/* Initialisation, fork handling, and adoption of listener channels inherited across exec. */
#include "sf.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static pid_t owner_pid;

/* The pid changes only in a child, and every child made through libc's fork() runs atfork_child
   before it returns to the program; vfork() is fork() here (below). So the cached pid is right
   wherever the table is used, without a getpid() per call. */
pid_t sf_pid(void) {
  pid_t p = __atomic_load_n(&owner_pid, __ATOMIC_RELAXED);
  return p ? p : getpid();
}

int sf_table_owner(void) { return __atomic_load_n(&owner_pid, __ATOMIC_RELAXED) != 0; }

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
  __atomic_store_n(&owner_pid, getpid(), __ATOMIC_RELAXED);
  sf_tab_atfork_child(); /* first: the broker reset below drops table entries */
  sf_broker_atfork_child();
  sf_watch_atfork_child();
}

static void mark_candidate(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return;
  int dom = 0, type = 0;
  socklen_t l1 = sizeof dom, l2 = sizeof type;
  if (REAL(getsockopt)(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l1) != 0 ||
      REAL(getsockopt)(fd, SOL_SOCKET, SO_TYPE, &type, &l2) != 0)
    return;
  int listening = 0;
  socklen_t l3 = sizeof listening;
  /* a listener channel, or a TCP listener that may be a steered one */
  if (!(dom == AF_UNIX && type == SOCK_SEQPACKET) &&
      !(dom == AF_INET && type == SOCK_STREAM &&
        REAL(getsockopt)(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l3) == 0 && listening))
    return;
  struct sf_entry e;
  memset(&e, 0, sizeof e);
  e.kind = SF_K_CAND;
  e.hidden_fd = -1;
  e.ino = (uint64_t)st.st_ino;
  sf_tab_set(fd, &e, NULL);
  SF_DEBUG("fd %d: inherited %s, may be SlimFast's", fd, dom == AF_UNIX ? "unix seqpacket socket" : "TCP listener");
}

/* A new image starts with an empty table. Inherited AF_UNIX/SEQPACKET fds may be listener
   channels; remember which, and ask the broker about one only when the app uses it. */
static void scan_inherited(void) {
  int dfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    for (int fd = 0; fd < 1024; fd++) mark_candidate(fd);
    return;
  }
  char buf[4096];
  for (;;) {
    long n = syscall(SYS_getdents64, dfd, buf, sizeof buf);
    if (n <= 0) break;
    for (long off = 0; off < n;) {
      struct dirent64 *d = (struct dirent64 *)(buf + off);
      off += d->d_reclen;
      if (d->d_name[0] < '0' || d->d_name[0] > '9') continue;
      int fd = 0;
      for (const char *p = d->d_name; *p >= '0' && *p <= '9'; p++) fd = fd * 10 + (*p - '0');
      if (fd != dfd) mark_candidate(fd);
    }
  }
  REAL(close)(dfd);
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void init_once(void) {
  int saved = errno;
  sf_real_init();
  sf_conf_init();
  owner_pid = getpid();
  if (sf_conf.enabled) {
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    scan_inherited();
    SF_DEBUG("loaded, broker socket %s", sf_conf.sock_path);
  }
  errno = saved;
}

void sf_init(void) { pthread_once(&once, init_once); }

__attribute__((constructor)) static void sf_constructor(void) { sf_init(); }

int sf_adopt(int fd) {
  int saved = errno;
  struct sf_entry e;
  if (!sf_tab_get(fd, &e)) return SF_K_NONE;
  if (e.kind != SF_K_CAND) return e.kind;
  if (sf_fd_ino(fd) != e.ino) {
    sf_tab_del(fd, NULL);
    errno = saved;
    return SF_K_NONE;
  }
  struct sf_msg req, rep;
  memset(&req, 0, sizeof req);
  req.type = SF_QUERY_CHANNEL;
  req.a = e.ino;
  int rfd;
  if (sf_broker_call(&req, -1, &rep, &rfd) != 0) {
    errno = saved;
    return SF_K_CAND; /* unknown: ask again later */
  }
  e.hidden_fd = -1;
  if (rep.type == SF_CHANNEL_INFO && rep.status == 0 && (rep.a & SF_LISTEN_STEERED) && rfd >= 0) {
    /* a steered host listener; the broker attached a channel for what it still hands over */
    e.kind = SF_K_STEER;
    e.hidden_fd = sf_hidden_dup(rfd, fd);
    e.l_ip = rep.vip_a;
    e.l_port = rep.port_a;
    SF_DEBUG("fd %d: adopted as a steered listener", fd);
  } else if (rep.type == SF_CHANNEL_INFO && rep.status == 0 && !(rep.a & SF_LISTEN_STEERED)) {
    e.kind = SF_K_CHAN;
    e.l_ip = rep.vip_a;
    e.l_port = rep.port_a;
    SF_DEBUG("fd %d: adopted as a listener channel", fd);
  } else {
    e.kind = SF_K_NOTCHAN;
  }
  if (rfd >= 0) REAL(close)(rfd);
  sf_tab_set(fd, &e, NULL);
  errno = saved;
  return e.kind;
}
