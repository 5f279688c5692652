// page heap: free runs. Every run of free pages has a Span at its first
// page (kind kSpanFree) and sits in one of 288 bins of its region (exact for
// 1..128 pages, then four per power of two), with a bitmap of non-empty bins.
// Runs coalesce with free neighbours of the same arena when pages come back.
// This file owns the byte totals of free runs; purge.cpp owns the lists of
// dirty and split runs, which make_run()/unlink_run() keep in step.
//
// Invariants (validate_free_runs_locked checks them):
//  - no two free runs are adjacent (coalescing is complete);
//  - a run is in the bin of its size in the bin set of its arena's region,
//    and a bin's bitmap bit is set iff the bin is non-empty;
//  - back[first] == back[last] == first (the index of the run's first page);
//  - the dirty hull [maint_lo, maint_hi) lies in the run, empty iff clean;
//  - free_bytes() is the sum of run bytes, dirty_bytes() the sum of hulls.
// All functions need the page lock.
#pragma once
#include "pages/internal.h"

namespace remalloc::pages::free_runs {

// Makes pages [idx, idx+n) of `a` one free run, without coalescing. Dirty
// pages lie within [lo, hi) (clipped to the run); `flags` kFree*.
Span* make_run(Arena* a, size_t idx, size_t n, uint8_t flags, uint64_t t, size_t lo, size_t hi);
// Takes run f off every list (to claim it); its descriptor is cleared.
void unlink_run(Span* f);
// Returns pages [idx, idx+n) to the free pool, coalescing with free
// neighbours; returns the resulting run.
Span* put(Arena* a, size_t idx, size_t n, uint8_t flags, uint64_t now);
// The free run starting at page idx of a, or nullptr.
Span* run_at(Arena* a, size_t idx);
// Searches the bins of `region` for a run holding npages aligned to `align`
// pages plus `phase`, of at least `min_run` pages when possible; sets *skip
// to the offset of the aligned start in the run.
Span* find(size_t npages, size_t align, size_t phase, Region region, size_t min_run, size_t* skip);
// Claims npages of run f from `skip`: the pages before and after stay free.
// Returns the descriptor of the claimed pages (kind kSpanNone), whose
// `flags` keep kFreeSplit of the run, and kFreeDirty when the dirty hull
// covers any of them.
Span* carve(Span* f, size_t skip, size_t npages);

// The dirty hull of f was purged: it holds no memory now.
void mark_clean(Span* f);
// Part of the hull was purged: the dirty pages now lie in [lo, hi), a
// non-empty part of the old hull.
void shrink_hull(Span* f, size_t lo, size_t hi);

size_t free_bytes();
size_t dirty_bytes();

// Checks the invariants above over every bin; returns the number of runs.
size_t validate_locked();

}  // namespace remalloc::pages::free_runs
