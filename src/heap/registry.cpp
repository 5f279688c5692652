// small heaps: the registry of heaps, thread start-up and exit.
//
// Every heap ever made is on g_all_heaps (heaps are never freed, so a
// slab's owner pointer stays valid for ever); heaps come from a bump pool
// of 256 KiB chunks, 64-byte aligned. A thread's first slow path attaches
// a heap: it adopts an abandoned one (abandon.cpp) or makes a new one, and
// registers a pthread key whose destructor runs thread_done at exit. After
// that, a thread that allocates again (another key's destructor) uses the
// backstop heap (backstop.cpp).
//
// Invariants (validate.cpp checks them): g_all_heaps has g_heap_count
// entries, every heap on g_abandoned is abandoned, every thread's heap is
// registered. tl_heap is &g_empty_heap until the thread attaches and after
// its teardown, so the fast path's first miss lands here.
#include <pthread.h>

#include <new>

#include "heap/internal.h"
#include "platform/os.h"

namespace remalloc::heap {

constinit Heap g_empty_heap;
__thread Heap* tl_heap = &g_empty_heap;
__thread uint8_t tl_state = kThreadNew;

Mutex g_heaps_lock;
Heap* g_all_heaps;
Heap* g_abandoned;
size_t g_heap_count;
std::atomic<uint32_t> g_live_heaps{0};
static char* g_pool_cur;  // bump pool for Heap structs
static char* g_pool_end;

static pthread_key_t g_key;
static std::atomic<int> g_key_state{0};  // 0 none, 1 creating, 2 ready, 3 failed

Heap* new_heap_locked() {
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
    if (h) g_live_heaps.store(g_live_heaps.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  if (!h) return nullptr;
  if (adopted) {
    // Wait for a thread that is giving frees back to it, then own it.
    collector_lock(h);
    h->state.store(kHeapLive, std::memory_order_seq_cst);
    collector_unlock(h);
    drain_delayed(h);
    unseal(h);
    // A new thread: its new slabs start small again (size_classes.h), as
    // a new heap's would, instead of at the size the last owner reached.
    for (unsigned c = 0; c < sc::kNumClasses; c++) h->slabs_made[c] = 0;
  }
  tl_heap = h;
  tl_state = kThreadLive;
  ensure_key();
  if (g_key_state.load(std::memory_order_acquire) == 2) pthread_setspecific(g_key, h);
  return h;
}

void thread_done(Heap* h) {
  if (h == &g_empty_heap || h->state.load(std::memory_order_relaxed) != kHeapLive) return;
  large_cache_flush(h);
  foreign_close(h);
  release_empty_slabs(h);
  seal(h);
  tl_heap = &g_empty_heap;
  tl_state = kThreadDead;
  {
    LockGuard g(g_heaps_lock);
    h->state.store(kHeapAbandoned, std::memory_order_seq_cst);
    g_live_heaps.store(g_live_heaps.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
    h->next_abandoned = g_abandoned;
    g_abandoned = h;
  }
  // Frees that reached the delayed list since release_empty_slabs drained
  // it, by threads that still saw the heap live.
  collect_abandoned(h);
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

}  // namespace remalloc::heap
