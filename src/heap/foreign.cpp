// small heaps: the foreign cache (blocks of other heaps' slabs that a thread
// freed, kept for its own next allocations).
//
// Without it, a block freed by a thread that does not own its slab goes to
// the owner at once (remote.cpp) and is used again only once the owner
// takes its slab's remote list in, which it does when that slab runs dry
// and it is running. With many more threads than cores, owners are mostly
// not running: at xthread-32's peak (32 threads on 2 cores) about 30 of the
// 59 MiB of blocks counted as handed out sat on the remote lists of
// descheduled owners, while the running threads touched fresh pages.
// tcmalloc and jemalloc put such a free into the freeing thread's own cache
// and hand the block out again from there; this is the same idea on top of
// owned slabs: the block stays counted as handed out in its slab (the
// owner's accounting does not change), the freeing thread hands it out
// again, and only when its cache is full (or it leaves, or trims) does the
// block go to its owner.
//
// When. Only while more threads own heaps than min_heaps (8 per CPU the
// process may run on). With fewer, owners take their blocks back soon, and
// a thread that allocates other heaps' blocks frees them later as remote
// frees again, and touches more slabs: larson (2 threads) was 17% and
// xthread-8 (8 threads, 2 CPUs) 13% slower with the cache always on, with
// no gain in memory.
//
// Limits. A list per class (Heap::foreign) of at most foreign_max[c]
// blocks; foreign_max starts at 0 and doubles (to kForeignMaxBlocks) each
// time the thread's refill of that class finds the list empty, so a thread
// that only frees a class (a consumer) caches none of it. All lists of a
// thread hold at most its budget: the process's total (the option
// foreign_cache, 64 MiB) divided by the threads that own heaps, at most
// kForeignMaxBudget; a class whose blocks are larger than a quarter of that
// is not cached. A
// free that finds no room sends the list of its class to the owners (the
// list is full) or the whole cache (the budget is spent).
//
// The refill (heap_alloc) hands out a cached block of the class before it
// looks at the current slab: the block this thread freed last, likely still
// in its cache. A cached block carries the cached mark (heap.h): a second
// free of it by any thread, or a realloc, is reported as a double free
// (the owner could not find it on its own lists).
#include "heap/internal.h"

namespace remalloc::heap {

static std::atomic<size_t> g_foreign_total{size_t{64} << 20};
static std::atomic<uint32_t> g_foreign_min_configured{16};
std::atomic<uint32_t> g_foreign_min_heaps{16};

void configure_foreign(size_t total, uint32_t min_heaps) {
  g_foreign_total.store(total, std::memory_order_relaxed);
  g_foreign_min_configured.store(min_heaps, std::memory_order_relaxed);
  g_foreign_min_heaps.store(total ? min_heaps : UINT32_MAX, std::memory_order_relaxed);
}

size_t foreign_total() { return g_foreign_total.load(std::memory_order_relaxed); }
uint32_t foreign_min_heaps() { return g_foreign_min_configured.load(std::memory_order_relaxed); }

// Sends h's list of class c to the owners of its blocks.
static void flush_class(Heap* h, unsigned c) {
  void* b = h->foreign[c];
  h->foreign_bytes -= h->foreign_n[c] * uint32_t(sc::kInfo[c].size);
  h->foreign[c] = nullptr;
  h->foreign_n[c] = 0;
  while (b) {
    void* next = pages::link_load(b);
    static_cast<uintptr_t*>(b)[1] = free_mark(b);
    free_remote(pages::span_of(b), b);
    b = next;
  }
}

void foreign_flush(Heap* h) {
  for (unsigned c = 0; c < sc::kNumClasses; c++)
    if (h->foreign[c]) flush_class(h, c);
}

void foreign_close(Heap* h) {
  foreign_flush(h);
  for (unsigned c = 0; c < sc::kNumClasses; c++) h->foreign_max[c] = 0;
  h->foreign_budget = 0;
}

void foreign_grow(Heap* h, unsigned c) {
  uint32_t live = g_live_heaps.load(std::memory_order_relaxed);
  // Off, g_foreign_min_heaps is UINT32_MAX (configure_foreign).
  if (live <= g_foreign_min_heaps.load(std::memory_order_relaxed) ||
      h->state.load(std::memory_order_relaxed) != kHeapLive) {  // the backstop heap caches nothing
    // Not in use (any more): the next free of the class sends what the
    // list holds home.
    h->foreign_max[c] = 0;
    h->foreign_budget = 0;
    return;
  }
  size_t share = g_foreign_total.load(std::memory_order_relaxed) / live;
  h->foreign_budget = uint32_t(share < kForeignMaxBudget ? share : kForeignMaxBudget);
  if (4 * sc::kInfo[c].size > h->foreign_budget) {
    h->foreign_max[c] = 0;  // too large a block for this budget
    return;
  }
  uint32_t m = h->foreign_max[c] * 2u + 1;
  h->foreign_max[c] = uint16_t(m < kForeignMaxBlocks ? m : kForeignMaxBlocks);
}

void free_foreign(Heap* h, Span* s, void* p) {
  const unsigned c = s->size_class;
  const uint32_t bs = s->block_size;
  if (RM_UNLIKELY(h->foreign_n[c] >= h->foreign_max[c] || h->foreign_bytes + bs > h->foreign_budget)) {
    if (h->foreign_n[c] && h->foreign_n[c] >= h->foreign_max[c]) flush_class(h, c);
    // No cache, none for this class (yet, or its blocks are too large for
    // the budget): the remote-free protocol. (The empty heap always lands
    // here: its limits are 0.)
    if (h->foreign_max[c] == 0) return free_remote(s, p);
    if (h->foreign_bytes + bs > h->foreign_budget) foreign_flush(h);
  }
  static_cast<uintptr_t*>(p)[1] = cached_mark(p);
  pages::link_store(p, h->foreign[c]);
  h->foreign[c] = p;
  h->foreign_n[c]++;
  h->foreign_bytes += bs;
}

void* foreign_pop(Heap* h, unsigned c, void* b) {
  void* next = pages::link_load(b);
  if constexpr (kSecure || kPoisonFreed) {
    // The link must be null or another block of this class: anything else
    // means the program wrote into the freed block.
    Span* ns = next ? pages::span_of(next) : nullptr;
    if (next && (!ns || !is_block(ns, next) || ns->size_class != c)) bad_link(b);
  }
  if constexpr (kPoisonFreed) check_poison(pages::span_of(b), b);
  h->foreign[c] = next;
  h->foreign_n[c]--;
  h->foreign_bytes -= uint32_t(sc::kInfo[c].size);
  static_cast<uintptr_t*>(b)[1] = 0;  // clear the mark
  return b;
}

}  // namespace remalloc::heap
