// small heaps: the backstop heap, for threads that allocate after their
// teardown (another pthread key's destructor, a late atexit handler in a
// thread): one shared heap, used only under g_backstop_lock, made on first
// use and never abandoned (state kHeapBackstop). Frees into it by the
// threads that hold none of its slabs are remote frees like any other.
#include "heap/internal.h"

namespace remalloc::heap {

Mutex g_backstop_lock;
static Heap* g_backstop;  // guarded by g_backstop_lock

void* backstop_alloc(unsigned c) {
  LockGuard g(g_backstop_lock);
  if (!g_backstop) {
    LockGuard g2(g_heaps_lock);
    g_backstop = new_heap_locked();
    if (!g_backstop) return nullptr;
    g_backstop->state.store(kHeapBackstop, std::memory_order_relaxed);
  }
  return heap_alloc(g_backstop, c);
}

}  // namespace remalloc::heap
