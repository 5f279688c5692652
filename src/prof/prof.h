// prof: sampled heap profiling, the front door of prof/ (a layer between the
// small heaps and the api: it uses heap/'s per-thread count and the platform,
// and the api layer calls it).
//
// Sampling is by bytes: each thread counts down an exponentially distributed
// number of bytes (mean `sample`), kept in its heap (Heap::prof_left, one
// subtract and a branch in malloc_fast); the allocation that crosses zero is
// sampled, so a block of s bytes is sampled with probability 1 - exp(-s/mean),
// the rule of gperftools' and jemalloc's heap_v2 profiles, whose viewers undo
// it. A sampled block's stack is captured (capture.cpp: a frame-pointer walk
// bounded by the thread's stack, _Unwind_Backtrace as the fallback; no
// allocation, no lock an allocator call may hold) and counted per distinct
// stack: live objects and bytes, and everything ever allocated there.
//
// Finding a sampled block again on free without a lookup on every free:
// sampled blocks are never slab blocks. A small allocation that is sampled is
// given a large block of its own (a page for most), so the small free path is
// untouched; large frees look at a side bitmap (one bit per page, in prof/'s
// own radix tree, marks.cpp) that only sampled blocks set, and only those look
// their record up.
//
// Everything here is off until the api layer turns it on; no function here
// allocates through the allocator, and none holds prof's lock while calling
// into another layer that may take its own.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "base/base.h"
#include "heap/heap.h"

// Functions that may be on the stack between the program and a stack capture:
// kept out of line, in their own section (frames whose return address lies in
// it are remalloc's and are dropped, in the shared and in the static library
// alike, as gperftools does with its google_malloc section), and with a frame
// pointer, so that the walk from the capture reaches the program's frames.
#if defined(__clang__)
#define RM_PROF_ENTRY __attribute__((noinline, section("remalloc_text")))
#else
#define RM_PROF_ENTRY __attribute__((noinline, section("remalloc_text"), optimize("no-omit-frame-pointer")))
#endif

namespace remalloc::prof {

constexpr int kMaxDepth = 64;

enum Unwind : int { kUnwindAuto = 0, kUnwindFp = 1, kUnwindLibgcc = 2 };

// Settings from the api layer's options (configure() at start-up and on every
// change).
struct Config {
  bool active = false;          // sampling on
  size_t sample = 512 * 1024;   // mean bytes between samples
  size_t interval = 0;          // dump every this many bytes allocated; 0 off
  size_t memory_limit = 0;      // the limit in force (bytes), 0 none
  unsigned limit_percent = 90;  // dump when RSS passes this share of it; 0 off
  int unwind = kUnwindAuto;
  const char* prefix = "remalloc";  // files PREFIX.PID.SEQ.heap
};
void configure(const Config& c);
const Config& config();

// ---- sampling ----------------------------------------------------------------
// The calling thread's count: its heap's, or a thread-local one while it has
// no heap (before its first small block, after its teardown). The
// thread-local count starts at 0, so a thread's first allocation (a slow
// path: it has no heap yet) draws its count when profiling is on.
extern __thread int64_t tl_left;
extern __thread uint32_t tl_gen;
RM_INLINE int64_t* count_word(uint32_t** gen) {
  Heap* h = heap::tl_heap;
  if (h == &heap::g_empty_heap) {
    *gen = &tl_gen;
    return &tl_left;
  }
  *gen = &h->prof_gen;
  return &h->prof_left;
}

// The thread got its heap (its first small block): the heap's count takes
// the one the thread kept until then, which its first allocation drew.
void heap_attached();

// Charges an allocation of `size` bytes that did not come through malloc_fast
// (or came and was refused): true when the count is (or goes) negative, and
// the caller must ask begin() whether to sample.
RM_INLINE bool due(size_t size) {
  uint32_t* gen;
  int64_t* left = count_word(&gen);
  if (RM_LIKELY(*left >= 0) && RM_LIKELY((*left -= int64_t(size)) >= 0)) return false;
  return true;
}

// A sample in progress on this thread (begin() .. end()).
struct Ticket {
  int64_t next;      // the count to set when done
  uint64_t covered;  // bytes this thread allocated since its previous sample, this one's included
};
// The count ran out. Decides whether this allocation is sampled: false when
// profiling is off (the count restarts at kProfIdleBytes), when the count was
// not drawn for this profiling generation (it is drawn now, nothing sampled:
// counts are memoryless, so no earlier allocation is favoured), or inside the
// sampler (a nested allocation, counted). True: the caller allocates the block
// and calls end(); until then every allocation of this thread reaches a slow
// path and counts as nested.
bool begin(Ticket* t);
// The sampled block `p` (nullptr: its allocation failed) of `size` bytes:
// captures the stack, counts it, marks the block; then the dump triggers
// (interval, memory limit).
void end(const Ticket& t, void* p, size_t size);

// ---- sampled blocks ------------------------------------------------------------
// Whether a large block (its first page) carries the mark of a sampled block.
// The api layer asks on every free of a large block; nothing is marked before
// the first sample.
extern std::atomic<bool> g_any_marked;
bool is_marked_slow(const void* p);
RM_INLINE bool is_marked(const void* p) {
  return RM_UNLIKELY(g_any_marked.load(std::memory_order_relaxed)) && is_marked_slow(p);
}
// A sampled block is freed: its record goes, its stack's live counts drop.
void forget(const void* p);
// realloc of a sampled or of any large block while profiling is on. Before
// the engine runs: takes the mark off the old address (another thread may
// get that address as soon as the engine gives it back). After: `q` is the
// block's new address (nullptr when realloc failed: the old block stays as
// it was); `old_size` and `new_size` the bytes asked for. A block that grew
// is sampled if it was, or with the probability the bytes it gained give
// (the count is charged with them); one that shrank stays sampled with
// probability p(new)/p(old). Returns whether the block was sampled.
bool realloc_before(const void* p);
void realloc_after(bool was_sampled, const void* p, void* q, size_t old_size, size_t new_size);

// ---- profiles ---------------------------------------------------------------------
// Writes the heap profile (gperftools' text format, heap_v2) to `path`, or,
// when null, to PREFIX.PID.SEQ.heap; `written` (optional, PATH_MAX bytes)
// receives the name. Returns 0, or -1 with errno.
int dump(const char* path, char* written);
// Exit: the leak summary on stderr (sampled blocks still live, scaled, the
// top stacks) and, with `write_profile`, a final profile. Returns the scaled
// number of bytes still live in sampled blocks' stacks (0: nothing sampled
// is live).
size_t at_exit(bool write_profile);

// fork: prof's lock is held for the forking thread.
void fork_prepare();
void fork_parent();
void fork_child();

// Counters for the verbose line and the tests.
struct Counters {
  size_t samples, live_samples, stacks, dumps, fp_walks, unwinder_walks, nested_allocs, dump_failures;
};
Counters counters();

}  // namespace remalloc::prof
