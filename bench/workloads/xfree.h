// Blocks that travel between threads, for xthread, threadlife and manyprod.
// Each block starts with a 16-byte header: a link word (for the lock-free
// inbox below) and a tag that holds the block's size in its low 16 bits and
// a hash of its address in the rest; the fill pattern covers the remainder.
// Freeing checks both, so a block handed out twice, overlapping another, or
// losing its contents fails the run however small it is.
#pragma once

#include <atomic>

#include "common.h"

namespace xf {

struct Block {
  Block* next;
  uint64_t tag;
};

constexpr uint64_t kTagCookie = 0x7a6e5eedull;

inline uint64_t tag_of(const void* p, size_t n) {
  return (wl::mix64(reinterpret_cast<uintptr_t>(p) ^ kTagCookie) & ~uint64_t{0xffff}) | n;
}

// A mixed size: log-uniform from 16 B to 4 KiB.
inline size_t mixed_size(wl::Rng& r) {
  size_t n = static_cast<size_t>(16.0 * __builtin_exp2(r.unit() * 8.0));
  return n < 16 ? 16 : n > 4096 ? 4096 : n;
}

inline Block* make(size_t n) {
  Block* b = static_cast<Block*>(wl::xmalloc(n));
  b->next = nullptr;
  b->tag = tag_of(b, n);
  if (n > sizeof(Block)) wl::fill(b + 1, n - sizeof(Block));
  return b;
}

// Checks b and frees it; returns its size.
inline size_t check_free(Block* b) {
  size_t n = static_cast<size_t>(b->tag & 0xffff);
  if (n < sizeof(Block) || n > 4096 || b->tag != tag_of(b, n)) wl::die("block tag", b, n, 8);
  if (n > sizeof(Block)) wl::check(b + 1, n - sizeof(Block));
  free(b);
  return n;
}

// Many producers push, one owner takes everything at once: a Treiber stack
// whose only pop is exchange(nullptr), so there is no ABA.
class Inbox {
 public:
  void push(Block* b) {
    Block* h = head_.load(std::memory_order_relaxed);
    do {
      b->next = h;
    } while (!head_.compare_exchange_weak(h, b, std::memory_order_release,
                                          std::memory_order_relaxed));
  }
  // Pushes the chain first..last (linked by next) at once.
  void push_chain(Block* first, Block* last) {
    Block* h = head_.load(std::memory_order_relaxed);
    do {
      last->next = h;
    } while (!head_.compare_exchange_weak(h, first, std::memory_order_release,
                                          std::memory_order_relaxed));
  }
  Block* take() { return head_.exchange(nullptr, std::memory_order_acquire); }

  // Blocks pushed and not yet freed, kept by the users (xthread bounds its
  // backlog with it).
  alignas(64) std::atomic<long> pending{0};

 private:
  alignas(64) std::atomic<Block*> head_{nullptr};
};

// Checks and frees a chain; returns (blocks, bytes) through the counters.
inline void free_chain(Block* b, uint64_t& blocks, uint64_t& bytes) {
  while (b) {
    Block* next = b->next;
    bytes += check_free(b);
    blocks++;
    b = next;
  }
}

}  // namespace xf
