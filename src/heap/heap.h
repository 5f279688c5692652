// small heaps: the front door of heap/ (the Heap, the fast paths, and the
// calls the api layer makes). Per-thread heaps of slabs with a lock-free
// local fast path.
//
// Each thread owns a Heap (found through an initial-exec thread_local that
// starts at a constant-initialised empty heap, so the first call takes the
// slow path and sets things up; nothing depends on static constructors).
// A heap keeps, per size class, a list of slabs with free blocks (the first
// is the current one) and a list of full slabs.
//
// Frees by the owner push onto the slab's free list (no atomics). Frees by
// other threads take the remote-free protocol (remote.cpp). At thread exit
// the heap is sealed and abandoned (abandon.cpp); the next new thread adopts
// it. Heaps are never unmapped, so a slab's owner pointer stays valid
// forever. heap/internal.h lists the files of the layer and what each owns;
// each file's header comment states its invariants.
#pragma once
#include <atomic>

#include "base/list.h"
#include "heap/size_classes.h"
#include "pages/page_heap.h"

namespace remalloc {

namespace heap {
// The slab with no free blocks that stands for "no slab" in avail lists, so
// the fast path needs no null check.
extern Span g_empty_span;
}  // namespace heap

// A heap's lists of slabs of one class, linked through Span::next/prev. The
// avail list's head is the empty span when it has none (never null: the
// fast path reads its free list unchecked); the full list's is null.
using AvailList = IntrusiveList<Span, &Span::next, &Span::prev, false, &heap::g_empty_span>;
using FullList = IntrusiveList<Span, &Span::next, &Span::prev, false>;

// States of a heap (Heap::state).
enum : uint32_t { kHeapLive = 0, kHeapAbandoned = 1, kHeapBackstop = 2 };

// Bytes between two looks at the profiling switch while profiling is off.
constexpr int64_t kProfIdleBytes = int64_t{1} << 20;

struct Heap {
  constexpr Heap() {
    for (unsigned c = 0; c < sc::kNumClasses; c++) slabs_made[c] = 0;
  }
  static constexpr unsigned kLargeCacheSlots = 8;
  // Heap profiling (prof/): the bytes this heap's thread may still allocate
  // before its next sample. malloc_fast subtracts each block's size and
  // leaves the block to the slow path when the count goes negative; the
  // slow path counts what it hands out itself. While profiling is off the
  // count starts at kProfIdleBytes, after which prof/ looks again.
  // prof_gen: the profiling generation this count was drawn for (prof/).
  int64_t prof_left = kProfIdleBytes;
  uint32_t prof_gen = 0;
  AvailList avail[sc::kNumClasses];  // front() never null: the empty span when none
  // Recently freed large blocks of at most kLargeCacheMaxPages, kept for
  // reuse without the page-heap lock (kind kSpanCached).
  Span* large_cache[kLargeCacheSlots] = {};
  uint32_t large_cache_next = 0;
  FullList full[sc::kNumClasses];
  // One empty slab per class kept back from the page heap (null when none):
  // a program that frees and allocates the same sizes in turn reuses its
  // pages without page-heap calls, purges and fresh page faults.
  Span* spare[sc::kNumClasses] = {};
  // Blocks freed by other threads into slabs marked full (remote bit 0),
  // linked through their first word; any thread pushes (CAS), only the
  // owner (of an abandoned heap: the holder of `collector`) takes the list
  // (exchange). In an abandoned heap every slab is marked full, so this list
  // holds every free not yet given back.
  std::atomic<uintptr_t> delayed{0};
  Heap* next_all = nullptr;
  Heap* next_abandoned = nullptr;  // the abandoned list (g_heaps_lock)
  // kHeapLive (owned by its thread), kHeapAbandoned (owned by whoever holds
  // `collector`), kHeapBackstop (owned by the backstop lock's holder).
  // Made abandoned by its exiting thread (under g_heaps_lock), live again by
  // the thread that adopts it (under `collector`); read without a lock by
  // threads that free into the heap.
  // Invariants while abandoned (heap::validate_current checks them):
  // the avail lists, spares and the large cache are empty; every slab is on
  // a full list with `remote` exactly 1 (marked, no list) and used > 0 (a
  // slab that empties is given back at once).
  std::atomic<uint32_t> state{kHeapLive};
  // While abandoned: 1 while a thread owns the heap to give frees back (or
  // to adopt it). Taken and released with sequentially consistent
  // exchanges: a thread that pushed onto `delayed` and found it taken
  // leaves its block to the holder, which looks at `delayed` again after
  // letting go.
  std::atomic<uint32_t> collector{0};
  uint32_t id = 0;
  // The foreign cache (foreign.cpp): blocks of other heaps' slabs that this
  // heap's thread freed, kept per class for its own next allocations of
  // that class instead of going back to their owners at once; linked
  // through their first word, newest first. Used only while many more
  // threads own heaps than there are CPUs (foreign.cpp says why).
  // foreign_n[c]: the length of foreign[c]. foreign_max[c]: the most it may
  // hold: 0 until this thread's refill of the class finds the list empty
  // while the cache is in use, then doubling at each such refill up to
  // kForeignMaxBlocks (a thread that only frees a class keeps none of it).
  // foreign_bytes: the bytes on all lists; foreign_budget: the most they
  // may be (its share of the process's budget, set at each refill).
  // Invariants (validate.cpp): every block on foreign[c] is a block of
  // class c of a slab whose heap is not this one, carries the cached mark
  // (cached_mark below) and is counted in its slab's `used` (its owner sees
  // it as handed out); foreign_n[c] is the list's length, at most
  // kForeignMaxBlocks; foreign_bytes is the lists' bytes. A push makes
  // room first (a list at foreign_max[c], or bytes at the budget, go home),
  // so the limits hold after it; a refill may lower them below what is
  // held until the next push. The empty heap and the backstop heap have
  // empty lists and every foreign_max 0, and so does an abandoned heap.
  uint32_t foreign_bytes = 0;
  uint32_t foreign_budget = 0;
  void* foreign[sc::kNumClasses] = {};
  uint16_t foreign_n[sc::kNumClasses] = {};
  uint16_t foreign_max[sc::kNumClasses] = {};
  // Slabs made per class, up to the class's full size: a heap's first slabs
  // of a class are smaller (sc::slab_pages_nth), so that a thread with a few
  // blocks in many classes holds few pages of slabs and descriptors.
  uint8_t slabs_made[sc::kNumClasses];
};

namespace heap {

extern Heap g_empty_heap;
// __thread, not thread_local: no dynamic initialisation, so no TLS wrapper
// call on the fast path.
extern __thread Heap* tl_heap;

void* malloc_slow(size_t size);
void free_local_slow(Heap* h, Span* s);
void free_remote(Span* s, void* p);
// A free by heap h's thread of a block of another heap's slab: onto h's
// foreign cache, or the remote-free protocol (foreign.cpp).
void free_foreign(Heap* h, Span* s, void* p);
// The foreign caches' budget: `total` bytes for all threads together
// (0: off), used while more than `min_heaps` threads own heaps.
void configure_foreign(size_t total, uint32_t min_heaps);
size_t foreign_total();
uint32_t foreign_min_heaps();
// Thread start-up and teardown.
void thread_done(Heap* h);
// malloc_trim: gives back what frees left on abandoned heaps' lists (their
// slabs that empty go back to the page heap). Returns slabs released.
size_t trim_abandoned();
void fork_prepare();
void fork_parent();
void fork_child();

// Double-free detection. A freed small block carries a mark in its second
// word (blocks are at least 16 bytes): its address mixed with a constant.
// malloc clears the word, so a live block holds the mark only if the program
// wrote it there. A free or realloc that finds the mark takes the slow check:
// the owner scans the slab's lists and the heap's delayed list to confirm; a
// thread that does not own the slab takes the mark as proof (the program
// would have to have written this block's own mark into it).
// A block on another heap's foreign cache (foreign.cpp) carries the cached
// mark instead: the free mark with bit 0 cleared (the free mark's bit 0 is
// the key's, 1, as blocks are 16-byte aligned). Only the thread that cached
// it can find it, so any thread takes that mark as proof.
constexpr uintptr_t kFreeMarkKey = 0x9d3b5f2a6c718e43ull;
static_assert(kFreeMarkKey & 1);
RM_INLINE uintptr_t free_mark(const void* p) {
  return reinterpret_cast<uintptr_t>(p) ^ kFreeMarkKey;
}
RM_INLINE uintptr_t cached_mark(const void* p) { return free_mark(p) ^ 1; }
// Either mark (one compare: they differ in bit 0 only).
RM_INLINE bool has_free_mark(const void* p) {
  return (static_cast<const uintptr_t*>(p)[1] ^ free_mark(p)) <= 1;
}
// p carries the mark: is it really free? Reports it through g_on_invalid
// (`what` names the call) and returns true when it is.
RM_NOINLINE bool check_marked(Span* s, void* p, const char* what);
// How invalid pointers are reported: the api layer installs its handler
// (abort or counted warning, by option); until then, abort.
extern void (*g_on_invalid)(const void* p, const char* what);
// Called after a free emptied a slab and gave it back to the page heap, with
// no lock held (api: starts the background purger when it is due). May be
// null.
extern void (*g_on_slab_released)();

// The checked build (REMALLOC_DEBUG >= 3) poisons freed small blocks past
// their two link words and checks the poison and the link when the block is
// handed out again: a write into a freed block, or past the end of the block
// before it, is reported with the address and aborts.
#if REMALLOC_DEBUG >= 3
constexpr bool kPoisonFreed = true;
#else
constexpr bool kPoisonFreed = false;
#endif
constexpr uint8_t kPoisonByte = 0xdf;
void poison_freed(Span* s, void* p);
void check_handed_out(Span* s, void* b);
// The poison part of check_handed_out (blocks off a foreign cache, whose
// links lead to other slabs).
void check_poison(Span* s, void* b);

// Secure build: the decoded link of free block b must be null or a block
// of the same slab; anything else means the link was overwritten (abort).
RM_COLD void bad_link(void* b);
RM_INLINE void check_link(const Span* s, void* b, void* next);

// Hands out the first block of slab s's free list (which must not be
// empty): the owner's only way to take a block, fast path and slow path.
RM_INLINE void* pop_block(Span* s) {
  void* b = s->free_list;
  if constexpr (kPoisonFreed) check_handed_out(s, b);
  void* next = pages::link_load(b);
  if constexpr (kSecure) check_link(s, b, next);
  s->free_list = next;
  s->used++;
  static_cast<uintptr_t*>(b)[1] = 0;  // clear the free mark
  return b;
}

// The small-block fast path: a block of class_of(size) from this thread's
// current slab, or nullptr (the caller takes the slow path): no free block
// in the slab (the profiling count is then untouched), or the profiling
// count went negative (a sample is due, or prof/ must look at its switch).
// The empty heap's slabs have no free block, so its count never changes.
RM_INLINE void* malloc_fast(size_t size) {
  Heap* h = tl_heap;
  Span* s = h->avail[sc::class_of(size)].front();
  if (RM_LIKELY(s->free_list) && RM_LIKELY((h->prof_left -= int64_t(size)) >= 0)) return pop_block(s);
  return nullptr;
}

// Is p a block boundary of slab s?
// (False for every span that is not a slab: their slab_bytes is 0.)
RM_INLINE bool is_block(const Span* s, const void* p) {
  uint64_t off = reinterpret_cast<uintptr_t>(p) - s->start;
  if (RM_UNLIKELY(off >= s->slab_bytes)) return false;
  uint64_t q = (off * s->recip) >> 32;
  return uint32_t(q) * s->block_size == uint32_t(off);
}

// free_small's path for a block that carries the free mark (out of line, so
// that the fast path makes no call it must return from: no registers saved).
void free_small_marked(Span* s, void* p);

RM_INLINE void check_link(const Span* s, void* b, void* next) {
  if (RM_UNLIKELY(next && !is_block(s, next))) bad_link(b);
}

RM_INLINE void free_small(Span* s, void* p) {
  if (RM_UNLIKELY(has_free_mark(p))) return free_small_marked(s, p);
  static_cast<uintptr_t*>(p)[1] = free_mark(p);
  if constexpr (kPoisonFreed) poison_freed(s, p);
  Heap* h = tl_heap;
  if (RM_LIKELY(s->heap == h)) {
    pages::link_store(p, s->free_list);
    s->free_list = p;
    if (RM_UNLIKELY(--s->used == 0 || s->is_full)) free_local_slow(h, s);
    return;
  }
  free_foreign(h, s, p);
}

constexpr size_t kLargeCacheMaxPages = 256;  // 1 MiB
// A cached large block of npages..npages+npages/8 pages, or nullptr.
Span* large_cache_get(size_t npages);
// Keeps a large block for reuse; false when this thread cannot (the caller
// then frees it to the page heap).
bool large_cache_put(Span* s);
// Gives this thread's cached large blocks back to the page heap.
// Also releases the heap's empty slabs (spares and empty slabs on its avail
// lists): malloc_trim, and large allocations that found no address space.
void large_cache_flush_current();

// Checks the calling thread's heap (every slab on its lists against the
// span/slab contract, list links, kinds and owners) and the registry of
// heaps; aborts with a message on the first inconsistency.
void validate_current();

// blocks_live, live_by_class: blocks handed out to the program (not those
// on foreign caches, nor blocks freed that wait on remote or delayed lists,
// which count as live until their owners take them in).
// blocks_cached, cached_by_class: blocks on the foreign caches.
struct Stats {
  size_t heaps, abandoned, slabs, blocks_live, blocks_cached;
  size_t live_by_class[sc::kNumClasses];
  size_t slabs_by_class[sc::kNumClasses];
  size_t cached_by_class[sc::kNumClasses];
};
void get_stats(Stats* out);

}  // namespace heap
}  // namespace remalloc
