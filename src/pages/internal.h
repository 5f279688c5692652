// page heap internals, shared by the files of pages/ only (never included
// from outside pages/: other layers use page_heap.h and span.h).
//
//   arena.cpp      arenas: reservation, the arena map, their validator
//   free_runs.cpp  free runs: bins, coalescing, searches, byte totals
//   purge.cpp      purging: decay list, dirty cap, healing of split VMAs
//   page_heap.cpp  the lock, allocation and free of spans, the accounting of
//                  live bytes, and the primitives of the relocation engine
//   relocate.cpp   the relocation engine: policy only (which primitive,
//                  which mover)
#pragma once
#include <atomic>

#include "base/lock.h"
#include "pages/page_heap.h"

namespace remalloc::pages {

extern Config g_config;  // written by configure() only
extern Mutex g_lock;     // guards everything below unless said otherwise

RM_INLINE size_t index_of(const Arena* a, const Span* s) { return size_t(s - a->meta); }

// ---- arenas (arena.cpp) ----------------------------------------------------
// A new arena with room for `npages` aligned to `align_pages`, in `region`;
// registered in the arena map, its pages one clean free run.
Arena* new_arena_locked(size_t npages, size_t align_pages, Region region);
// Arenas are committed (made read-write) from their start in steps of
// kCommitStep pages (2 MiB, so a huge block's interior is never split
// between committed and not), as runs are handed out.
constexpr size_t kCommitStep = kHugePageSize >> kPageShift;
// An arena trimmed for mlockall ends at a multiple of this many pages.
constexpr size_t kTrimStep = 16;
// Makes pages [0, end) of `a` read-write (rounded up to the step) and their
// descriptors usable; false when the kernel refuses (under
// mlockall(MCL_FUTURE), past RLIMIT_MEMLOCK): the caller fails cleanly.
// Call before carving a run that ends above a->committed.
bool commit_locked(Arena* a, size_t end);
// Releases the reserved, never-committed tail of every arena and of its
// descriptors, keeping at least one commit step: arenas end at their commit
// mark after it. For mlockall(MCL_CURRENT), which counts every mapped page
// against RLIMIT_MEMLOCK. Returns the bytes released.
size_t trim_reservations_locked();
// Resident bytes of the arena map (root and leaves).
size_t map_resident_locked();
extern Arena* g_arenas;  // all arenas, newest first
extern size_t g_arena_count;
extern size_t g_mapped_bytes;     // sum of arena bytes
extern size_t g_meta_bytes;       // sum of their metadata reservations
// Checks every arena: alignment, map entries, and that its runs tile it
// (each run's `back` entries and kinds). Returns bytes by kind.
struct ArenaTally {
  size_t free_bytes, large_bytes, slab_bytes, cached_bytes, runs, free_runs;
};
void validate_arenas_locked(ArenaTally* out);

// ---- the relocation engine's primitives (page_heap.cpp) -------------------
// Grows (claiming the free run that follows) or shrinks (returning the
// tail) a live large block to `new_pages`; false when growth finds no room.
bool resize_in_place(Span* s, size_t new_pages, size_t new_size);
// A run of `npages` for a block moving in (a live large block already, so
// the accounting holds), aligned to `align` plus `phase` pages, in
// `region`, preferring a place with free pages after it. nullptr if none.
Span* take_move_dst(size_t npages, size_t align, size_t phase, Region region, size_t new_size);
// Gives back a live large block whose pages were moved away (`clean`: they
// read as zeros now; `split`: a page move may have split its VMA).
void release_moved(Span* s, bool clean, bool split);
// A block moved in: `remapped` marks it as holding VMAs of its own (its
// pages came by mremap); the huge page policy advises its interior.
void moved_in(Span* d, bool remapped);

// The peak of bytes held for blocks (slabs and large), and those held now.
size_t peak_bytes_locked();
size_t held_bytes_locked();

// Relocation counters.
extern std::atomic<size_t> g_counters[kNumCounters];
RM_INLINE void count(Counter c, size_t n = 1) {
  g_counters[c].fetch_add(n, std::memory_order_relaxed);
}

}  // namespace remalloc::pages
