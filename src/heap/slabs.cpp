// small heaps: slabs and their lists in one heap.
//
// A heap keeps, per size class, an avail list (slabs that may have free
// blocks; the first is the current slab, whose free list the fast path
// pops), a full list (slabs the owner found without a free block and marked
// full: bit 0 of `remote`, so other threads' frees go to the heap's delayed
// list) and one spare (an empty slab kept back from the page heap).
//
// Invariants (validate.cpp checks them):
// - a slab is on exactly one list of its owner heap, or is its spare, and
//   its size_class is the list's class;
// - is_full == 1 iff it is on the full list; `remote` == 1 (the flag, no
//   blocks: it is set only when the remote list is empty) only then. A full
//   slab's word is 1 until the first free by another thread unmarks it
//   and sends that block to the delayed list (remote.cpp); the owner moves
//   the slab back to its avail list when it takes that block in;
// - used = blocks handed out and not yet given back to the owner; a slab
//   whose `used` reaches 0 is given back (or kept as the spare) unless it
//   is the current slab of its class;
// - the free list holds only blocks of the slab below `bump`; blocks at
//   and above `bump` were never handed out and are linked a page at a time
//   (extend), so a fresh slab is touched only as it fills; and only when
//   the slab behind the current one has no block to give (free or remote).
// Only the owner (or the holder of the backstop lock, or of an abandoned
// heap's collector lock) reads or writes a slab's lists and counters.
#include <new>

#include "heap/internal.h"
#include "heap/size_classes.h"

namespace remalloc::heap {

Span g_empty_span;

void release_slab(Span* s) {
  // free_span() takes off the secure build's guard page.
  s->heap = nullptr;
  s->slab_bytes = 0;
  pages::free_span(s);
}

void free_local_slow(Heap* h, Span* s) {
  if (s->is_full) {
    full_remove(h, s);
    unmark_full(s);  // unless the freer that sent this block did
    avail_push_second(h, s);
  }
  if (s->used == 0 && h->avail[s->size_class].front() != s) {
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

void release_spares(Heap* h) {
  for (unsigned c = 0; c < sc::kNumClasses; c++) {
    if (Span* s = h->spare[c]) {
      h->spare[c] = nullptr;
      release_slab(s);
    }
  }
}

void release_empty_slabs(Heap* h) {
  // Cached blocks of other heaps go home first: their slabs may empty.
  foreign_flush(h);
  drain_delayed(h);
  for (unsigned c = 0; c < sc::kNumClasses; c++) {
    for (Span* s = h->avail[c].first(); s;) {
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

// Links a page worth of never-used blocks (one block for classes of a page
// or more) into the free list, so a fresh slab is touched only as it fills:
// linking a block writes its first words, and each page written stays
// resident. Those of the pages written that were never resident are
// populated first in one system call (pages::prefault), which costs less
// than the fault each would take (6-7 us against 10 here). The secure build
// links them in a random order (shuffle.cpp).
void extend(Span* s) {
  uint32_t bs = s->block_size;
  uint32_t n = uint32_t(kPageSize / bs);
  if (n < 1) n = 1;
  if (n > s->capacity - s->bump) n = s->capacity - s->bump;
  char* first = reinterpret_cast<char*>(s->start) + size_t(s->bump) * bs;
  // The pages the links below write (each block's first two words), but
  // for one an earlier block shares (likely written by now): populated in
  // one call where they are fresh, rather than a fault each. Not the rest
  // of a block that runs onto later pages: the program may never write it.
  uintptr_t from = align_up(reinterpret_cast<uintptr_t>(first), kPageSize);
  uintptr_t to = align_up(reinterpret_cast<uintptr_t>(first) + size_t(n - 1) * bs + 2 * sizeof(uintptr_t), kPageSize);
  if (from < to) pages::prefault(s, from, to);
  if constexpr (kSecure) {
    if (link_shuffled(s, first, n, bs)) {
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
  if (npages > ci.many_pages && g_live_heaps.load(std::memory_order_relaxed) > sc::kManyHeaps) npages = ci.many_pages;
  Span* s = pages::alloc_slab(npages);  // plus the secure build's guard page, installed
  if (!s) return nullptr;
  if (made < sc::kSlabGrowthSteps) h->slabs_made[c] = uint8_t(made + 1);
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

static void* pop(Span* s) { return pop_block(s); }

void* heap_alloc(Heap* h, unsigned c) {
  // A block this thread freed into its foreign cache, likely still hot.
  if (void* b = h->foreign[c]) return foreign_pop(h, c, b);
  foreign_refill(h, c);
  drain_delayed(h);
  for (;;) {
    Span* s = h->avail[c].first();
    if (!s) break;
    if (s->free_list) return pop(s);
    if (collect_remote(s)) return pop(s);
    if (s->bump < s->capacity) {
      // Blocks already touched before fresh pages: a slab behind this one
      // that got blocks back (the drain puts such slabs second) becomes
      // the current one, and this one, not yet full, stays second.
      if (Span* n = s->next; n && (n->free_list || n->remote.load(std::memory_order_relaxed))) {
        avail_remove(h, n);
        avail_push_front(h, n);
        continue;
      }
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

}  // namespace remalloc::heap
