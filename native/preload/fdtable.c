/* The fd table: a sparse two-level array indexed by fd number (fds up to 2^24).
 *
 * top[fd >> 10] points to a page of 1024 slots, allocated with mmap on first use and never freed.
 * A slot holds a pointer to an entry (NULL = untracked) and a spinlock. Lookups of untracked fds
 * (the common case: every close(), epoll_ctl() of a file, ...) are lock-free: two atomic loads.
 * Everything else takes the slot's own spinlock; the critical sections only copy a few hundred
 * bytes (no syscalls besides an occasional mmap) and never nest.
 *
 * Signal safety without a sigprocmask pair per operation. A signal handler that calls back into the
 * library (close() or accept() in a handler) may interrupt its own thread inside the table, and
 * must never wait for it. So a slot lock holds its owner's token (a per-thread address), each
 * thread keeps a small stack of the slots its frames hold or wait for, and flags for the allocator
 * and the page lock. A critical section that starts while its thread is already inside the table
 * (a nested one: we are in a handler):
 *   - on a slot its own thread holds: reads it without the lock when both the interrupted frame
 *     and it only read (the entry cannot change under either); otherwise treats the fd as untracked;
 *   - on another slot: waits for it, boundedly (NESTED_WAIT_NS). Its holder never waits for us,
 *     but its own handler might (two threads' handlers each wanting the slot the other thread's
 *     interrupted frame holds), so a nested wait gives up rather than risk that cycle;
 *   - inside the allocator: gets no new entry (the fd stays untracked); entries it frees go on a
 *     per-thread list that the interrupted frame hands back when it leaves the allocator;
 *   - inside page creation or the atfork prepare handler: treats the fd as untracked.
 * Treating a tracked fd as untracked is the worst outcome; it leaves at most a stale entry, which
 * every user of an entry detects (st_ino check) and drops. A handler on a thread that is not in the
 * table just waits for the (tiny) critical section to end. Entries come from a free list of
 * fixed-size blocks (no malloc: close() may run in a handler).
 *
 * fork(): the prepare handler stops page creation and takes every slot lock and the allocator's,
 * so the child gets whole entries; the child resets the locks (their holders are gone).
 */
#include "sf.h"

#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define PAGE_BITS 10
#define PAGE_SZ (1 << PAGE_BITS)
#define TOP_SZ (SF_TAB_MAXFD >> PAGE_BITS)

struct slot {
  struct sf_entry *e;
  uintptr_t owner; /* the lock: 0 = free, else the holding thread's token */
};
struct page {
  struct slot s[PAGE_SZ];
};

static struct page *top[TOP_SZ];

/* This thread's critical sections, outermost first (a handler's nest inside the interrupted
   frame's); in_alloc: inside the entry allocator; in_excl: holding page_lock (page creation, or
   the atfork prepare handler, which also holds every slot). */
#define HELD_MAX 4
#define NESTED_WAIT_NS 2000000 /* how long a nested critical section waits for another slot */
struct held {
  struct slot *s;
  int write;
};
static __thread struct held held[HELD_MAX] __attribute__((tls_model("initial-exec")));
static __thread int nheld __attribute__((tls_model("initial-exec")));
static __thread int in_alloc __attribute__((tls_model("initial-exec")));
static __thread int in_excl __attribute__((tls_model("initial-exec")));
/* Entries freed by a handler while this thread was inside the allocator. */
static __thread struct sf_entry *deferred __attribute__((tls_model("initial-exec")));

/* The token a thread's slot locks carry: unique among live threads, never 0. */
static inline uintptr_t self_token(void) { return (uintptr_t)&nheld; }

int sf_tab_busy(void) { return nheld || in_alloc || in_excl; }

static int alloc_lock;
static struct sf_entry *free_list; /* linked through the first pointer-sized bytes */
static int page_lock;              /* page creation; held by the atfork prepare handler */
static int fork_locked;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static void spin_lock(int *l) {
  for (int i = 0;; i++) {
    if (!__atomic_load_n(l, __ATOMIC_RELAXED) && !__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE)) return;
    if (i < 100)
      cpu_relax();
    else
      sched_yield();
  }
}
static void spin_unlock(int *l) { __atomic_store_n(l, 0, __ATOMIC_RELEASE); }

