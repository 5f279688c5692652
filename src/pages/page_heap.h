// page heap: runs of pages for slabs and large blocks, free runs with
// coalescing, purging with a decay delay, and the relocation engine for
// large blocks (relocate.cpp).
//
// Thread safety: one mutex guards the run structures; page moves run outside
// it (the mover's source and destination runs belong to the caller).
#pragma once
#include <cstddef>

#include "pages/span.h"

namespace remalloc::pages {

enum Region : uint8_t { kRegionNormal = 0, kRegionUffd = 1, kNumRegions = 2 };

// A large block of `npages` pages whose start is aligned to `align_pages`
// (power of two). Returns nullptr when address space runs out.
Span* alloc_large(size_t npages, size_t align_pages, size_t requested, bool* zeroed = nullptr);
// A slab of `npages` pages (every page's `back` set).
Span* alloc_slab(size_t npages);
// Gives a large block or a slab back; it coalesces with free neighbours.
void free_span(Span* s);

// Is p the start of a live large block? (for free/realloc validation)
RM_INLINE bool is_large_start(const Span* s, const void* p) {
  return s->kind == kSpanLarge && s->start == reinterpret_cast<uintptr_t>(p);
}

// realloc of a large block (relocate.cpp): returns the block's new address
// (maybe the same), or nullptr with the block untouched.
void* realloc_large(Span* s, size_t new_size);

// Runs the purge of runs whose delay passed; `all` purges every dirty run.
// Returns bytes purged.
size_t purge(bool all);

// fork: take the lock before, release in the parent, reset in the child.
void fork_prepare();
void fork_parent();
void fork_child();

struct Stats {
  size_t mapped, arenas, large_live, large_bytes, slab_bytes, slabs, free_bytes,
      dirty_bytes, purged_bytes, peak_bytes, heals;
};
void get_stats(Stats* out);

// Relocation engine counters (relaxed atomics, readable at any time).
struct RelocStats {
  size_t realloc_inplace, grow_inplace, shrink_inplace, moves_mremap, moves_uffd, moves_copy,
      bytes_moved, bytes_copied, fallback_budget, fallback_error, fallback_fork,
      fallback_small;
};
void get_reloc_stats(RelocStats* out);

}  // namespace remalloc::pages
