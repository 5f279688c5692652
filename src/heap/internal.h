// small heaps: what the files of heap/ share, and nothing outside heap/
// includes (the front door is heap.h; the component tests include this too).
//
// Files and what each owns:
//   slabs.cpp       the avail, full and spare lists of a heap, making and
//                   releasing slabs, linking fresh blocks, the refill
//                   (heap_alloc) and the owner's slow free
//   remote.cpp      the remote-free protocol: frees by other threads, the
//                   slab's `remote` list and the heap's `delayed` list
//   foreign.cpp     the foreign cache: blocks of other heaps that a thread
//                   freed, kept for its own next allocations
//   abandon.cpp     abandoned heaps: sealing, the collector lock, frees
//                   given back by other threads, adoption's unsealing, trim
//   registry.cpp    the registry of heaps, thread start-up and exit, the
//                   slow path's entry (malloc_slow)
//   backstop.cpp    the shared, locked heap of threads past their teardown
//   fork.cpp        the fork handlers
//   shuffle.cpp     the secure build's random order of fresh blocks
//   checks.cpp      double and invalid frees, poisoning of freed blocks
//   large_cache.cpp the per-thread cache of freed large blocks
//   validate.cpp    the validator of heaps and the registry
//   stats.cpp       the statistics of heaps
//
// Lock order: g_backstop_lock, then g_heaps_lock, then a heap's collector
// lock, then the page heap's lock. A thread never holds two collector locks.
#pragma once
#include <atomic>

#include "base/lock.h"
#include "heap/heap.h"