/* Spin until try_expr succeeds (1), or give up at deadline (0; a deadline of 0: never). */
#define SPIN_UNTIL(try_expr, deadline)      \
  ({                                        \
    int64_t dl_ = (deadline);               \
    int got_ = 0;                           \
    for (int i_ = 0;; i_++) {               \
      if (try_expr) {                       \
        got_ = 1;                           \
        break;                              \
      }                                     \
      if (i_ < 100) {                       \
        cpu_relax();                        \
        continue;                           \
      }                                     \
      if (dl_ && sf_now_ns() >= dl_) break; \
      sched_yield();                        \
    }                                       \
    got_;                                   \
  })

static int try_int(int *l) {
  return !__atomic_load_n(l, __ATOMIC_RELAXED) && !__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE);
}
static int try_slot(struct slot *s, uintptr_t t) {
  uintptr_t z = 0;
  return !__atomic_load_n(&s->owner, __ATOMIC_RELAXED) &&
         __atomic_compare_exchange_n(&s->owner, &z, t, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

static struct slot *slot_of(int fd, int create) {
  if (fd < 0 || fd >= SF_TAB_MAXFD) return NULL;
  struct page **pp = &top[fd >> PAGE_BITS];
  struct page *p = __atomic_load_n(pp, __ATOMIC_ACQUIRE);
  if (!p) {
    /* page_lock comes before the slot locks: a handler that interrupted this thread inside the
       table waits for it boundedly, one that interrupted its holder not at all */
    if (!create || in_excl || in_alloc) return NULL;
    void *m = mmap(NULL, sizeof(struct page), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return NULL;
    int64_t deadline = nheld ? sf_now_ns() + NESTED_WAIT_NS : 0;
    if (!SPIN_UNTIL(try_int(&page_lock), deadline)) {
      munmap(m, sizeof(struct page));
      return NULL;
    }
    in_excl = 1;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    struct page *expected = NULL;
    int won = __atomic_compare_exchange_n(pp, &expected, (struct page *)m, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    in_excl = 0;
    spin_unlock(&page_lock);
    if (won) {
      p = m;
    } else {
      munmap(m, sizeof(struct page));
      p = expected;
    }
  }
  return &p->s[fd & (PAGE_SZ - 1)];
}

enum { LK_NO = 0, LK_LOCKED = 1, LK_SHARED = 2 };
/* LK_LOCKED: s is ours until unlock_slot. LK_SHARED (reads only): this thread's interrupted frame
   holds s for a read; read it without the lock and call nothing else. LK_NO: act as if the fd were
   untracked (see the top of the file). */
static int lock_slot(struct slot *s, int write) {
  if (in_excl) return LK_NO;
  int n = nheld;
  uintptr_t t = self_token();
  if (n) { /* a signal handler interrupted this thread inside the table */
    if (n == HELD_MAX) return LK_NO;
    if (__atomic_load_n(&s->owner, __ATOMIC_RELAXED) == t) {
      for (int i = 0; i < n; i++)
        if (held[i].s == s) return !write && !held[i].write ? LK_SHARED : LK_NO;
      return LK_NO;
    }
  }
  held[n].s = s;
  held[n].write = write;
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  nheld = n + 1;
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  if (!SPIN_UNTIL(try_slot(s, t), n ? sf_now_ns() + NESTED_WAIT_NS : 0)) {
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    nheld = n;
    return LK_NO;
  }
  return LK_LOCKED;
}
static void unlock_slot(struct slot *s) {
  __atomic_store_n(&s->owner, 0, __ATOMIC_RELEASE);
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  nheld--;
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

static void push_free_locked(struct sf_entry *e) {
  *(struct sf_entry **)e = free_list;
  free_list = e;
}

static void alloc_enter(void) {
  in_alloc = 1;
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  spin_lock(&alloc_lock);
}
static void alloc_leave(void) {
  struct sf_entry *d = __atomic_exchange_n(&deferred, NULL, __ATOMIC_RELAXED);
  while (d) { /* what handlers freed meanwhile */
    struct sf_entry *next = *(struct sf_entry **)d;
    push_free_locked(d);
    d = next;
  }
  spin_unlock(&alloc_lock);
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  in_alloc = 0;
  /* a handler between the exchange and here freed more: hand those back too */
  if (__atomic_load_n(&deferred, __ATOMIC_RELAXED)) {
    alloc_enter();
    alloc_leave();
  }
}

/* Called inside a slot critical section. */
static struct sf_entry *entry_alloc(void) {
  if (in_alloc) return NULL; /* a handler that interrupted this thread in here */
  alloc_enter();
  if (!free_list) {
    size_t chunk = 64 * 1024;
    void *m = mmap(NULL, chunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
      alloc_leave();
      return NULL;
    }
    size_t n = chunk / sizeof(struct sf_entry);
    for (size_t i = 0; i < n; i++) push_free_locked((struct sf_entry *)((char *)m + i * sizeof(struct sf_entry)));
  }
  struct sf_entry *e = free_list;
  free_list = *(struct sf_entry **)e;
  alloc_leave();
  return e;
}
static void entry_free(struct sf_entry *e) {
  if (in_alloc) { /* a handler that interrupted this thread in the allocator */
    struct sf_entry *old = __atomic_load_n(&deferred, __ATOMIC_RELAXED);
    do *(struct sf_entry **)e = old;
    while (!__atomic_compare_exchange_n(&deferred, &old, e, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return;
  }
  alloc_enter();
  push_free_locked(e);
  alloc_leave();
}

int sf_tab_has(int fd) {
  struct slot *s = slot_of(fd, 0);
  return s && __atomic_load_n(&s->e, __ATOMIC_ACQUIRE) != NULL;
}

int sf_tab_get(int fd, struct sf_entry *out) {
  struct slot *s = slot_of(fd, 0);
  if (!s || !__atomic_load_n(&s->e, __ATOMIC_ACQUIRE)) return 0;
  int lk = lock_slot(s, 0);
  if (lk == LK_NO) return 0;
  int found = s->e != NULL;
  if (found) *out = *s->e;
  if (lk == LK_LOCKED) unlock_slot(s);
  return found;
}

int sf_tab_set(int fd, const struct sf_entry *in, struct sf_entry *old) {
  struct slot *s = slot_of(fd, 1);
  if (!s) return -1;
  if (!lock_slot(s, 1)) return -1;
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
  if (!lock_slot(s, 1)) return 0;
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
  if (!lock_slot(s, 1)) return -1;
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

void sf_tab_scan(unsigned lo, unsigned hi, int (*cb)(int, const struct sf_entry *, void *), void *arg) {
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
      if (!lock_slot(s, 1)) return;
      struct sf_entry *e = s->e;
      if (e && cb((int)fd, e, arg)) {
        __atomic_store_n(&s->e, NULL, __ATOMIC_RELEASE);
        entry_free(e);
      }
      unlock_slot(s);
    }
  }
}

/* Before fork(): wait for every critical section to end and keep new ones from starting (lock
   order: page_lock, slots in fd order, alloc_lock; no critical section takes another slot or the
   page lock). Not when this thread is inside the table itself (fork() in a signal handler): the
   child resets the locks anyway. */
void sf_tab_atfork_prepare(void) {
  if (nheld || in_alloc || in_excl) return;
  in_excl = 1; /* a handler on this thread now keeps out of the table */
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  spin_lock(&page_lock);
  uintptr_t t = self_token();
  for (unsigned pi = 0; pi < TOP_SZ; pi++) {
    struct page *p = __atomic_load_n(&top[pi], __ATOMIC_ACQUIRE);
    if (!p) continue;
    for (unsigned i = 0; i < PAGE_SZ; i++) SPIN_UNTIL(try_slot(&p->s[i], t), 0);
  }
  spin_lock(&alloc_lock);
  fork_locked = 1;
}

static void release_all(void) {
  __atomic_store_n(&alloc_lock, 0, __ATOMIC_RELEASE);
  for (unsigned pi = 0; pi < TOP_SZ; pi++) {
    struct page *p = top[pi];
    if (!p) continue;
    for (unsigned i = 0; i < PAGE_SZ; i++) __atomic_store_n(&p->s[i].owner, 0, __ATOMIC_RELEASE);
  }
  __atomic_store_n(&page_lock, 0, __ATOMIC_RELEASE);
}

void sf_tab_atfork_parent(void) {
  if (!fork_locked) return;
  fork_locked = 0;
  release_all();
  __atomic_signal_fence(__ATOMIC_SEQ_CST);
  in_excl = 0;
}

/* In a forked child only the forking thread exists: any lock another thread held is stale. */
void sf_tab_atfork_child(void) {
  fork_locked = 0;
  nheld = 0;
  in_alloc = 0;
  in_excl = 0;
  release_all();
}

void sf_tab_drop(int fd) {
  struct slot *s = slot_of(fd, 0);
  if (!s || !__atomic_load_n(&s->e, __ATOMIC_ACQUIRE)) return;
  if (!lock_slot(s, 1)) return;
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
