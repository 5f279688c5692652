// small heaps: the remote-free protocol (frees of a block by a thread that
// does not own its slab).
//
// Two lists carry such frees to the owner:
// - the slab's `remote` word: a list of blocks linked through their first
//   word and its length (top 16 bits, internal.h), pushed by any thread
//   with a CAS (release) that also counts the block, and taken whole, list
//   and count, by the owner with one exchange (acquire, collect_remote)
//   when the slab's free list runs dry; the owner does not walk it. The
//   word 1 (bit 0) means the owner found the slab full and moved it to its
//   full list; the owner sets it only while the list is empty, with a CAS
//   from 0 (a free that raced in makes the CAS fail and the owner takes
//   that block instead);
// - the owner heap's `delayed` list: the first free into a slab marked
//   full. That freer unmarks the slab (CAS 1 -> 0: one thread wins) and
//   pushes its block here; the frees after it go to the slab's list again,
//   while the slab still sits on the full list. The owner takes `delayed`
//   whole (exchange) at the start of every refill (heap_alloc); each block
//   goes back to its slab, and a full slab that gets one back returns to
//   the avail list (unmarked, if the freer did not: abandoned heaps, whose
//   slabs stay marked and whose every free comes here, abandon.cpp). So
//   full slabs come back into use without the owner scanning them, and the
//   owner handles one block per slab that filled, not every free into it
//   (mimalloc's delayed free does the same).
//
// Invariants:
// - a block is on at most one list (free, remote, delayed) and only once;
// - the count in `remote` is the length of its list;
// - a slab's `used` counts blocks on its remote list and on its heap's
//   delayed list as handed out: only the owner's taking them in lowers it;
// - pushes onto `delayed` and the reads of the heap's state after them are
//   sequentially consistent, and so are the exiting thread's store of the
//   abandoned state and its read of `delayed` after it: a free that races
//   with its owner's exit is always seen by one of the two (abandon.cpp).
#include "heap/internal.h"

namespace remalloc::heap {

void push_delayed(Heap* h, void* p) {
  uintptr_t d = h->delayed.load(std::memory_order_relaxed);
  do {
    pages::link_store(p, reinterpret_cast<void*>(d));
  } while (!h->delayed.compare_exchange_weak(d, reinterpret_cast<uintptr_t>(p), std::memory_order_seq_cst,
                                             std::memory_order_relaxed));
}

void free_remote(Span* s, void* p) {
  uintptr_t old = s->remote.load(std::memory_order_relaxed);
  for (;;) {
    if (old & 1) {
      // The owner found the slab full (or left the heap). The first free
      // since then unmarks it, so the frees after it take the slab's list,
      // and sends its block to the owner heap's delayed list: taking it in
      // tells the owner the slab has a free block again.
      Heap* h = s->heap;
      if (RM_UNLIKELY(h->state.load(std::memory_order_relaxed) == kHeapAbandoned)) return free_to_abandoned(h, s, p);
      if (!s->remote.compare_exchange_weak(old, 0, std::memory_order_acq_rel, std::memory_order_relaxed)) continue;
      push_delayed(h, p);
      // Its thread may have left since it was read live; it looks at the
      // list after publishing that, and so does this thread after the push.
      if (RM_UNLIKELY(h->state.load(std::memory_order_seq_cst) == kHeapAbandoned)) collect_abandoned(h);
      return;
    }
    pages::link_store(p, remote_head(old));
    uintptr_t pushed = reinterpret_cast<uintptr_t>(p) | ((old & ~kRemotePtrMask) + kRemoteCountOne);
    if (s->remote.compare_exchange_weak(old, pushed, std::memory_order_release, std::memory_order_relaxed))
      return;
  }
}

void drain_delayed_list(Heap* h) {
  uintptr_t list = h->delayed.exchange(0, std::memory_order_acquire);
  while (list) {
    void* p = reinterpret_cast<void*>(list);
    list = reinterpret_cast<uintptr_t>(pages::link_load(p));
    Span* s = pages::span_of(p);
    pages::link_store(p, s->free_list);
    s->free_list = p;
    s->used--;
    const bool was_full = s->is_full;
    if (s->used != 0 && !was_full) continue;
    free_local_slow(h, s);  // back to the avail list; given back if empty
    // The frees after this one went to the slab's list and may have
    // emptied it: no freer could tell (this block was still counted).
    if (was_full && s->used != 0 && remote_count(s->remote.load(std::memory_order_relaxed)) == s->used &&
        collect_remote(s) && s->used == 0)
      free_local_slow(h, s);
  }
}

}  // namespace remalloc::heap
