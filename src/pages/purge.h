// page heap: purging. Free runs that may hold memory (dirty) sit on a decay
// list, newest first; they are purged (MADV_DONTNEED of their dirty hull)
// once free for the purge delay, or at once, oldest first, while the dirty
// bytes exceed the cap. Free runs whose VMA page moves may have split sit
// on the split list and are healed (a fresh mmap over the run, so it merges
// back into one VMA) as the VMA estimate nears the budget.
//
// Invariants (validate_locked checks them):
//  - a run on the decay list is free and dirty (a dirty run is off it only
//    after a failed purge); newest at the head;
//  - a run is on the split list iff on_split, iff it has kFreeSplit and is
//    in the normal region; split_count() is the list's length.
// All functions need the page lock unless said otherwise.
#pragma once
#include "pages/internal.h"

namespace remalloc::pages::purging {

// Free-run list upkeep (free_runs.cpp calls these).
void track(Span* f);    // a new free run: onto the lists its flags ask for
void untrack(Span* f);  // a run being claimed or coalesced: off every list

// After pages came back as run f at `now`: heals when due, arms the decay
// timer, and enforces the dirty cap.
void after_put(Span* f, uint64_t now);
// Purges the runs whose delay has passed.
void maybe_purge(uint64_t now);
// Purges every dirty run and heals every split run.
void purge_all();
// Heals all split free runs if enough wait (takes the lock); false if none.
bool heal_for_budget();

// A recently freed run whose memory is still resident and that can hold
// the request, and the offset in it that lands on its dirty pages.
Span* find_resident(size_t npages, size_t align, size_t phase, Region region, size_t* skip);

size_t purged_bytes();
size_t heals();

size_t validate_locked();

}  // namespace remalloc::pages::purging
