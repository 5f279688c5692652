// small heaps: abandoned heaps (their thread exited).
//
// A thread that exits seals its heap (every slab marked full, so every later
// free reaches `delayed`) and abandons it. From then on the heap belongs to
// whoever holds its collector lock: threads that free into it give the
// blocks back to their slabs, and a slab that empties goes back to the page
// heap (purged with the decay like any free run). A thread that finds the
// lock taken leaves its block on `delayed`; the holder looks at the list
// again after letting go (sequentially consistent push, exchange and load:
// one of the two always sees the other). The next new thread adopts an
// abandoned heap whole: it waits for the lock, marks the heap live, lets
// go, takes in `delayed` and unseals.
//
// Invariants of an abandoned heap (validate.cpp checks them): no avail
// slab, spare or cached large block; every slab on a full list with
// used > 0 (a slab that empties is given back at once) and `remote`
// exactly 1 (marked, no list), except while a freer that saw the heap live
// has unmarked it: the block it sent is then on `delayed`, and whoever
// gives that block back marks the slab again and takes in its list.
// Never more than one collector lock is held by a thread, and the page
// lock is the only one taken under it.
#include <sched.h>

#include "heap/internal.h"

namespace remalloc::heap {

bool collector_try_lock(Heap* h) { return h->collector.exchange(1, std::memory_order_seq_cst) == 0; }
void collector_unlock(Heap* h) { h->collector.exchange(0, std::memory_order_seq_cst); }
// The adopter's and the statistics' wait: holders give back one batch and
// let go.
void collector_lock(Heap* h) {
  for (unsigned spins = 0; !collector_try_lock(h); spins++) {
    if (spins < 64)
      cpu_relax();
    else
      sched_yield();
  }
}

// Gives block p back to slab s of abandoned heap h (collector lock held);
// the slab goes back to the page heap when it empties (returns 1 then).
static size_t give_back_abandoned(Heap* h, Span* s, void* p) {
  RM_ASSERT_INTERNAL(s->heap == h && s->is_full && s->used > 0);
  pages::link_store(p, s->free_list);
  s->free_list = p;
  s->used--;
  if (RM_UNLIKELY(s->remote.load(std::memory_order_relaxed) != 1)) {
    // A freer that still saw the heap live unmarked the slab (p is the
    // block it sent): mark it again and take in what others pushed since.
    take_remote_list(s, s->remote.exchange(1, std::memory_order_acq_rel));
  }
  if (s->used) return 0;
  full_remove(h, s);
  s->remote.store(0, std::memory_order_relaxed);
  release_slab(s);
  return 1;
}

// Gives back every block on abandoned heap h's delayed list (collector lock
// held). Returns the slabs released.
static size_t collect_locked(Heap* h) {
  size_t released = 0;
  uintptr_t list = h->delayed.exchange(0, std::memory_order_seq_cst);
  while (list) {
    void* p = reinterpret_cast<void*>(list);
    list = reinterpret_cast<uintptr_t>(pages::link_load(p));
    released += give_back_abandoned(h, pages::span_of(p), p);
  }
  return released;
}

// Gives back what waits on abandoned heap h's delayed list, until the list
// is empty, another thread holds the heap (and so looks again after it lets
// go) or a new thread adopted it (its owner drains the list).
void collect_abandoned(Heap* h, size_t released) {
  while (h->delayed.load(std::memory_order_seq_cst) && h->state.load(std::memory_order_seq_cst) == kHeapAbandoned &&
         collector_try_lock(h)) {
    if (h->state.load(std::memory_order_acquire) == kHeapAbandoned) released += collect_locked(h);
    collector_unlock(h);
  }
  if (released)
    if (void (*hook)() = g_on_slab_released) hook();
}

// A free into a slab of abandoned heap h (marked full, as all its slabs are;
// it cannot empty or change hands while p is live).
RM_NOINLINE void free_to_abandoned(Heap* h, Span* s, void* p) {
  if (collector_try_lock(h)) {
    if (h->state.load(std::memory_order_acquire) == kHeapAbandoned) {
      size_t released = give_back_abandoned(h, s, p);
      if (h->delayed.load(std::memory_order_relaxed)) released += collect_locked(h);
      collector_unlock(h);
      collect_abandoned(h, released);
      return;
    }
    collector_unlock(h);  // adopted meanwhile: its new owner takes the block
  }
  push_delayed(h, p);
  if (h->state.load(std::memory_order_seq_cst) == kHeapAbandoned) collect_abandoned(h);
}

// Marks every slab of h full, moving it to the full lists, so that every
// later free goes to h's delayed list; gives back those that are empty.
// The owner, at thread exit.
void seal(Heap* h) {
  for (unsigned c = 0; c < sc::kNumClasses; c++) {
    for (Span* s = h->avail[c].first(); s;) {
      Span* next = s->next;
      avail_remove(h, s);
      for (;;) {
        collect_remote(s);
        uintptr_t expected = 0;
        if (s->remote.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) break;
      }
      if (s->used == 0)
        release_slab(s);
      else
        full_push(h, s);
      s = next;
    }
  }
}

// The reverse, by a thread that adopted h: slabs with free blocks go back
// on the avail lists (frees then go to their remote lists again).
void unseal(Heap* h) {
  for (unsigned c = 0; c < sc::kNumClasses; c++) {
    for (Span* s = h->full[c].first(); s;) {
      Span* next = s->next;
      if (s->free_list || s->bump < s->capacity) {
        full_remove(h, s);
        unmark_full(s);  // (a live freer may have done so already)
        avail_push_front(h, s);
      }
      s = next;
    }
  }
}

size_t trim_abandoned() {
  size_t released = 0;
  LockGuard g(g_heaps_lock);
  for (Heap* h = g_abandoned; h; h = h->next_abandoned) {
    if (!h->delayed.load(std::memory_order_seq_cst) || !collector_try_lock(h)) continue;
    if (h->state.load(std::memory_order_acquire) == kHeapAbandoned) released += collect_locked(h);
    collector_unlock(h);
  }
  return released;
}

}  // namespace remalloc::heap
