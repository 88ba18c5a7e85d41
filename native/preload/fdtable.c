/* The fd table: a sparse two-level array indexed by fd number (fds up to 2^24).
 *
 * top[fd >> 10] points to a page of 1024 slots, allocated with mmap on first use and never freed.
 * A slot holds a pointer to an entry (NULL = untracked) and a spinlock. Lookups of untracked fds
 * (the common case: every close(), epoll_ctl() of a file, ...) are lock-free: two atomic loads.
 * Everything else takes the slot's own spinlock; the critical sections only copy a few hundred
 * bytes (no syscalls besides an occasional mmap) and never nest.
 *
 * Signal safety without a sigprocmask pair per operation: a thread-local flag marks "this thread is
 * inside (or waiting for) a table critical section". A signal handler that runs on that thread and
 * calls back into the library (close() from a handler, say) sees the flag and treats the fd as
 * untracked instead of waiting for a lock its own thread holds. The worst outcome is a stale entry,
 * which every user of an entry detects (st_ino check) and drops. Handlers on other threads just
 * wait for the (tiny) critical section to end. Entries come from a free list of fixed-size blocks
 * (no malloc: close() may run in a handler).
 */
#include "sf.h"

#include <sched.h>
#include <string.h>
#include <sys/mman.h>

#define PAGE_BITS 10
#define PAGE_SZ (1 << PAGE_BITS)
#define TOP_SZ (SF_TAB_MAXFD >> PAGE_BITS)

struct slot {
  struct sf_entry *e;
  int lock;
  int pad;
};
struct page {
  struct slot s[PAGE_SZ];
};

static struct page *top[TOP_SZ];

