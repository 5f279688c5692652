// api: the allocation entry points with glibc-compatible semantics (errno,
// zero sizes, alignment rules, overflow checks). The fast paths are inline so
// the override layer's one-line forwarders compile to them.
#pragma once
#include <cerrno>
#include <cstddef>

#include "heap/heap.h"
#include "heap/sampled.h"

namespace remalloc::api {

void* malloc_slow(size_t size);          // small miss, large, huge, zero
void free_slow(Span* s, void* p);        // large blocks and invalid pointers
void* realloc(void* p, size_t size);
void* calloc(size_t n, size_t size);
void* aligned(size_t align, size_t size);  // align: power of two
size_t usable_size(const void* p);
void ensure_init();
// mlockall(2) for the override: the system call, and when it fails with
// ENOMEM for MCL_CURRENT (an unprivileged process's mapped address space
// exceeds RLIMIT_MEMLOCK: inaccessible reservations count too), once more
// after releasing the arenas' never-committed reservations.
int lock_all(int flags);
// Whether mlockall(MCL_FUTURE) went through lock_all (never undone:
// munlockall is the C library's). Prefault is off from then on.
bool future_locked();
// Secure build: this thread's sample countdown ran out (heap/sampled.h).
void* malloc_sampled(size_t size);

// malloc with the slow paths given: `Slow` for a fast-path miss (or a
// large size), `Sampled` when the secure build's guard sample is due. Both
// are tail calls, so that a heap profile's stack walk from them reaches the
// caller's frame (operator new passes its own, which also call the
// new-handler; prof/prof.h, RM_PROF_ENTRY).
template <void* (*Slow)(size_t), void* (*Sampled)(size_t)>
RM_INLINE void* malloc_with(size_t size) {
  if (RM_LIKELY(size <= sc::kMaxSmall)) {
    if constexpr (kSecure) {
      if (RM_UNLIKELY(--sampled::tl_countdown == 0)) return Sampled(size);
    }
    if (void* b = heap::malloc_fast(size); RM_LIKELY(b)) return b;
  }
  return Slow(size);
}

RM_INLINE void* malloc(size_t size) { return malloc_with<malloc_slow, malloc_sampled>(size); }

RM_INLINE void free(void* p) {
  if (RM_UNLIKELY(!p)) return;
  Span* s = pages::span_of(p);
  if (RM_LIKELY(s && heap::is_block(s, p))) {
    heap::free_small(s, p);
    return;
  }
  free_slow(s, p);
}

}  // namespace remalloc::api
