// small heaps: sampled guarded allocations of the secure build.
//
// One small allocation in N (REMALLOC_GUARD_SAMPLE, 1000 by default in the
// secure build, 0 off) of at most a page gets a page of its own in a pool
// reserved once: one mapping of 2 * kSlots + 1 pages where every page that
// holds no live block carries a guard (MADV_GUARD_INSTALL: a page-table
// marker, no VMA split), so the slot pages of live blocks alternate with
// guard pages. The block is placed at the end of its page (rounded up to 16
// bytes), so writing one granule past it faults. A freed slot gets its guard
// back at once (which also wipes it) and waits in a FIFO quarantine behind
// at least kQuarantineMin other freed slots before reuse, so a use after
// free faults for as long as it waits. Double frees, frees of interior
// pointers and reallocs of freed sampled blocks are recognised from the
// slot table (the block itself is never read) and reported like the small
// heaps' (g_on_invalid).
//
// Kernels without guards: the pool is made PROT_NONE and slots are opened
// with mprotect, which splits the pool's own VMA (at most 2 * kSlots + 1
// VMAs, counted in the VMA estimate) and nothing outside it.
//
// The normal build compiles none of this into its paths: every caller tests
// kSecure first.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "base/base.h"

namespace remalloc::sampled {

constexpr size_t kSlots = 128;          // live + quarantined sampled blocks
constexpr size_t kQuarantineMin = 32;   // freed slots always kept guarded
constexpr size_t kMaxSize = kPageSize;  // larger requests are never sampled

// Small mallocs of this thread until the next sample (secure build). Starts
// at 1: the first small malloc of a thread draws the real countdown (and is
// not sampled).
extern __thread uint32_t tl_countdown;

constexpr size_t kPoolBytes = (2 * kSlots + 1) * kPageSize;
// The pool's first address, 0 until the first sample; set once, so one
// relaxed load tells whether p lies in [g_lo, g_lo + kPoolBytes).
extern std::atomic<uintptr_t> g_lo;
RM_INLINE bool in_pool(const void* p) {
  uintptr_t lo = g_lo.load(std::memory_order_relaxed);
  return lo && reinterpret_cast<uintptr_t>(p) - lo < kPoolBytes;
}

// Sets the rate (0 off, else one in `rate` on average). Threads take it at
// their next sample; rearm_thread() draws the calling thread's countdown
// with it now, so that it applies from its next small malloc (rate 1: that
// malloc is sampled).
void configure(long rate);
void rearm_thread();
// A sampled block of `size` bytes (<= kMaxSize), or nullptr when the pool
// has no slot to give (all live or in quarantine), the rate is 0 or the pool
// cannot be made, or when this is the thread's first small malloc. Draws the
// calling thread's next countdown either way.
void* alloc(size_t size);
// For a pointer in the pool: frees a live sampled block, or reports a
// double free (a block in quarantine) or an invalid pointer.
void free(void* p);
// For a pointer in the pool: the usable size of a live sampled block (from p
// to the end of its page), or 0 after reporting `what_freed` (a block in
// quarantine) or `what_invalid` (anything else).
size_t usable(const void* p, const char* what_freed, const char* what_invalid);
// Is p a live sampled block? (no report)
bool owns(const void* p);

// fork: the pool lock, held for the forking thread.
void fork_prepare();
void fork_parent();
void fork_child();

struct Stats {
  size_t total;      // blocks ever sampled
  size_t live;       // sampled blocks not freed
  size_t live_bytes; // their usable bytes
  size_t pool_bytes; // address space of the pool (0 until the first sample)
  int mechanism;     // 0 none yet or off, 1 MADV_GUARD_INSTALL, 2 mprotect
};
void get_stats(Stats* out);
// What protects the pool: "MADV_GUARD_INSTALL", "mprotect" or "off".
const char* mechanism_name();

}  // namespace remalloc::sampled