static int alloc_lock;
static struct sf_entry *free_list; /* linked through the first pointer-sized bytes */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static void spin_lock(int *l) {
  for (int i = 0;; i++) {
    if (!__atomic_load_n(l, __ATOMIC_RELAXED) && !__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
      return;
    if (i < 100)
      cpu_relax();
    else
      sched_yield();
  }
}
static void spin_unlock(int *l) { __atomic_store_n(l, 0, __ATOMIC_RELEASE); }

static struct slot *slot_of(int fd, int create) {
  if (fd < 0 || fd >= SF_TAB_MAXFD) return NULL;
  struct page **pp = &top[fd >> PAGE_BITS];
  struct page *p = __atomic_load_n(pp, __ATOMIC_ACQUIRE);
  if (!p) {
    if (!create) return NULL;
    void *m = mmap(NULL, sizeof(struct page), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (m == MAP_FAILED) return NULL;
    struct page *expected = NULL;
    if (__atomic_compare_exchange_n(pp, &expected, (struct page *)m, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
      p = m;
    } else {
      munmap(m, sizeof(struct page));
      p = expected;
    }
  }
  return &p->s[fd & (PAGE_SZ - 1)];
}

static __thread int in_cs __attribute__((tls_model("initial-exec")));

/* 0 when this thread is already inside a critical section (we are in a signal handler that
   interrupted it): the caller must then act as if the fd were untracked. */
static int lock_slot(struct slot *s) {
  if (in_cs) return 0;
  in_cs = 1;
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  spin_lock(&s->lock);
  return 1;
}
static void unlock_slot(struct slot *s) {
  spin_unlock(&s->lock);
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  in_cs = 0;
}

/* Called inside a slot critical section. */
static struct sf_entry *entry_alloc(void) {
  spin_lock(&alloc_lock);
  if (!free_list) {
    size_t chunk = 64 * 1024;
    void *m = mmap(NULL, chunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
      spin_unlock(&alloc_lock);
      return NULL;
    }
    size_t n = chunk / sizeof(struct sf_entry);
    for (size_t i = 0; i < n; i++) {
      struct sf_entry *e = (struct sf_entry *)((char *)m + i * sizeof(struct sf_entry));
      *(struct sf_entry **)e = free_list;
      free_list = e;
    }
  }
  struct sf_entry *e = free_list;
  free_list = *(struct sf_entry **)e;
  spin_unlock(&alloc_lock);
  return e;
}
static void entry_free(struct sf_entry *e) {
  spin_lock(&alloc_lock);
  *(struct sf_entry **)e = free_list;
  free_list = e;
  spin_unlock(&alloc_lock);
}

int sf_tab_has(int fd) {
  struct slot *s = slot_of(fd, 0);
  return s && __atomic_load_n(&s->e, __ATOMIC_ACQUIRE) != NULL;
}

int sf_tab_get(int fd, struct sf_entry *out) {
  struct slot *s = slot_of(fd, 0);
  if (!s || !__atomic_load_n(&s->e, __ATOMIC_ACQUIRE)) return 0;
  if (!lock_slot(s)) return 0;
  int found = s->e != NULL;
  if (found) *out = *s->e;
  unlock_slot(s);
  return found;
}

int sf_tab_set(int fd, const struct sf_entry *in, struct sf_entry *old) {
  struct slot *s = slot_of(fd, 1);
  if (!s) return -1;
  if (!lock_slot(s)) return -1;
  int had = 0;
  if (s->e) {
    had = 1;
    if (old) *old = *s->e;
    *s->e = *in;
  } else {
    struct sf_entry *e = entry_alloc();
    if (!e) {
      unlock_slot(s);
      return -1;
    }
    *e = *in;
    __atomic_store_n(&s->e, e, __ATOMIC_RELEASE);
  }
  unlock_slot(s);
  return had;
}

int sf_tab_del(int fd, struct sf_entry *old) {
  struct slot *s = slot_of(fd, 0);
  if (!s || !__atomic_load_n(&s->e, __ATOMIC_ACQUIRE)) return 0;
  if (!lock_slot(s)) return 0;
  int r = 0;
  struct sf_entry *e = s->e;
  if (e) {
    if (old) *old = *e;
    if (e->kind == SF_K_INTERNAL) {
      r = 2;
    } else {
      __atomic_store_n(&s->e, NULL, __ATOMIC_RELEASE);
      entry_free(e);
      r = 1;
    }
  }
  unlock_slot(s);
  return r;
}

int sf_tab_update(int fd, sf_upd_fn fn, void *arg) {
  struct slot *s = slot_of(fd, 1);
  if (!s) return -1;
  if (!lock_slot(s)) return -1;
  struct sf_entry scratch;
  struct sf_entry *e = s->e;
  int present = e != NULL;
  if (!present) {
    memset(&scratch, 0, sizeof scratch);
    scratch.hidden_fd = -1;
    e = &scratch;
  }
  int r = fn(e, present, arg);
  if (r == SF_UPD_STORE && !present) {
    struct sf_entry *n = entry_alloc();
    if (n) {
      *n = scratch;
      __atomic_store_n(&s->e, n, __ATOMIC_RELEASE);
    } else {
      r = -1;
    }
  } else if (r == SF_UPD_DELETE && present) {
    __atomic_store_n(&s->e, NULL, __ATOMIC_RELEASE);
    entry_free(e);
  }
  unlock_slot(s);
  return r;
}

void sf_tab_scan(unsigned lo, unsigned hi, int (*cb)(int, const struct sf_entry *, void *),
                 void *arg) {
  if (lo >= (unsigned)SF_TAB_MAXFD) return;
  if (hi >= (unsigned)SF_TAB_MAXFD) hi = SF_TAB_MAXFD - 1;
  for (unsigned pi = lo >> PAGE_BITS; pi <= (hi >> PAGE_BITS); pi++) {
    struct page *p = __atomic_load_n(&top[pi], __ATOMIC_ACQUIRE);
    if (!p) continue;
    unsigned first = pi << PAGE_BITS, last = first + PAGE_SZ - 1;
    if (first < lo) first = lo;
    if (last > hi) last = hi;
    for (unsigned fd = first; fd <= last; fd++) {
      struct slot *s = &p->s[fd & (PAGE_SZ - 1)];
      if (!__atomic_load_n(&s->e, __ATOMIC_ACQUIRE)) continue;
      if (!lock_slot(s)) return;
      struct sf_entry *e = s->e;
      if (e && cb((int)fd, e, arg)) {
        __atomic_store_n(&s->e, NULL, __ATOMIC_RELEASE);
        entry_free(e);
      }
      unlock_slot(s);
    }
  }
}

/* In a forked child only the forking thread exists: any lock another thread held is stale. */
void sf_tab_atfork_child(void) {
  alloc_lock = 0;
  in_cs = 0;
  for (unsigned pi = 0; pi < TOP_SZ; pi++) {
    struct page *p = top[pi];
    if (!p) continue;
    for (unsigned i = 0; i < PAGE_SZ; i++) p->s[i].lock = 0;
  }
}

void sf_tab_drop(int fd) {
  struct slot *s = slot_of(fd, 0);
  if (!s || !__atomic_load_n(&s->e, __ATOMIC_ACQUIRE)) return;
  if (!lock_slot(s)) return;
  struct sf_entry *e = s->e;
  if (e) {
    __atomic_store_n(&s->e, NULL, __ATOMIC_RELEASE);
    entry_free(e);
  }
  unlock_slot(s);
}

void sf_tab_mark_internal(int fd, int owner) {
  struct sf_entry e;
  memset(&e, 0, sizeof e);
  e.kind = SF_K_INTERNAL;
  e.hidden_fd = owner;
  sf_tab_set(fd, &e, NULL);
}
