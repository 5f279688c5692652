// small heaps: slow paths — slab refill, remote frees, delayed frees, thread
// start-up, abandonment and reclaim.
#include "heap/heap.h"

#include <pthread.h>
#include <sched.h>

#include <cerrno>
#include <cstring>
#include <new>

#include "base/lock.h"
#include "platform/os.h"

namespace remalloc::heap {

Span g_empty_span;

constinit Heap g_empty_heap;
__thread Heap* tl_heap = &g_empty_heap;

enum : uint8_t { kThreadNew = 0, kThreadLive = 1, kThreadDead = 2 };
static __thread uint8_t tl_state = kThreadNew;

static Mutex g_heaps_lock;     // heap registry, abandoned list, metadata pool
static Heap* g_all_heaps;
static Heap* g_abandoned;
static size_t g_heap_count;
static char* g_pool_cur;       // bump pool for Heap structs
static char* g_pool_end;

// The heap of threads that already ran their teardown: shared, locked.
static Mutex g_backstop_lock;
static Heap* g_backstop;

static pthread_key_t g_key;
static std::atomic<int> g_key_state{0};  // 0 none, 1 creating, 2 ready

// ---- lists (avail lists use g_empty_span as "none") ------------------------
static void avail_push_front(Heap* h, Span* s) {
  unsigned c = s->size_class;
  Span* head = h->avail[c];
  s->prev = nullptr;
  s->next = head == &g_empty_span ? nullptr : head;
  if (s->next) s->next->prev = s;
  h->avail[c] = s;
}

// Inserts after the current slab (so the current one stays hot).
static void avail_push_second(Heap* h, Span* s) {
  unsigned c = s->size_class;
  Span* head = h->avail[c];
  if (head == &g_empty_span) {
    avail_push_front(h, s);
    return;
  }
  s->prev = head;
  s->next = head->next;
  if (s->next) s->next->prev = s;
  head->next = s;
}

static void avail_remove(Heap* h, Span* s) {
  unsigned c = s->size_class;
  if (s->prev)
    s->prev->next = s->next;
  else
    h->avail[c] = s->next ? s->next : &g_empty_span;
  if (s->next) s->next->prev = s->prev;
  s->next = s->prev = nullptr;
}

static void full_push(Heap* h, Span* s) {
  unsigned c = s->size_class;
  s->prev = nullptr;
  s->next = h->full[c];
  if (s->next) s->next->prev = s;
  h->full[c] = s;
  s->is_full = 1;
}

static void full_remove(Heap* h, Span* s) {
  unsigned c = s->size_class;
  if (s->prev)
    s->prev->next = s->next;
  else
    h->full[c] = s->next;
  if (s->next) s->next->prev = s->prev;
  s->next = s->prev = nullptr;
  s->is_full = 0;
}

// ---- remote frees -------------------------------------------------------------
static void free_to_abandoned(Heap* h, Span* s, void* p);
static void collect_abandoned(Heap* h, size_t released = 0);

// Sequentially consistent: a thread that pushes and then reads the heap's
// state (or its collector lock) and the thread that changes the state (or
// lets go of the lock) and then reads the list cannot both miss the other.
static void push_delayed(Heap* h, void* p) {
  uintptr_t d = h->delayed.load(std::memory_order_relaxed);
  do {
    pages::link_store(p, reinterpret_cast<void*>(d));
  } while (!h->delayed.compare_exchange_weak(d, reinterpret_cast<uintptr_t>(p), std::memory_order_seq_cst,
                                             std::memory_order_relaxed));
}

void free_remote(Span* s, void* p) {
  uintptr_t old = s->remote.load(std::memory_order_relaxed);
  for (;;) {
    if (old & 1) {
      // The owner found the slab full (or left the heap): hand the block to
      // the owner heap.
      Heap* h = s->heap;
      if (RM_UNLIKELY(h->state.load(std::memory_order_relaxed) == kHeapAbandoned)) return free_to_abandoned(h, s, p);
      push_delayed(h, p);
      // Its thread may have left since it was read live; it looks at the
      // list after publishing that, and so does this thread after the push.
      if (RM_UNLIKELY(h->state.load(std::memory_order_seq_cst) == kHeapAbandoned)) collect_abandoned(h);
      return;
    }
    pages::link_store(p, reinterpret_cast<void*>(old));
    if (s->remote.compare_exchange_weak(old, reinterpret_cast<uintptr_t>(p),
                                        std::memory_order_release, std::memory_order_relaxed))
      return;
  }
}

// Moves the slab's remote frees onto its free list. Returns how many.
static uint32_t collect_remote(Span* s) {
  if (s->remote.load(std::memory_order_relaxed) == 0) return 0;
  uintptr_t list = s->remote.exchange(0, std::memory_order_acquire);
  if (list == 0) return 0;
  uint32_t n = 1;
  void* tail = reinterpret_cast<void*>(list);
  while (void* nx = pages::link_load(tail)) {
    tail = nx;
    n++;
  }
  pages::link_store(tail, s->free_list);
  s->free_list = reinterpret_cast<void*>(list);
  s->used -= n;
  return n;
}

static void release_slab(Span* s) {
  // free_span() takes off the secure build's guard page.
  s->heap = nullptr;
  s->slab_bytes = 0;
  pages::free_span(s);
}

void free_local_slow(Heap* h, Span* s) {
  if (s->is_full) {
    full_remove(h, s);
    // Nobody pushes onto a full slab's list, so only the flag is there.
    s->remote.store(0, std::memory_order_release);
    avail_push_second(h, s);
  }
  if (s->used == 0 && h->avail[s->size_class] != s) {
    avail_remove(h, s);
    unsigned c = s->size_class;
    if (!h->spare[c] && h->state.load(std::memory_order_relaxed) == kHeapLive) {
      h->spare[c] = s;  // kept for the next slab of this class
    } else {
      release_slab(s);
      if (void (*hook)() = g_on_slab_released) hook();
    }
  }
}

// Gives the spare slabs back to the page heap.
static void release_spares(Heap* h) {
  for (unsigned c = 0; c < sc::kNumClasses; c++) {
    if (Span* s = h->spare[c]) {
      h->spare[c] = nullptr;
      release_slab(s);
    }
  }
}

static void drain_delayed(Heap* h) {
  if (h->delayed.load(std::memory_order_relaxed) == 0) return;
  uintptr_t list = h->delayed.exchange(0, std::memory_order_acquire);
  while (list) {
    void* p = reinterpret_cast<void*>(list);
    list = reinterpret_cast<uintptr_t>(pages::link_load(p));
    Span* s = pages::span_of(p);
    pages::link_store(p, s->free_list);
    s->free_list = p;
    s->used--;
    if (s->used == 0 || s->is_full) free_local_slow(h, s);
  }
}

// ---- abandoned heaps -----------------------------------------------------------
// A thread that exits seals its heap (every slab marked full, so every later
// free reaches `delayed`) and abandons it. From then on the heap belongs to
// whoever holds its collector lock: threads that free into it give the
// blocks back to their slabs, and a slab that empties goes back to the page
// heap (purged with the decay like any free run). A thread that finds the
// lock taken leaves its block on `delayed`; the holder looks at the list
// again after letting go. Never more than one lock is held here, and the
// page lock is the only one taken under it.
static bool collector_try_lock(Heap* h) { return h->collector.exchange(1, std::memory_order_seq_cst) == 0; }
static void collector_unlock(Heap* h) { h->collector.exchange(0, std::memory_order_seq_cst); }
// The adopter's and the statistics' wait: holders give back one batch and
// let go.
static void collector_lock(Heap* h) {
  for (unsigned spins = 0; !collector_try_lock(h); spins++) {
    if (spins < 64)
      cpu_relax();
    else
      sched_yield();
  }
}

// Gives block p back to slab s of abandoned heap h (collector lock held);
// the slab goes back to the page heap when it empties (returns 1 then).
static size_t give_back_abandoned(Heap* h, Span* s, void* p) {
  RM_ASSERT_INTERNAL(s->heap == h && s->is_full && s->used > 0);
  pages::link_store(p, s->free_list);
  s->free_list = p;
  if (--s->used) return 0;
  full_remove(h, s);
  s->remote.store(0, std::memory_order_relaxed);
  release_slab(s);
  return 1;
}

// Gives back every block on abandoned heap h's delayed list (collector lock
// held). Returns the slabs released.
static size_t collect_locked(Heap* h) {
  size_t released = 0;
  uintptr_t list = h->delayed.exchange(0, std::memory_order_seq_cst);
  while (list) {
    void* p = reinterpret_cast<void*>(list);
    list = reinterpret_cast<uintptr_t>(pages::link_load(p));
    released += give_back_abandoned(h, pages::span_of(p), p);
  }
  return released;
}

// Gives back what waits on abandoned heap h's delayed list, until the list
// is empty, another thread holds the heap (and so looks again after it lets
// go) or a new thread adopted it (its owner drains the list).
static void collect_abandoned(Heap* h, size_t released) {
  while (h->delayed.load(std::memory_order_seq_cst) && h->state.load(std::memory_order_seq_cst) == kHeapAbandoned &&
         collector_try_lock(h)) {
    if (h->state.load(std::memory_order_acquire) == kHeapAbandoned) released += collect_locked(h);
    collector_unlock(h);
  }
  if (released)
    if (void (*hook)() = g_on_slab_released) hook();
}

// A free into a slab of abandoned heap h (marked full, as all its slabs are;
// it cannot empty or change hands while p is live).
static RM_NOINLINE void free_to_abandoned(Heap* h, Span* s, void* p) {
  if (collector_try_lock(h)) {
    if (h->state.load(std::memory_order_acquire) == kHeapAbandoned) {
      size_t released = give_back_abandoned(h, s, p);
      if (h->delayed.load(std::memory_order_relaxed)) released += collect_locked(h);
      collector_unlock(h);
      collect_abandoned(h, released);
      return;
    }
    collector_unlock(h);  // adopted meanwhile: its new owner takes the block
  }
  push_delayed(h, p);
  if (h->state.load(std::memory_order_seq_cst) == kHeapAbandoned) collect_abandoned(h);
}

// Marks every slab of h full, moving it to the full lists, so that every
// later free goes to h's delayed list; gives back those that are empty.
// The owner, at thread exit.
static void seal(Heap* h) {
  for (unsigned c = 0; c < sc::kNumClasses; c++) {
    for (Span* s = h->avail[c]; s && s != &g_empty_span;) {
      Span* next = s->next;
      avail_remove(h, s);
      for (;;) {
        collect_remote(s);
        uintptr_t expected = 0;
        if (s->remote.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) break;
      }
      if (s->used == 0)
        release_slab(s);
      else
        full_push(h, s);
      s = next;
    }
  }
}

// The reverse, by a thread that adopted h: slabs with free blocks go back
// on the avail lists (frees then go to their remote lists again).
static void unseal(Heap* h) {
  for (unsigned c = 0; c < sc::kNumClasses; c++) {
    for (Span* s = h->full[c]; s;) {
      Span* next = s->next;
      if (s->free_list || s->bump < s->capacity) {
        full_remove(h, s);
        // Nobody pushes onto a full slab's list, so only the flag is there.
        s->remote.store(0, std::memory_order_release);
        avail_push_front(h, s);
      }
      s = next;
    }
  }
}

size_t trim_abandoned() {
  size_t released = 0;
  LockGuard g(g_heaps_lock);
  for (Heap* h = g_abandoned; h; h = h->next_abandoned) {
    if (!h->delayed.load(std::memory_order_seq_cst) || !collector_try_lock(h)) continue;
    if (h->state.load(std::memory_order_acquire) == kHeapAbandoned) released += collect_locked(h);
    collector_unlock(h);
  }
  return released;
}

// A per-thread xorshift generator for the secure build's shuffles.
static __thread uint64_t tl_rng;
static uint32_t rng_next() {
  uint64_t x = tl_rng;
  if (RM_UNLIKELY(x == 0)) x = (pages::g_link_key ^ reinterpret_cast<uintptr_t>(&tl_rng)) * 0x9e3779b97f4a7c15ull | 1;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  tl_rng = x;
  return uint32_t(x >> 32);
}

// Links a page worth of never-used blocks (one block for classes of a page
// or more) into the free list, so a fresh slab is touched only as it fills:
// linking a block writes its first word, and each page written costs a
// fault and stays resident. The secure build links
// them in a random order (a Fisher-Yates shuffle of the page's blocks), so
// the next block's address cannot be predicted from the last one.
static void extend(Span* s) {
  uint32_t bs = s->block_size;
  uint32_t n = uint32_t(kPageSize / bs);
  if (n < 1) n = 1;
  if (n > s->capacity - s->bump) n = s->capacity - s->bump;
  char* first = reinterpret_cast<char*>(s->start) + size_t(s->bump) * bs;
  if constexpr (kSecure) {
    uint16_t order[kPageSize / kMinAlign];
    static_assert(kPageSize / kMinAlign <= 65536);
    if (n <= sizeof order / sizeof order[0]) {
      for (uint32_t i = 0; i < n; i++) order[i] = uint16_t(i);
      for (uint32_t i = n - 1; i > 0; i--) {
        uint32_t j = rng_next() % (i + 1);
        uint16_t t = order[i];
        order[i] = order[j];
        order[j] = t;
      }
      void* head = s->free_list;
      for (uint32_t i = 0; i < n; i++) {
        char* b = first + size_t(order[i]) * bs;
        pages::link_store(b, head);
        reinterpret_cast<uintptr_t*>(b)[1] = 0;  // no stale free mark
        head = b;
      }
      s->free_list = head;
      s->bump += n;
      return;
    }
  }
  // Fresh blocks must not carry a stale free mark (the pages may have held
  // freed blocks of another class at the same address): the checked build
  // would take the old bytes for a write into a freed block.
  char* p = first;
  for (uint32_t i = 1; i < n; i++, p += bs) {
    pages::link_store(p, p + bs);
    reinterpret_cast<uintptr_t*>(p)[1] = 0;
  }
  pages::link_store(p, s->free_list);
  reinterpret_cast<uintptr_t*>(p)[1] = 0;
  s->free_list = first;
  s->bump += n;
}

static Span* new_slab(Heap* h, unsigned c) {
  const sc::ClassInfo& ci = sc::kInfo[c];
  unsigned made = h->slabs_made[c];
  size_t npages = sc::slab_pages_nth(c, made);
  Span* s = pages::alloc_slab(npages + pages::guard_tail_pages());
  if (!s) return nullptr;
  if (made < sc::kSlabGrowthSteps) h->slabs_made[c] = uint8_t(made + 1);
  pages::guard_install_tail(s);  // secure build: a guard after the slab
  s->size_class = uint8_t(c);
  s->block_size = ci.size;
  s->recip = ci.recip;
  s->capacity = uint32_t((npages << kPageShift) / ci.size);
  s->used = 0;
  s->bump = 0;
  s->free_list = nullptr;
  s->remote.store(0, std::memory_order_relaxed);
  s->is_full = 0;
  s->heap = h;
  s->slab_bytes = uint32_t(npages << kPageShift);
  avail_push_front(h, s);
  return s;
}

void poison_freed(Span* s, void* p) {
  memset(static_cast<char*>(p) + 2 * sizeof(void*), kPoisonByte, s->block_size - 2 * sizeof(void*));
}

void check_handed_out(Span* s, void* b) {
  // The link must lead to a block of the same slab (or end the list).
  uintptr_t next = reinterpret_cast<uintptr_t>(pages::link_load(b));
  if (next && (next - s->start >= s->slab_bytes || (next - s->start) % s->block_size))
    fatal("heap corruption: a free block's link was overwritten (a write past the block before it, "
          "or into this freed block)", b);
  // A block that was freed (it has the mark) must still hold the poison.
  if (!has_free_mark(b)) return;
  const unsigned char* q = static_cast<const unsigned char*>(b);
  for (size_t i = 2 * sizeof(void*); i < s->block_size; i++)
    if (q[i] != kPoisonByte) fatal("heap corruption: write into a freed block", q + i);
}

static void* pop(Span* s) { return pop_block(s); }

// ---- double frees -------------------------------------------------------------
void bad_link(void* b) {
  fatal("heap corruption: a free block's link was overwritten (use after free or overflow)", b);
}

static void abort_on_invalid(const void* p, const char* what) { fatal(what, p); }
void (*g_on_invalid)(const void* p, const char* what) = abort_on_invalid;
void (*g_on_slab_released)() = nullptr;

// Is p on the singly linked list starting at `head`? Walks at most `limit`
// links (a list damaged by a use after free must not hang us).
static bool on_list(uintptr_t head, const void* p, size_t limit) {
  for (uintptr_t q = head & ~uintptr_t{1}; q && limit--;
       q = reinterpret_cast<uintptr_t>(pages::link_load(reinterpret_cast<void*>(q)))) {
    if (reinterpret_cast<const void*>(q) == p) return true;
    Span* qs = pages::span_of(reinterpret_cast<void*>(q));
    if (!qs || !is_block(qs, reinterpret_cast<void*>(q))) return false;  // damaged list
  }
  return false;
}

void free_small_marked(Span* s, void* p) {
  if (check_marked(s, p, "free(): double free detected")) return;  // reported; ignored if we go on
  static_cast<uintptr_t*>(p)[1] = 0;  // the program's data looked like the mark: free normally
  free_small(s, p);
}

bool check_marked(Span* s, void* p, const char* what) {
  bool freed;
  if (s->heap == tl_heap) {
    // Only this thread pops these lists; other threads only push.
    size_t cap = s->capacity + 1;
    freed = on_list(reinterpret_cast<uintptr_t>(s->free_list), p, cap) ||
            on_list(s->remote.load(std::memory_order_acquire), p, cap) ||
            on_list(tl_heap->delayed.load(std::memory_order_acquire), p, size_t{1} << 26);
  } else {
    freed = true;
  }
  if (freed) g_on_invalid(p, what);
  return freed;
}

// Finds a free block of class c in heap h (owner or lock holder).
static void* heap_alloc(Heap* h, unsigned c) {
  drain_delayed(h);
  for (;;) {
    Span* s = h->avail[c];
    if (s == &g_empty_span) break;
    if (s->free_list) return pop(s);
    if (collect_remote(s)) return pop(s);
    if (s->bump < s->capacity) {
      extend(s);
      return pop(s);
    }
    // Full: mark it so remote frees go to the heap's delayed list; if a
    // remote free raced in, use it instead.
    uintptr_t expected = 0;
    if (!s->remote.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
      collect_remote(s);
      return pop(s);
    }
    avail_remove(h, s);
    full_push(h, s);
  }
  if (Span* s = h->spare[c]) {
    // The spare slab: every block on its free list, none handed out.
    h->spare[c] = nullptr;
    avail_push_front(h, s);
    return pop(s);
  }
  Span* s = new_slab(h, c);
  if (!s) return nullptr;
  extend(s);
  return pop(s);
}

// ---- heaps --------------------------------------------------------------------
static Heap* new_heap_locked() {
  if (size_t(g_pool_end - g_pool_cur) < sizeof(Heap)) {
    size_t chunk = 256 * 1024;
    char* p = static_cast<char*>(os::reserve(chunk, kPageSize));
    if (!p) return nullptr;
    g_pool_cur = p;
    g_pool_end = p + chunk;
  }
  Heap* h = new (g_pool_cur) Heap();
  g_pool_cur += align_up(sizeof(Heap), 64);
  h->id = uint32_t(++g_heap_count);
  // The secure build's link key, fixed before the first slab exists (every
  // heap is made here, under this lock, before any of its slabs).
  if (kSecure && pages::g_link_key == 0) pages::g_link_key = os::random_u64() | 1;
  h->next_all = g_all_heaps;
  g_all_heaps = h;
  return h;
}

static void on_thread_exit(void* value) {
  Heap* h = static_cast<Heap*>(value);
  if (h && h == tl_heap) thread_done(h);
}

static void ensure_key() {
  int st = g_key_state.load(std::memory_order_acquire);
  if (st == 2) return;
  st = 0;
  if (g_key_state.compare_exchange_strong(st, 1)) {
    if (pthread_key_create(&g_key, on_thread_exit) == 0)
      g_key_state.store(2, std::memory_order_release);
    else
      g_key_state.store(3, std::memory_order_release);
    return;
  }
  while (g_key_state.load(std::memory_order_acquire) == 1) cpu_relax();
}

static Heap* thread_attach() {
  Heap* h;
  bool adopted = false;
  {
    LockGuard g(g_heaps_lock);
    h = g_abandoned;
    if (h) {
      g_abandoned = h->next_abandoned;
      h->next_abandoned = nullptr;
      adopted = true;
    } else {
      h = new_heap_locked();
    }
  }
  if (!h) return nullptr;
  if (adopted) {
    // Wait for a thread that is giving frees back to it, then own it.
    collector_lock(h);
    h->state.store(kHeapLive, std::memory_order_seq_cst);
    collector_unlock(h);
    drain_delayed(h);
    unseal(h);
  }
  tl_heap = h;
  tl_state = kThreadLive;
  ensure_key();
  if (g_key_state.load(std::memory_order_acquire) == 2) pthread_setspecific(g_key, h);
  return h;
}

Span* large_cache_get(size_t npages) {
  Heap* h = tl_heap;
  for (unsigned i = 0; i < Heap::kLargeCacheSlots; i++) {
    Span* s = h->large_cache[i];
    if (s && s->npages >= npages && s->npages - npages <= npages / 8) {
      h->large_cache[i] = nullptr;
      __atomic_store_n(&s->kind, uint8_t(kSpanLarge), __ATOMIC_RELAXED);
      return s;
    }
  }
  return nullptr;
}

bool large_cache_put(Span* s) {
  Heap* h = tl_heap;
  if (h == &g_empty_heap || s->npages > kLargeCacheMaxPages) return false;
  unsigned i = h->large_cache_next;
  h->large_cache_next = (i + 1) % Heap::kLargeCacheSlots;
  Span* old = h->large_cache[i];
  __atomic_store_n(&s->kind, uint8_t(kSpanCached), __ATOMIC_RELAXED);
  h->large_cache[i] = s;
  if (old) {
    __atomic_store_n(&old->kind, uint8_t(kSpanLarge), __ATOMIC_RELAXED);
    pages::free_span(old);
  }
  return true;
}

static void large_cache_flush(Heap* h) {
  for (unsigned i = 0; i < Heap::kLargeCacheSlots; i++) {
    if (Span* s = h->large_cache[i]) {
      h->large_cache[i] = nullptr;
      __atomic_store_n(&s->kind, uint8_t(kSpanLarge), __ATOMIC_RELAXED);
      pages::free_span(s);
    }
  }
}

// Gives back every empty slab of h: the spares, and the empty slabs still
// on the avail lists (the current slab of a class is kept when it empties),
// after taking in the delayed and remote frees. Owner only.
static void release_empty_slabs(Heap* h) {
  drain_delayed(h);
  for (unsigned c = 0; c < sc::kNumClasses; c++) {
    for (Span* s = h->avail[c]; s != &g_empty_span && s;) {
      Span* next = s->next;
      collect_remote(s);
      if (s->used == 0) {
        avail_remove(h, s);
        release_slab(s);
      }
      s = next;
    }
  }
  release_spares(h);
}

void large_cache_flush_current() {
  Heap* h = tl_heap;
  if (h == &g_empty_heap) return;
  large_cache_flush(h);
  // Empty slabs hold pages in the middle of arenas.
  release_empty_slabs(h);
}

void thread_done(Heap* h) {
  if (h == &g_empty_heap || h->state.load(std::memory_order_relaxed) != kHeapLive) return;
  large_cache_flush(h);
  release_empty_slabs(h);
  seal(h);
  tl_heap = &g_empty_heap;
  tl_state = kThreadDead;
  {
    LockGuard g(g_heaps_lock);
    h->state.store(kHeapAbandoned, std::memory_order_seq_cst);
    h->next_abandoned = g_abandoned;
    g_abandoned = h;
  }
  // Frees that reached the delayed list since release_empty_slabs drained
  // it, by threads that still saw the heap live.
  collect_abandoned(h);
}

static void* backstop_alloc(unsigned c) {
  LockGuard g(g_backstop_lock);
  if (!g_backstop) {
    LockGuard g2(g_heaps_lock);
    g_backstop = new_heap_locked();
    if (!g_backstop) return nullptr;
    g_backstop->state.store(kHeapBackstop, std::memory_order_relaxed);
  }
  return heap_alloc(g_backstop, c);
}

void* malloc_slow(size_t size) {
  unsigned c = sc::class_of(size);
  Heap* h = tl_heap;
  if (h == &g_empty_heap) {
    if (tl_state == kThreadDead) return backstop_alloc(c);
    h = thread_attach();
    if (!h) return backstop_alloc(c);
  }
  return heap_alloc(h, c);
}

void fork_prepare() {
  g_backstop_lock.fork_acquire();
  g_heaps_lock.fork_acquire();
}
void fork_parent() {
  g_heaps_lock.fork_release();
  g_backstop_lock.fork_release();
}
void fork_child() {
  g_heaps_lock.reset_in_child();
  g_backstop_lock.reset_in_child();
  // The other threads are gone in the child; their heaps stay owned by them
  // (they may be mid-update, so adopting them would be unsafe). Their blocks
  // can still be freed: frees from this thread go to the remote lists.
  // So do abandoned heaps that a thread was giving frees back to (held by
  // it for ever): off the abandoned list, and live, owned by nobody.
  Heap** link = &g_abandoned;
  while (Heap* h = *link) {
    if (h->collector.load(std::memory_order_relaxed)) {
      *link = h->next_abandoned;
      h->next_abandoned = nullptr;
      h->state.store(kHeapLive, std::memory_order_relaxed);
    } else {
      link = &h->next_abandoned;
    }
  }
}

// Checks heap h's lists (its owner, or the holder of its collector lock).
static void validate_heap(Heap* h, bool abandoned) {
  for (unsigned c = 0; c < sc::kNumClasses; c++) {
    for (int list = 0; list < 2; list++) {
      Span* prev = nullptr;
      for (Span* s = list == 0 ? h->avail[c] : h->full[c]; s && s != &g_empty_span; prev = s, s = s->next) {
        if (s->kind != kSpanSlab || s->heap != h || s->size_class != c)
          fatal("heaps: a slab on this heap's lists is not its slab of this class", reinterpret_cast<void*>(s->start));
        if (s->prev != prev) fatal("heaps: broken slab list links", reinterpret_cast<void*>(s->start));
        if (bool(s->is_full) != (list == 1)) fatal("heaps: slab on the wrong list for its full flag", reinterpret_cast<void*>(s->start));
        if (list == 1 && s->remote.load(std::memory_order_relaxed) != 1)
          fatal("heaps: a slab on a full list holds remote frees or is not marked full", reinterpret_cast<void*>(s->start));
        if (abandoned && (list == 0 || s->used == 0))
          fatal("heaps: an abandoned heap holds a slab that is not marked full, or an empty one",
                reinterpret_cast<void*>(s->start));
        pages::validate_span(s, true);
      }
    }
    if (Span* s = h->spare[c]) {
      if (abandoned) fatal("heaps: an abandoned heap keeps a spare slab", reinterpret_cast<void*>(s->start));
      if (s->kind != kSpanSlab || s->heap != h || s->size_class != c || s->used != 0)
        fatal("heaps: the spare slab is not an empty slab of this heap and class", reinterpret_cast<void*>(s->start));
      pages::validate_span(s, true);
    }
  }
  if (abandoned)
    for (Span* s : h->large_cache)
      if (s) fatal("heaps: an abandoned heap keeps large blocks", reinterpret_cast<void*>(s->start));
}

void validate_current() {
  Heap* h = tl_heap;
  {
    LockGuard g(g_heaps_lock);
    size_t n = 0;
    bool found = h == &g_empty_heap;
    for (Heap* x = g_all_heaps; x; x = x->next_all) {
      if (++n > g_heap_count) fatal("heaps: registry longer than the heap count (a cycle?)", x);
      if (x == h) found = true;
      if (x->state.load(std::memory_order_relaxed) > kHeapBackstop) fatal("heaps: heap in an unknown state", x);
    }
    if (n != g_heap_count) fatal("heaps: registry shorter than the heap count", nullptr);
    if (!found) fatal("heaps: this thread's heap is not registered", h);
    for (Heap* x = g_abandoned; x; x = x->next_abandoned) {
      if (x->state.load(std::memory_order_relaxed) != kHeapAbandoned)
        fatal("heaps: a heap on the abandoned list is not abandoned", x);
      // Its lists, unless a thread is giving frees back to it right now.
      if (!collector_try_lock(x)) continue;
      validate_heap(x, true);
      collector_unlock(x);
    }
  }
  if (h != &g_empty_heap) validate_heap(h, false);
}

void get_stats(Stats* out) {
  *out = Stats{};
  LockGuard g(g_heaps_lock);
  for (Heap* h = g_all_heaps; h; h = h->next_all) {
    out->heaps++;
    // An abandoned heap's lists change only under its collector lock.
    bool locked = h->state.load(std::memory_order_acquire) == kHeapAbandoned;
    if (locked) {
      out->abandoned++;
      collector_lock(h);
    }
    for (unsigned c = 0; c < sc::kNumClasses; c++) {
      for (int list = 0; list < 2; list++) {
        Span* s = list == 0 ? h->avail[c] : h->full[c];
        for (int guard = 0; s && s != &g_empty_span && guard < 1000000; guard++) {
          // Racy read of another thread's counters: statistics only.
          uint32_t used = __atomic_load_n(&s->used, __ATOMIC_RELAXED);
          out->slabs++;
          out->slabs_by_class[c]++;
          out->live_by_class[c] += used;
          out->blocks_live += used;
          s = __atomic_load_n(&s->next, __ATOMIC_RELAXED);
        }
      }
      if (__atomic_load_n(&h->spare[c], __ATOMIC_RELAXED)) {
        out->slabs++;
        out->slabs_by_class[c]++;
      }
    }
    if (locked) collector_unlock(h);
  }
}

}  // namespace remalloc::heap
