// small heaps: fork.
//
// The prepare handler takes the backstop and registry locks for the forking
// thread (Mutex::fork_acquire: the program's own atfork handlers, which run
// between ours in an order we do not choose, may allocate). The child
// resets them. Heaps of threads that do not exist in the child stay owned
// by them (they may have been mid-update, so adopting them would be
// unsafe); their blocks can still be freed, as remote frees. Abandoned
// heaps whose collector lock was held (by a thread that does not exist in
// the child) are taken off the abandoned list and left live, owned by
// nobody, for the same reason.
#include "heap/internal.h"

namespace remalloc::heap {

void fork_prepare() {
  g_backstop_lock.fork_acquire();
  g_heaps_lock.fork_acquire();
}

void fork_parent() {
  g_heaps_lock.fork_release();
  g_backstop_lock.fork_release();
}

void fork_child() {
  g_heaps_lock.reset_in_child();
  g_backstop_lock.reset_in_child();
  // Only this thread exists in the child: the heaps of the others are owned
  // by nobody and no longer count as owned by a thread (slab sizes,
  // kManyHeaps).
  Heap* self = tl_heap;
  g_live_heaps.store(self != &g_empty_heap && self->state.load(std::memory_order_relaxed) == kHeapLive ? 1 : 0,
                     std::memory_order_relaxed);
  Heap** link = &g_abandoned;
  while (Heap* h = *link) {
    if (h->collector.load(std::memory_order_relaxed)) {
      *link = h->next_abandoned;
      h->next_abandoned = nullptr;
      h->state.store(kHeapLive, std::memory_order_relaxed);
    } else {
      link = &h->next_abandoned;
    }
  }
}

}  // namespace remalloc::heap
