// page heap: internals shared by arena.cpp, page_heap.cpp and relocate.cpp.
#pragma once
#include <atomic>

#include "base/lock.h"
#include "pages/page_heap.h"

namespace remalloc::pages {

// Settings the api layer passes down (options); read without the lock.
struct Config {
  uint64_t purge_delay_ns = 10'000'000;       // 10 ms
  size_t arena_bytes = size_t{256} << 20;     // default reservation
  size_t move_threshold = size_t{128} << 10;  // copy below this size
  size_t huge_threshold = size_t{2} << 20;    // 2 MiB-aligned at or above
  int mover = -1;                             // -1 auto, else movers::Kind
  bool hugepage = false;                      // MADV_HUGEPAGE on huge blocks
  size_t shrink_slack_pages = 0;              // shrink only when freeing more
  bool grow_inplace = true;                   // claim following free pages
  size_t dirty_max = size_t{1024} << 20;      // purge at once past this
  bool grow_headroom = true;                  // moved blocks get room to grow
};
extern Config g_config;

extern Mutex g_lock;

// ---- arenas (arena.cpp) ----
// A new arena with room for `npages` aligned to `align_pages`, in `region`;
// registered in the arena map. Lock held.
Arena* new_arena_locked(size_t npages, size_t align_pages, Region region);
extern Arena* g_arenas;  // all arenas, newest first
extern size_t g_arena_count;
extern size_t g_mapped_bytes;

// ---- free runs (page_heap.cpp) ----
// Carves a run of npages aligned to align_pages from the free pool of
// `region` (making a new arena when needed). `room_after`: prefer a place
// with free pages after it (for blocks that grow). The result has kind
// kSpanNone and keeps the free run's flags in `flags` (dirty/split).
// With `phase`, the run starts `phase` pages past an align boundary (so a
// moved block keeps its offset inside 2 MiB and the kernel can move whole
// page-table pages).
Span* take_run_locked(size_t npages, size_t align_pages, Region region, bool room_after,
                      size_t phase = 0);
// Returns pages [idx, idx+n) of arena `a` to the free pool.
void put_run_locked(Arena* a, size_t idx, size_t n, uint8_t flags, uint64_t now);
// Removes free run `f` from its lists (to claim it).
void unlink_free_locked(Span* f);
void maybe_purge_locked(uint64_t now);
// Heals all split free runs (takes the lock); false if there were none.
bool heal_for_budget();
// The free run starting at page idx of a, or nullptr.
Span* free_run_at(Arena* a, size_t idx);
// Makes pages [idx, idx+n) one free run without coalescing.
// Dirty/split pages lie within [lo, hi) (clipped to the run).
Span* make_free(Arena* a, size_t idx, size_t n, uint8_t flags, uint64_t t, size_t lo, size_t hi);
// Marks a span as a live large block of `npages`.
void init_large(Span* s, size_t npages, size_t requested);

RM_INLINE size_t index_of(const Arena* a, const Span* s) { return size_t(s - a->meta); }

// Live-data counters (lock held); note_peak_locked updates g_peak_bytes.
void note_peak_locked();
extern size_t g_large_live, g_large_bytes, g_slab_bytes, g_slabs, g_peak_bytes;

// Relocation counters.
extern std::atomic<size_t> g_reloc[12];
enum RelocCounter {
  kRealloc_inplace, kGrow_inplace, kShrink_inplace, kMoves_mremap, kMoves_uffd, kMoves_copy,
  kBytes_moved, kBytes_copied, kFallback_budget, kFallback_error, kFallback_fork, kFallback_small
};
RM_INLINE void count(RelocCounter c, size_t n = 1) {
  g_reloc[c].fetch_add(n, std::memory_order_relaxed);
}

}  // namespace remalloc::pages