namespace remalloc::heap {

// ---- registry.cpp -------------------------------------------------------------
// A thread's life: kThreadNew until its first slow path attaches a heap,
// kThreadLive while it owns one, kThreadDead after its teardown (it then
// allocates from the backstop heap).
enum : uint8_t { kThreadNew = 0, kThreadLive = 1, kThreadDead = 2 };
extern __thread uint8_t tl_state;

// g_heaps_lock guards the registry (g_all_heaps, g_heap_count), the abandoned
// list (g_abandoned, Heap::next_abandoned) and the pool Heaps come from.
extern Mutex g_heaps_lock;
extern Heap* g_all_heaps;      // every heap ever made, linked by next_all
extern Heap* g_abandoned;      // heaps of exited threads, not yet adopted
extern size_t g_heap_count;    // length of g_all_heaps
// Heaps owned by a thread: +1 when a thread attaches one (new or adopted),
// -1 when it abandons it (written under g_heaps_lock; read without it by
// new_slab, which sizes slabs by it: size_classes.h, kManyHeaps).
// <= g_heap_count.
extern std::atomic<uint32_t> g_live_heaps;
// A fresh heap from the pool, registered (g_heaps_lock held); null when out
// of memory. Heaps are never freed.
Heap* new_heap_locked();

// ---- backstop.cpp -------------------------------------------------------------
extern Mutex g_backstop_lock;  // held while the backstop heap is used
void* backstop_alloc(unsigned c);

// ---- slabs.cpp ----------------------------------------------------------------
// Lists of slabs, per class. Avail lists use g_empty_span as "none" (the
// fast path needs no null check); full lists use null. A slab is on exactly
// one list of its owner (avail or full), or is the owner's spare, or is
// given back. is_full says which list.
RM_INLINE void avail_push_front(Heap* h, Span* s) { h->avail[s->size_class].push_front(s); }

// Inserts after the current slab (so the current one stays hot).
RM_INLINE void avail_push_second(Heap* h, Span* s) {
  AvailList& l = h->avail[s->size_class];
  if (l.empty())
    l.push_front(s);
  else
    l.insert_after(l.front(), s);
}

RM_INLINE void avail_remove(Heap* h, Span* s) { h->avail[s->size_class].remove(s); }

RM_INLINE void full_push(Heap* h, Span* s) {
  h->full[s->size_class].push_front(s);
  s->is_full = 1;
}

RM_INLINE void full_remove(Heap* h, Span* s) {
  h->full[s->size_class].remove(s);
  s->is_full = 0;
}

// Gives slab s back to the page heap (it must be on no list).
void release_slab(Span* s);
// Gives the spare slabs back to the page heap.
void release_spares(Heap* h);
// Gives back every empty slab of h (spares, and empty slabs on the avail
// lists) after taking in the delayed and remote frees. Owner only.
void release_empty_slabs(Heap* h);
// Links a page worth of never-used blocks of slab s into its free list.
void extend(Span* s);
// A free block of class c from heap h (its owner, or the backstop lock's
// holder): from the current slab, its remote frees, fresh blocks, the next
// slabs, the spare or a new slab; null when out of memory.
void* heap_alloc(Heap* h, unsigned c);

// ---- remote.cpp ---------------------------------------------------------------
// Pushes p onto h's delayed list (sequentially consistent; see remote.cpp).
void push_delayed(Heap* h, void* p);

// The slab's `remote` word: the head of the list of blocks freed by other
// threads in its low 48 bits (user addresses are below 2^47, as the arena
// map assumes), how many blocks the list holds in its top 16 (a slab holds
// at most 65535 blocks: size_classes.h), and bit 0 the "marked full" flag
// (the word is then exactly 1). Each push adds one to the count in the same
// CAS, so the owner takes list and count with one exchange and does not
// walk the list: its blocks were last written by other threads, and the
// walk was a chain of cache misses, one per block (half the refill's time
// on a producer/consumer workload).
constexpr unsigned kRemoteCountShift = 48;
constexpr uintptr_t kRemoteCountOne = uintptr_t{1} << kRemoteCountShift;
constexpr uintptr_t kRemotePtrMask = kRemoteCountOne - 1;
RM_INLINE void* remote_head(uintptr_t v) { return reinterpret_cast<void*>(v & kRemotePtrMask); }
RM_INLINE uint32_t remote_count(uintptr_t v) { return uint32_t(v >> kRemoteCountShift); }

// Puts the list of a remote word taken whole (v, by exchange) in front of
// slab s's free list and counts its blocks as given back; returns how many
// (owner only).
RM_INLINE uint32_t take_remote_list(Span* s, uintptr_t v) {
  void* list = remote_head(v);
  if (!list) return 0;
  uint32_t n = remote_count(v);
  if (s->free_list) {
    void* tail = list;
    while (void* nx = pages::link_load(tail)) tail = nx;
    pages::link_store(tail, s->free_list);
  }
  s->free_list = list;
  s->used -= n;
  return n;
}
// Moves slab s's remote frees onto its free list with one exchange and
// returns how many (owner only; s must not be marked full). Walks the list
// only when the free list is not empty (to find its tail), which the
// refill never asks for.
RM_INLINE uint32_t collect_remote(Span* s) {
  if (s->remote.load(std::memory_order_relaxed) == 0) return 0;
  return take_remote_list(s, s->remote.exchange(0, std::memory_order_acquire));
}
// Clears slab s's "marked full" word (1 -> 0) when it is set; a word a
// freer already unmarked, which may hold a list, stays as it is.
RM_INLINE void unmark_full(Span* s) {
  uintptr_t marked = 1;
  s->remote.compare_exchange_strong(marked, 0, std::memory_order_acq_rel, std::memory_order_relaxed);
}

// Takes in h's delayed list: each block back to its slab (owner only).
void drain_delayed_list(Heap* h);
RM_INLINE void drain_delayed(Heap* h) {
  if (h->delayed.load(std::memory_order_relaxed) != 0) drain_delayed_list(h);
}

// ---- foreign.cpp --------------------------------------------------------------
// A foreign list holds at most this many blocks, and a thread's cache at
// most kForeignMaxBudget bytes.
constexpr uint16_t kForeignMaxBlocks = 1024;
constexpr uint32_t kForeignMaxBudget = 4u << 20;
// Hands out the first block of h's foreign list of class c, b (not null).
void* foreign_pop(Heap* h, unsigned c, void* b);
// The refill of class c found h's foreign list empty: the list's limit
// doubles while the cache is in use, and drops to 0 while it is not.
void foreign_grow(Heap* h, unsigned c);
// More threads must own heaps than this for the cache to be in use
// (UINT32_MAX while it is off).
extern std::atomic<uint32_t> g_foreign_min_heaps;
// foreign_grow when there is anything to do: the cache in use, or a limit
// to close. Inline, two loads and a compare while the cache is off: the
// refill of a class of page-sized blocks runs at every block.
RM_INLINE void foreign_refill(Heap* h, unsigned c) {
  if (RM_UNLIKELY(g_live_heaps.load(std::memory_order_relaxed) >
                      g_foreign_min_heaps.load(std::memory_order_relaxed) ||
                  h->foreign_max[c]))
    foreign_grow(h, c);
}
// Sends every block of h's foreign cache to its owner (remote frees).
void foreign_flush(Heap* h);
// foreign_flush, then no cache until the next refill grows one (a thread
// leaving its heap).
void foreign_close(Heap* h);

// ---- abandon.cpp --------------------------------------------------------------
bool collector_try_lock(Heap* h);
void collector_unlock(Heap* h);
void collector_lock(Heap* h);  // waits (the adopter, statistics)
// A free into a slab of abandoned heap h.
void free_to_abandoned(Heap* h, Span* s, void* p);
// Gives back what waits on abandoned heap h's delayed list (see abandon.cpp).
void collect_abandoned(Heap* h, size_t released = 0);
// Thread exit: every slab of h marked full and on a full list.
void seal(Heap* h);
// Adoption: slabs with free blocks back on the avail lists.
void unseal(Heap* h);

// ---- large_cache.cpp ----------------------------------------------------------
void large_cache_flush(Heap* h);

// ---- shuffle.cpp --------------------------------------------------------------
// Secure build: links the n blocks of size bs from `first` into s's free
// list in a random order. False when n is too large for it (the caller then
// links them in order).
bool link_shuffled(Span* s, char* first, uint32_t n, uint32_t bs);

}  // namespace remalloc::heap
