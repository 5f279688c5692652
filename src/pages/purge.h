// page heap: purging. Free runs that may hold memory (dirty) sit on a decay
// list, newest first; they are purged (MADV_DONTNEED of their dirty hull)
// once free for the purge delay, or at once, oldest first, while the dirty
// bytes exceed the cap (dirty_cap(): REMALLOC_DIRTY_MAX, or a share of the
// bytes held for blocks if larger, and never more than half the room left
// under the memory limit).
//
// Bounded work: no allocator call purges more than a fixed budget of pages
// (plus, past the cap, the pages it gave back or took itself) or heals more
// than two runs; a large run is purged a slice at a time, from the top of
// its dirty hull. The rest waits for the next call, or for the background
// thread (api/background.cpp), which calls background_step() in batches and
// then, while it runs, is the only one to do the decay and the heals. Free runs whose VMA page moves may have split sit
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
// `credit_pages`: pages the call gave back (they may be purged at once
// past the cap, on top of the fixed budget).
void after_put(Span* f, size_t credit_pages, uint64_t now);
// A bounded share of the due purges (none while the thread runs) and of
// the dirty cap (credit_pages: pages the call takes).
void maybe_purge(uint64_t now, size_t credit_pages = 0);
// Purges every dirty run and heals every split run.
void purge_all();
// Heals all split free runs if enough wait (takes the lock); false if none.
bool heal_for_budget();

// A recently freed run whose memory is still resident and that can hold
// the request, and the offset in it that lands on its dirty pages.
Span* find_resident(size_t npages, size_t align, size_t phase, Region region, size_t* skip);

// The dirty cap now, and whether the footprint is past half the memory
// limit (then fresh blocks search further for resident pages).
size_t dirty_cap();
bool under_pressure();

// The background thread's side (api/background.cpp drives it). While
// active, allocator calls leave the decay and the heals to the thread.
void set_background(bool active);
bool background_active();
// One batch of due work; returns the nanoseconds until more is due (0: now,
// ~0: nothing pending: wait on background_word() for a change from *seq).
uint64_t background_step(uint64_t now, uint32_t* seq);
std::atomic<uint32_t>* background_word();
void background_fork_child();
bool work_seen();  // no lock needed
size_t background_purged_bytes();
size_t background_heals();

size_t purged_bytes();
size_t heals();
size_t split_count();  // split free runs waiting to be healed

size_t validate_locked();

}  // namespace remalloc::pages::purging
