// small heaps: statistics (slabs and live blocks by class, heaps, abandoned
// heaps), for remalloc_stats. Reads other threads' counters without their
// owners' cooperation (racy, relaxed: figures only, never used to decide);
// an abandoned heap's lists are read under its collector lock, since the
// threads freeing into it change them.
#include "heap/internal.h"

namespace remalloc::heap {

void get_stats(Stats* out) {
  *out = Stats{};
  LockGuard g(g_heaps_lock);
  for (Heap* h = g_all_heaps; h; h = h->next_all) {
    out->heaps++;
    bool locked = h->state.load(std::memory_order_acquire) == kHeapAbandoned;
    if (locked) {
      out->abandoned++;
      collector_lock(h);
    }
    for (unsigned c = 0; c < sc::kNumClasses; c++) {
      for (int list = 0; list < 2; list++) {
        Span* s = list == 0 ? h->avail[c].first() : h->full[c].first();
        for (int guard = 0; s && s != &heap::g_empty_span && guard < 1000000; guard++) {
          uint32_t used = __atomic_load_n(&s->used, __ATOMIC_RELAXED);
          out->slabs++;
          out->slabs_by_class[c]++;
          out->live_by_class[c] += used;
          out->blocks_live += used;
          s = __atomic_load_n(&s->next, __ATOMIC_RELAXED);
        }
      }
      // Blocks on this heap's foreign cache are counted as handed out in
      // their slabs (of other heaps): free for the program.
      size_t cached = __atomic_load_n(&h->foreign_n[c], __ATOMIC_RELAXED);
      out->cached_by_class[c] += cached;
      out->blocks_cached += cached;
      if (__atomic_load_n(&h->spare[c], __ATOMIC_RELAXED)) {
        out->slabs++;
        out->slabs_by_class[c]++;
      }
    }
    if (locked) collector_unlock(h);
  }
  // The counts are read at different moments: never below zero.
  for (unsigned c = 0; c < sc::kNumClasses; c++) {
    size_t k = out->cached_by_class[c] < out->live_by_class[c] ? out->cached_by_class[c] : out->live_by_class[c];
    out->live_by_class[c] -= k;
    out->blocks_live -= k;
  }
}

}  // namespace remalloc::heap
