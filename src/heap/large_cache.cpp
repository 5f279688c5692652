// small heaps: the per-thread cache of freed large blocks.
//
// Each heap keeps up to Heap::kLargeCacheSlots freed large blocks of at
// most kLargeCacheMaxPages pages, reused without the page-heap lock. A
// cached block stays allocated in the page heap (its bytes are counted as
// in use) with kind kSpanCached, flipped with relaxed atomic stores (the
// page heap reads neighbours' kinds atomically: a cached block is never
// coalesced). Slots are replaced round-robin; the block pushed out goes to
// the page heap. An abandoned heap caches nothing (thread_done flushes).
#include "heap/internal.h"

namespace remalloc::heap {

Span* large_cache_get(size_t npages) {
  Heap* h = tl_heap;
  const size_t guard = pages::guard_tail_pages();  // the secure build's span has a guard page more
  for (unsigned i = 0; i < Heap::kLargeCacheSlots; i++) {
    Span* s = h->large_cache[i];
    if (s && s->npages - guard >= npages && s->npages - guard - npages <= npages / 8) {
      h->large_cache[i] = nullptr;
      __atomic_store_n(&s->kind, uint8_t(kSpanLarge), __ATOMIC_RELAXED);
      return s;
    }
  }
  return nullptr;
}

bool large_cache_put(Span* s) {
  Heap* h = tl_heap;
  if (h == &g_empty_heap || s->npages - pages::guard_tail_pages() > kLargeCacheMaxPages) return false;
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

void large_cache_flush(Heap* h) {
  for (unsigned i = 0; i < Heap::kLargeCacheSlots; i++) {
    if (Span* s = h->large_cache[i]) {
      h->large_cache[i] = nullptr;
      __atomic_store_n(&s->kind, uint8_t(kSpanLarge), __ATOMIC_RELAXED);
      pages::free_span(s);
    }
  }
}

void large_cache_flush_current() {
  Heap* h = tl_heap;
  if (h == &g_empty_heap) return;
  large_cache_flush(h);
  // Empty slabs hold pages in the middle of arenas.
  release_empty_slabs(h);
}

}  // namespace remalloc::heap
