// small heaps: the validator (remalloc_validate, the checked build).
//
// Checks the calling thread's heap and every abandoned heap whose collector
// lock it can take, against the invariants written in slabs.cpp and
// abandon.cpp (each slab on the list its flag says, of its class and owner,
// list links, only a slab on a full list is marked full and then holds no
// remote list, the remote count is the remote list's length, spares are
// empty,
// an abandoned heap holds only marked, non-empty slabs and no cached
// block, the foreign cache's lists and counts: foreign.cpp), each slab against the span/slab contract (pages::validate_span),
// and the registry (registry.cpp). Aborts with a message on the first
// inconsistency.
#include "heap/internal.h"

namespace remalloc::heap {

// Checks heap h's foreign cache (foreign.cpp; the owner, or the holder of
// an abandoned heap's collector lock: it must have none).
static void validate_foreign(Heap* h, bool abandoned) {
  size_t bytes = 0;
  for (unsigned c = 0; c < sc::kNumClasses; c++) {
    if (abandoned && (h->foreign[c] || h->foreign_max[c]))
      fatal("heaps: an abandoned heap keeps a foreign cache", h);
    uint32_t n = 0;
    for (void* b = h->foreign[c]; b; b = pages::link_load(b)) {
      Span* s = pages::span_of(b);
      if (!s || s->kind != kSpanSlab || !is_block(s, b) || s->size_class != c)
        fatal("heaps: a foreign cache holds what is not a block of its class", b);
      if (s->heap == h) fatal("heaps: a foreign cache holds a block of its own heap", b);
      if (static_cast<const uintptr_t*>(b)[1] != cached_mark(b))
        fatal("heaps: a block on a foreign cache lacks the cached mark", b);
      if (s->used == 0) fatal("heaps: a cached block's slab counts no block handed out", b);
      if (++n > kForeignMaxBlocks) fatal("heaps: a foreign list is longer than its limit (a cycle?)", b);
    }
    if (n != h->foreign_n[c]) fatal("heaps: a foreign list's count is not its length", h);
    if (h->foreign_max[c] > kForeignMaxBlocks) fatal("heaps: a foreign list's limit is out of range", h);
    bytes += size_t(n) * sc::kInfo[c].size;
  }
  if (bytes != h->foreign_bytes) fatal("heaps: the foreign cache's byte count is not its lists' bytes", h);
}

// Checks heap h's lists (its owner, or the holder of its collector lock).
static void validate_heap(Heap* h, bool abandoned) {
  for (unsigned c = 0; c < sc::kNumClasses; c++) {
    // The lists' own invariants (links, the avail list's sentinel head),
    // then each slab's.
    auto broken = [](const char* what, const Span* s) { fatal(what, s ? reinterpret_cast<void*>(s->start) : nullptr); };
    for (int list = 0; list < 2; list++) {
      auto each = [&](const Span* s) {
        if (s->kind != kSpanSlab || s->heap != h || s->size_class != c)
          fatal("heaps: a slab on this heap's lists is not its slab of this class", reinterpret_cast<void*>(s->start));
        if (bool(s->is_full) != (list == 1)) fatal("heaps: slab on the wrong list for its full flag", reinterpret_cast<void*>(s->start));
        // The remote list's count (one load: blocks under the head stay put
        // while other threads push) is its length. A slab on a full list is
        // marked (the word 1), unless a freer unmarked it; its first block
        // is then on (or on its way to) the delayed list, and the word
        // holds a list like an avail slab's (remote.cpp).
        uintptr_t v = s->remote.load(std::memory_order_acquire);
        if (v & 1) {
          if (list == 0 || v != 1)
            fatal("heaps: a slab's remote word is marked full off the full list, or marked with a list",
                  reinterpret_cast<void*>(s->start));
        } else {
          uint32_t n = 0;
          for (void* b = remote_head(v); b && n <= s->capacity; b = pages::link_load(b)) n++;
          if (n != remote_count(v))
            fatal("heaps: a slab's remote count is not the length of its remote list", reinterpret_cast<void*>(s->start));
          if (n > s->used) fatal("heaps: a slab's remote list is longer than its used count", reinterpret_cast<void*>(s->start));
        }
        if (abandoned && (list == 0 || s->used == 0))
          fatal("heaps: an abandoned heap holds a slab that is not marked full, or an empty one",
                reinterpret_cast<void*>(s->start));
        pages::validate_span(s, true);
      };
      if (list == 0)
        h->avail[c].validate(broken, each);
      else
        h->full[c].validate(broken, each);
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
  validate_foreign(h, abandoned);
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
    if (g_live_heaps.load(std::memory_order_relaxed) > g_heap_count)
      fatal("heaps: more heaps owned by threads than heaps", nullptr);
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

}  // namespace remalloc::heap
