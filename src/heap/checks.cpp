// small heaps: double and invalid frees, and the checked build's poison.
//
// A freed small block carries a mark in its second word (heap.h:
// free_mark), cleared when it is handed out. A free or realloc that finds
// the mark comes here: the owner thread confirms by scanning the slab's
// free and remote lists and the heap's delayed list (only the owner pops
// them, so they cannot change under it but for pushes at their heads); any
// other thread takes the mark as proof, and so does every thread for the
// cached mark of a block on a foreign cache (foreign.cpp). Bad pointers are
// reported through g_on_invalid (abort, or a counted warning: the free is
// then ignored, so a block never gets two owners).
//
// The checked build (kPoisonFreed) fills freed blocks past their two link
// words with kPoisonByte and checks, when a block is handed out again, that
// its link leads into its slab and the poison is intact.
#include <cstring>

#include "heap/internal.h"

namespace remalloc::heap {

static void abort_on_invalid(const void* p, const char* what) { fatal(what, p); }
void (*g_on_invalid)(const void* p, const char* what) = abort_on_invalid;
void (*g_on_slab_released)() = nullptr;

void bad_link(void* b) {
  fatal("heap corruption: a free block's link was overwritten (use after free or overflow)", b);
}

void poison_freed(Span* s, void* p) {
  memset(static_cast<char*>(p) + 2 * sizeof(void*), kPoisonByte, s->block_size - 2 * sizeof(void*));
}

void check_handed_out(Span* s, void* b) {
  // The link must lead to a block of the same slab (or end the list).
  uintptr_t next = reinterpret_cast<uintptr_t>(pages::link_load(b));
  if (next && (next - s->start >= s->slab_bytes || (next - s->start) % s->block_size))
    fatal("heap corruption: a free block's link was overwritten (a write past the block before it, "
          "or into this freed block)", b);
  check_poison(s, b);
}

void check_poison(Span* s, void* b) {
  // A block that was freed (it has a mark) must still hold the poison.
  if (!has_free_mark(b)) return;
  const unsigned char* q = static_cast<const unsigned char*>(b);
  for (size_t i = 2 * sizeof(void*); i < s->block_size; i++)
    if (q[i] != kPoisonByte) fatal("heap corruption: write into a freed block", q + i);
}

// Is p on the singly linked list starting at `head`? Walks at most `limit`
// links (a list damaged by a use after free must not hang us).
static bool on_list(uintptr_t head, const void* p, size_t limit) {
  for (uintptr_t q = head & kRemotePtrMask & ~uintptr_t{1}; q && limit--;
       q = reinterpret_cast<uintptr_t>(pages::link_load(reinterpret_cast<void*>(q)))) {
    if (reinterpret_cast<const void*>(q) == p) return true;
    Span* qs = pages::span_of(reinterpret_cast<void*>(q));
    if (!qs || !is_block(qs, reinterpret_cast<void*>(q))) return false;  // damaged list
  }
  return false;
}

void free_small_marked(Span* s, void* p) {
  if (check_marked(s, p, "free(): double free detected")) return;  // reported; ignored if we go on
  static_cast<uintptr_t*>(p)[1] = 0;  // the program's data looked like the mark: free normally
  free_small(s, p);
}

bool check_marked(Span* s, void* p, const char* what) {
  bool freed;
  if (static_cast<const uintptr_t*>(p)[1] == cached_mark(p)) {
    freed = true;  // on a foreign cache (foreign.cpp): only its thread could tell
  } else if (s->heap == tl_heap) {
    // Only this thread pops these lists; other threads only push.
    size_t cap = s->capacity + 1;
    freed = on_list(reinterpret_cast<uintptr_t>(s->free_list), p, cap) ||
            on_list(s->remote.load(std::memory_order_acquire), p, cap) ||
            on_list(tl_heap->delayed.load(std::memory_order_acquire), p, size_t{1} << 26);
  } else {
    freed = true;
  }
  if (freed) g_on_invalid(p, what);
  return freed;
}

}  // namespace remalloc::heap
