// small heaps: the secure build's random order of fresh blocks.
//
// extend() links a page worth of never-used blocks at a time; the secure
// build links them in a random order (a Fisher-Yates shuffle of the page's
// blocks, from a per-thread xorshift generator seeded from the link key and
// the thread), so the next block's address cannot be predicted from the
// last one. The normal build never calls this file.
#include "heap/internal.h"

namespace remalloc::heap {

static __thread uint64_t tl_rng;  // 0 until the thread's first shuffle

static uint32_t rng_next() {
  uint64_t x = tl_rng;
  if (RM_UNLIKELY(x == 0)) x = (pages::g_link_key ^ reinterpret_cast<uintptr_t>(&tl_rng)) * 0x9e3779b97f4a7c15ull | 1;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  tl_rng = x;
  return uint32_t(x >> 32);
}

bool link_shuffled(Span* s, char* first, uint32_t n, uint32_t bs) {
  uint16_t order[kPageSize / kMinAlign];
  static_assert(kPageSize / kMinAlign <= 65536);
  if (n > sizeof order / sizeof order[0]) return false;
  for (uint32_t i = 0; i < n; i++) order[i] = uint16_t(i);
  for (uint32_t i = n - 1; i > 0; i--) {
    uint32_t j = rng_next() % (i + 1);
    uint16_t t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  void* head = s->free_list;
  for (uint32_t i = 0; i < n; i++) {
    char* b = first + size_t(order[i]) * bs;
    pages::link_store(b, head);
    reinterpret_cast<uintptr_t*>(b)[1] = 0;  // no stale free mark
    head = b;
  }
  s->free_list = head;
  return true;
}

}  // namespace remalloc::heap
